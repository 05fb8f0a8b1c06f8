using System.Collections.Concurrent;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;

namespace Liger.Kernels.Runtime;

/// <summary>
/// One ILGPU accelerator and the kernels compiled for it. Kernels are compiled on first use and cached
/// for the life of the device; launches go to the accelerator's default stream, which on CUDA is the
/// legacy default stream of libtorch's primary context (see <see cref="CudaContextSharing"/>).
/// </summary>
internal sealed class KernelDevice
{
    private readonly ConcurrentDictionary<System.Reflection.MethodInfo, Delegate> kernels = new();

    internal KernelDevice(Accelerator accelerator, int torchDeviceIndex)
    {
        Accelerator = accelerator;
        TorchDeviceIndex = torchDeviceIndex;
    }

    /// <summary>The ILGPU accelerator the kernels run on.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>True for a CUDA GPU, false for ILGPU's CPU emulator.</summary>
    public bool IsCuda => Accelerator.AcceleratorType == AcceleratorType.Cuda;

    /// <summary>The torch device index this accelerator serves (0 for the CPU emulator).</summary>
    public int TorchDeviceIndex { get; }

    /// <summary>The largest group (thread block) the device allows.</summary>
    public int MaxGroupSize => Accelerator.MaxNumThreadsPerGroup;

    /// <summary>Threads per warp: group sizes are rounded to a multiple of this.</summary>
    public int WarpSize => Accelerator.WarpSize;

    /// <summary>Number of multiprocessors, used to size grids of persistent groups.</summary>
    public int Multiprocessors => Accelerator.NumMultiprocessors;

    /// <summary>Largest shared memory per group in bytes.</summary>
    public int MaxSharedMemoryPerGroup => Accelerator.MaxSharedMemoryPerGroup;

    /// <summary>A short description for logs: "CUDA NVIDIA H100 (SM_90)" or "ILGPU CPU emulator".</summary>
    public override string ToString() =>
        IsCuda ? $"ILGPU CUDA kernels on {Accelerator.Name} (libtorch primary context, default stream)"
               : "ILGPU CPU accelerator (GPU emulation)";

    /// <summary>Returns the launcher of an explicitly grouped kernel, compiling it on first use.</summary>
    internal TLauncher Kernel<TKernel, TLauncher>(TKernel kernel, Func<Accelerator, TKernel, TLauncher> load)
        where TKernel : Delegate where TLauncher : Delegate =>
        (TLauncher)kernels.GetOrAdd(kernel.Method, _ => load(Accelerator, kernel));

    /// <summary>
    /// Called after each launch. CUDA launches stay asynchronous, ordered after torch's work on the same
    /// stream. The CPU emulator runs kernels on its own threads, so wait for it before torch reads.
    /// </summary>
    internal void AfterLaunch()
    {
        if (!IsCuda)
            Accelerator.Synchronize();
    }

    /// <summary>
    /// A grid of persistent groups for <paramref name="rows"/> rows, each over a contiguous run of rows:
    /// as many groups as fit on the device by thread count (2048 threads per multiprocessor on NVIDIA
    /// GPUs since Volta). Where registers allow fewer, the extra groups run as a second wave of equal
    /// runs, which costs little. (ILGPU's occupancy query cannot see kernels with specialised
    /// parameters, so it is not used.) The CPU emulator gets a handful of groups.
    /// </summary>
    internal (int Groups, int RowsPerGroup) PersistentGrid(long rows, int groupSize)
    {
        int resident = IsCuda ? Multiprocessors * Math.Max(1, 2048 / groupSize) : 4;
        int rowsPerGroup = (int)Math.Max(1, (rows + resident - 1) / resident);
        int groups = (int)Math.Max(1, (rows + rowsPerGroup - 1) / rowsPerGroup);
        return (groups, rowsPerGroup);
    }

    /// <summary>A group size for a row of <paramref name="work"/> items: a warp multiple, at most the device limit.</summary>
    internal int GroupSizeFor(long work, int preferredMax = 1024)
    {
        int max = Math.Min(preferredMax, MaxGroupSize);
        long rounded = (work + WarpSize - 1) / WarpSize * WarpSize;
        return (int)Math.Clamp(rounded, WarpSize, max);
    }

    internal static CPUDevice EmulatedDevice { get; } =
        // Warp size 32 like NVIDIA hardware, so warp-level code is exercised as on the GPU; 8 warps per
        // group keeps the emulator's thread count (one OS thread per emulated thread) modest.
        new(numThreadsPerWarp: 32, numWarpsPerMultiprocessor: 8, numMultiprocessors: 1);
}
