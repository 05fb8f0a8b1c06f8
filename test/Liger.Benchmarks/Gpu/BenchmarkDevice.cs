using Microsoft.ML.Liger.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>Device start-up shared by the benchmark modes.</summary>
internal static class BenchmarkDevice
{
    /// <summary>
    /// Initialises <paramref name="device"/> and, on CUDA, loads the allocator-statistics shim (null when absent or on
    /// the CPU). The statistics are per device and exist only once CUDA is initialised (before, they throw "Invalid
    /// device argument"), hence the allocation first.
    /// </summary>
    public static CudaMemoryStats? Start(Device device)
    {
        using (zeros(1, device: device))
            if (device.type == DeviceType.CUDA)
                cuda.synchronize();
        return device.type == DeviceType.CUDA ? CudaMemoryStats.TryLoad() : null;
    }

    /// <summary>
    /// Lets a finished run's tensors go before the next model is built. TorchSharp binds no empty_cache, so the
    /// allocator keeps its cached blocks for the next run (allocated bytes, which are reported, do not count them).
    /// </summary>
    public static void FreeMemory(Device device)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        if (device.type == DeviceType.CUDA)
            cuda.synchronize();
    }
}
