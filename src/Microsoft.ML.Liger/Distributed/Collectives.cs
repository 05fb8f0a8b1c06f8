using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Distributed;

/// <summary>How <see cref="Collectives.AllReduce"/> combines the ranks' tensors.</summary>
public enum ReduceOperation
{
    /// <summary>Element-wise sum.</summary>
    Sum,

    /// <summary>Element-wise mean over the ranks.</summary>
    Average,
}

/// <summary>
/// The collectives a data-parallel run needs, on tensors in place, over all the ranks of the process group: the one
/// seam between the trainer and a collective library (<see cref="DistributedBackend.Nccl"/> on GPUs,
/// <see cref="DistributedBackend.Mpi"/> on CPUs), so the CPU tests exercise the same trainer code as a GPU run.
/// Every rank must make the same calls in the same order, with tensors of the same shape and dtype.
/// </summary>
public abstract class Collectives : IDisposable
{
    private static readonly Lock Gate = new();
    private static Collectives? current;

    /// <summary>This process's rank.</summary>
    public abstract int Rank { get; }

    /// <summary>Processes in the group.</summary>
    public abstract int WorldSize { get; }

    /// <summary>The library behind the calls.</summary>
    public abstract DistributedBackend Backend { get; }

    /// <summary>Replaces <paramref name="tensor"/> (contiguous) with the element-wise reduction over the ranks of their tensors.</summary>
    public abstract void AllReduce(Tensor tensor, ReduceOperation operation = ReduceOperation.Sum);

    /// <summary>Replaces <paramref name="tensor"/> (contiguous) on every rank with rank <paramref name="root"/>'s.</summary>
    public abstract void Broadcast(Tensor tensor, int root);

    /// <summary>Returns on every rank once all the ranks have called it (and, on a GPU, their earlier collectives are queued).</summary>
    public abstract void Barrier();

    /// <summary>
    /// Starts a run of collectives that the library may fuse (NCCL's group calls); <see cref="EndGroup"/> ends it.
    /// No-op where the library has no such notion.
    /// </summary>
    public virtual void BeginGroup() { }

    /// <summary>Ends what <see cref="BeginGroup"/> started.</summary>
    public virtual void EndGroup() { }

    /// <summary>Releases the library's communicator.</summary>
    public abstract void Dispose();

    /// <summary>
    /// The process group of this process, opened on first use (MPI can be initialised once per process, and an NCCL
    /// communicator is costly to build) and shared by every later run with the same rank and world size.
    /// <see cref="DistributedBackend.Auto"/> picks NCCL for a CUDA <paramref name="device"/>, MPI otherwise.
    /// </summary>
    /// <exception cref="InvalidOperationException">The process already belongs to a group of another shape or backend.</exception>
    /// <exception cref="DllNotFoundException">The backend's library is missing (the message says how to point at it).</exception>
    public static Collectives ForProcess(DistributedOptions options, Device device)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(device);
        options.Validate();
        var backend = options.Backend != DistributedBackend.Auto ? options.Backend
            : device.type == DeviceType.CUDA ? DistributedBackend.Nccl : DistributedBackend.Mpi;
        lock (Gate)
        {
            if (current is { } open)
            {
                if (open.Backend != backend || open.Rank != options.Rank || open.WorldSize != options.WorldSize)
                    throw new InvalidOperationException(
                        $"This process already belongs to a {open.Backend} group as rank {open.Rank} of {open.WorldSize}; " +
                        $"it cannot join another ({backend}, rank {options.Rank} of {options.WorldSize}).");
                return open;
            }
            current = backend switch
            {
                DistributedBackend.Nccl => NcclCollectives.Create(options, device),
                _ => MpiCollectives.Create(options),
            };
            AppDomain.CurrentDomain.ProcessExit += (_, _) => Shutdown();
            return current;
        }
    }

    /// <summary>Closes the process group (MPI_Finalize, ncclCommDestroy); called at process exit too. MPI cannot be opened again after it.</summary>
    public static void Shutdown()
    {
        lock (Gate)
        {
            current?.Dispose();
            current = null;
        }
    }
}
