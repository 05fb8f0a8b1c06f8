using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Distributed;

/// <summary>
/// Collectives over an NCCL communicator, one rank per GPU. Every call is queued on the legacy default stream
/// (stream 0), where libtorch runs all its work (TorchSharp has no stream API): a collective is ordered after the
/// kernels that produced its tensor and before those that read it, with no host synchronisation.
/// </summary>
internal sealed unsafe class NcclCollectives : Collectives
{
    private readonly NcclLibrary nccl;
    private readonly int deviceIndex;
    private IntPtr communicator;

    private NcclCollectives(NcclLibrary nccl, IntPtr communicator, int rank, int worldSize, int deviceIndex)
    {
        this.nccl = nccl;
        this.communicator = communicator;
        this.deviceIndex = deviceIndex;
        Rank = rank;
        WorldSize = worldSize;
    }

    public override int Rank { get; }

    public override int WorldSize { get; }

    public override DistributedBackend Backend => DistributedBackend.Nccl;

    /// <summary>Loads NCCL, meets the other ranks at the rendezvous for rank 0's unique id, and builds the communicator on <paramref name="device"/>.</summary>
    public static NcclCollectives Create(DistributedOptions options, Device device)
    {
        if (device.type != DeviceType.CUDA)
            throw new ArgumentException($"The NCCL backend needs a CUDA device; the model is on {device}. Use {nameof(DistributedBackend)}.{nameof(DistributedBackend.Mpi)} on the CPU.", nameof(device));
        var nccl = NcclLibrary.Load();
        int index = device.index < 0 ? options.LocalRank : device.index;
        CudaPrimaryContext.MakeCurrent(index);
        var idBytes = Rendezvous.Exchange(options, () =>
        {
            NcclUniqueId created;
            nccl.Check(nccl.GetUniqueId(&created), "ncclGetUniqueId");
            return created.ToArray();
        });
        var id = NcclUniqueId.From(idBytes);
        IntPtr comm;
        nccl.Check(nccl.CommInitRank(&comm, options.WorldSize, id, options.Rank), $"ncclCommInitRank (rank {options.Rank} of {options.WorldSize}, cuda:{index})");
        return new NcclCollectives(nccl, comm, options.Rank, options.WorldSize, index);
    }

    public override void AllReduce(Tensor tensor, ReduceOperation operation = ReduceOperation.Sum)
    {
        var (pointer, count, type) = Buffer(tensor);
        nccl.Check(nccl.AllReduce(pointer, pointer, count, type, operation == ReduceOperation.Average ? NcclLibrary.OpAvg : NcclLibrary.OpSum,
            communicator, IntPtr.Zero), "ncclAllReduce");
    }

    public override void Broadcast(Tensor tensor, int root)
    {
        if (root < 0 || root >= WorldSize)
            throw new ArgumentOutOfRangeException(nameof(root), root, $"The root must be a rank in [0, {WorldSize - 1}].");
        var (pointer, count, type) = Buffer(tensor);
        nccl.Check(nccl.Broadcast(pointer, pointer, count, type, root, communicator, IntPtr.Zero), "ncclBroadcast");
    }

    /// <summary>A one-element all-reduce waited for on the host: NCCL has no barrier of its own (torch.distributed does the same).</summary>
    public override void Barrier()
    {
        using var one = ones(1, dtype: ScalarType.Float32, device: new Device(DeviceType.CUDA, deviceIndex));
        AllReduce(one);
        _ = one.item<float>();
    }

    public override void BeginGroup() => nccl.Check(nccl.GroupStart(), "ncclGroupStart");

    public override void EndGroup() => nccl.Check(nccl.GroupEnd(), "ncclGroupEnd");

    public override void Dispose()
    {
        if (communicator == IntPtr.Zero)
            return;
        nccl.CommDestroy(communicator);
        communicator = IntPtr.Zero;
    }

    private (IntPtr Pointer, nuint Count, int Type) Buffer(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (communicator == IntPtr.Zero)
            throw new ObjectDisposedException(nameof(NcclCollectives));
        if (tensor.device_type != DeviceType.CUDA || tensor.device.index != deviceIndex)
            throw new ArgumentException($"NCCL collectives of this rank take tensors on cuda:{deviceIndex}; got one on {tensor.device}.", nameof(tensor));
        if (!tensor.is_contiguous())
            throw new ArgumentException("Collectives need a contiguous tensor (call .contiguous() and copy back).", nameof(tensor));
        int type = tensor.dtype switch
        {
            ScalarType.Float32 => NcclLibrary.Float32,
            ScalarType.BFloat16 => NcclLibrary.BFloat16,
            ScalarType.Float16 => NcclLibrary.Float16,
            ScalarType.Float64 => NcclLibrary.Float64,
            ScalarType.Int64 => NcclLibrary.Int64,
            ScalarType.Int32 => NcclLibrary.Int32,
            ScalarType.Byte => NcclLibrary.Uint8,
            var other => throw new ArgumentException($"NCCL has no type for {other} tensors.", nameof(tensor)),
        };
        // data_ptr already points at the tensor's first element (storage offset included).
        return (global::Liger.Kernels.Runtime.TorchInterop.DataPointer(tensor), (nuint)tensor.numel(), type);
    }
}
