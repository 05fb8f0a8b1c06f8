using System.Runtime.InteropServices;

namespace Liger.Kernels.Runtime;

/// <summary>The few CUDA driver API calls needed to share libtorch's primary context.</summary>
internal static partial class CudaDriver
{
    private const string Lib = "libcuda.so.1";

    [LibraryImport(Lib, EntryPoint = "cuDeviceGet")] internal static partial int DeviceGet(out int device, int ordinal);
    [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxRetain")] internal static partial int PrimaryCtxRetain(out IntPtr context, int device);
    [LibraryImport(Lib, EntryPoint = "cuCtxSetCurrent")] internal static partial int CtxSetCurrent(IntPtr context);
    [LibraryImport(Lib, EntryPoint = "cuCtxDestroy_v2")] internal static partial int CtxDestroy(IntPtr context);

    internal static void Check(int status, string call)
    {
        if (status != 0)
            throw new InvalidOperationException($"CUDA driver call {call} failed with CUresult {status}.");
    }
}
