using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Distributed;

/// <summary>
/// Collectives over MPI_COMM_WORLD (Open MPI): the CPU backend, and what CI tests the trainer's data-parallel path
/// with (mpirun starts the ranks: Open MPI singletons cannot reach one another). Tensors on another device, and
/// dtypes MPI has no type for (bf16, fp16), go through a float32 CPU copy.
/// </summary>
internal sealed unsafe class MpiCollectives : Collectives
{
    private readonly MpiLibrary mpi;
    private bool disposed;

    private MpiCollectives(MpiLibrary mpi, int rank, int worldSize)
    {
        this.mpi = mpi;
        Rank = rank;
        WorldSize = worldSize;
    }

    public override int Rank { get; }

    public override int WorldSize { get; }

    public override DistributedBackend Backend => DistributedBackend.Mpi;

    /// <summary>Initialises MPI (unless the host already did) and checks that mpirun's rank and size are the options'.</summary>
    public static MpiCollectives Create(DistributedOptions options)
    {
        var mpi = MpiLibrary.Load();
        int initialized = 0, rank = 0, size = 0;
        mpi.Check(mpi.Initialized(&initialized), "MPI_Initialized");
        if (initialized == 0)
        {
            int finalized = 0;
            mpi.Check(mpi.Finalized(&finalized), "MPI_Finalized");
            if (finalized != 0)
                throw new InvalidOperationException("MPI was finalised in this process (Collectives.Shutdown); it cannot be initialised again.");
            mpi.Check(mpi.Init(null, null), "MPI_Init");
        }
        mpi.Check(mpi.CommRank(mpi.CommWorld, &rank), "MPI_Comm_rank");
        mpi.Check(mpi.CommSize(mpi.CommWorld, &size), "MPI_Comm_size");
        if (size != options.WorldSize || rank != options.Rank)
            throw new ArgumentException(
                $"MPI runs this process as rank {rank} of {size}, but the distributed options say rank {options.Rank} of {options.WorldSize} " +
                $"({nameof(DistributedOptions.Rank)}, {nameof(DistributedOptions.WorldSize)}). Start the ranks with mpirun -np {options.WorldSize} and " +
                $"take the options from {nameof(DistributedOptions)}.{nameof(DistributedOptions.FromEnvironment)}().", nameof(options));
        return new MpiCollectives(mpi, rank, size);
    }

    public override void AllReduce(Tensor tensor, ReduceOperation operation = ReduceOperation.Sum)
    {
        Run(tensor, (pointer, count, type) => mpi.Check(mpi.Allreduce(MpiLibrary.InPlace, pointer, count, type, mpi.Sum, mpi.CommWorld), "MPI_Allreduce"),
            operation == ReduceOperation.Average ? WorldSize : 1);
    }

    public override void Broadcast(Tensor tensor, int root)
    {
        if (root < 0 || root >= WorldSize)
            throw new ArgumentOutOfRangeException(nameof(root), root, $"The root must be a rank in [0, {WorldSize - 1}].");
        Run(tensor, (pointer, count, type) => mpi.Check(mpi.Bcast(pointer, count, type, root, mpi.CommWorld), "MPI_Bcast"), 1);
    }

    public override void Barrier() => mpi.Check(mpi.Barrier(mpi.CommWorld), "MPI_Barrier");

    public override void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        int finalized = 0;
        if (mpi.Finalized(&finalized) == 0 && finalized == 0)
            mpi.Finalize();
    }

    /// <summary>Calls <paramref name="call"/> on the tensor's memory in chunks MPI's int counts can address, staging through a CPU copy when needed.</summary>
    private void Run(Tensor tensor, Action<IntPtr, int, IntPtr> call, int divisor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!tensor.is_contiguous())
            throw new ArgumentException("Collectives need a contiguous tensor (call .contiguous() and copy back).", nameof(tensor));
        var type = TypeOf(tensor.dtype);
        if (type is null || tensor.device_type != DeviceType.CPU)
        {
            using var staged = tensor.to(type is null ? ScalarType.Float32 : tensor.dtype, CPU).contiguous();
            Run(staged, call, divisor);
            using var _ = no_grad();
            tensor.copy_(staged);
            return;
        }
        long elementSize = tensor.element_size(), count = tensor.numel();
        // data_ptr already points at the tensor's first element (storage offset included).
        var start = global::Liger.Kernels.Runtime.TorchInterop.DataPointer(tensor);
        for (long done = 0; done < count; done += int.MaxValue)
            call(start + (nint)(done * elementSize), (int)Math.Min(int.MaxValue, count - done), type.Value);
        if (divisor != 1)
        {
            using var _ = no_grad();
            tensor.DividedByInPlace(divisor);
        }
    }

    private IntPtr? TypeOf(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => mpi.Float,
        ScalarType.Float64 => mpi.Double,
        ScalarType.Int64 => mpi.Int64,
        ScalarType.Byte => mpi.UInt8,
        _ => null,
    };
}
