using System.Runtime.InteropServices;

namespace Microsoft.ML.Liger.Training;

/// <summary>
/// The CUDA caching allocator's allocated-bytes statistics, read through test/Liger.Benchmarks/native/cuda_memory_stats.cpp
/// (compiled on the GPU host by test/Liger.Benchmarks/gpu-run.sh; path in LIGER_CUDA_STATS): TorchSharp
/// binds none of the allocator statistics. Without the shim there is no reading (training reports "n/a").
/// </summary>
internal sealed unsafe class CudaMemoryStats
{
    private readonly delegate* unmanaged<int, long> allocated, peak;
    private readonly delegate* unmanaged<int, void> resetPeak;

    private CudaMemoryStats(IntPtr library)
    {
        allocated = (delegate* unmanaged<int, long>)NativeLibrary.GetExport(library, "liger_cuda_allocated");
        peak = (delegate* unmanaged<int, long>)NativeLibrary.GetExport(library, "liger_cuda_peak_allocated");
        resetPeak = (delegate* unmanaged<int, void>)NativeLibrary.GetExport(library, "liger_cuda_reset_peak");
    }

    internal static CudaMemoryStats? TryLoad()
    {
        string? path = Environment.GetEnvironmentVariable("LIGER_CUDA_STATS");
        return path is not null && NativeLibrary.TryLoad(path, out var library) ? new CudaMemoryStats(library) : null;
    }

    internal long Allocated(int device = 0) => allocated(device);
    internal long Peak(int device = 0) => peak(device);
    internal void ResetPeak(int device = 0) => resetPeak(device);
}
