using System.Runtime.InteropServices;

namespace Liger.Benchmarks.Gpu;

/// <summary>Kernel launches, host synchronisations and device-to-host copies so far in this process.</summary>
internal readonly record struct ApiCounts(long Launches, long Syncs, long CopiesToHost)
{
    public static ApiCounts operator -(ApiCounts a, ApiCounts b) => new(a.Launches - b.Launches, a.Syncs - b.Syncs, a.CopiesToHost - b.CopiesToHost);
}

/// <summary>
/// The CUPTI counter that gpu-run.sh compiles (native/cuda_api_counts.c) and names in LIGER_CUDA_COUNTS: counts
/// every launch (libtorch, cuBLAS, ILGPU) and every host synchronisation, for "launches and syncs per step".
/// </summary>
internal sealed unsafe class CudaApiCounts
{
    private readonly delegate* unmanaged<long*, void> read;

    private CudaApiCounts(nint library) =>
        read = (delegate* unmanaged<long*, void>)NativeLibrary.GetExport(library, "liger_api_counts_read");

    /// <summary>Loads and starts the counter, or null (with a line on stderr) when it is absent or CUPTI refuses.</summary>
    public static CudaApiCounts? TryStart()
    {
        if (Environment.GetEnvironmentVariable("LIGER_CUDA_COUNTS") is not { Length: > 0 } path || !File.Exists(path))
            return null;
        var library = NativeLibrary.Load(path);
        var start = (delegate* unmanaged<int>)NativeLibrary.GetExport(library, "liger_api_counts_start");
        int status = start();
        if (status != 0)
        {
            Console.Error.WriteLine($"CUPTI did not start (status {status}): launches and syncs per step read n/a");
            return null;
        }
        return new CudaApiCounts(library);
    }

    public ApiCounts Read()
    {
        long* values = stackalloc long[3];
        read(values);
        return new ApiCounts(values[0], values[1], values[2]);
    }
}
