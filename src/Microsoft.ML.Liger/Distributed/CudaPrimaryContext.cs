using System.Runtime.InteropServices;

namespace Microsoft.ML.Liger.Distributed;

/// <summary>
/// Makes a GPU's primary context current on this thread through the driver API: NCCL builds its communicator on the
/// current device, and libtorch works in the same primary context, so NCCL and torch then share memory and stream 0.
/// </summary>
internal static partial class CudaPrimaryContext
{
    private const string Driver = "libcuda.so.1";

    [LibraryImport(Driver, EntryPoint = "cuInit")] private static partial int Init(uint flags);
    [LibraryImport(Driver, EntryPoint = "cuDeviceGet")] private static partial int DeviceGet(out int device, int ordinal);
    [LibraryImport(Driver, EntryPoint = "cuDevicePrimaryCtxRetain")] private static partial int PrimaryCtxRetain(out IntPtr context, int device);
    [LibraryImport(Driver, EntryPoint = "cuCtxSetCurrent")] private static partial int CtxSetCurrent(IntPtr context);

    public static void MakeCurrent(int ordinal)
    {
        Check(Init(0), "cuInit");
        Check(DeviceGet(out int device, ordinal), $"cuDeviceGet({ordinal})");
        Check(PrimaryCtxRetain(out var context, device), "cuDevicePrimaryCtxRetain");
        Check(CtxSetCurrent(context), "cuCtxSetCurrent");
    }

    private static void Check(int status, string call)
    {
        if (status != 0)
            throw new InvalidOperationException($"{call} failed with CUDA driver error {status}.");
    }
}
