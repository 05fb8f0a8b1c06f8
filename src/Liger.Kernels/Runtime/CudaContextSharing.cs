using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Liger.Kernels.Runtime;

/// <summary>
/// Makes an ILGPU CUDA accelerator run in libtorch's primary context.
/// </summary>
/// <remarks>
/// ILGPU's <see cref="CudaAccelerator"/> creates a context of its own (cuCtxCreate) and makes it current.
/// libtorch works in the device's primary context on the legacy default stream. Kernels launched in a
/// second context are not ordered after torch's queued work (a race we reproduced on an H100), and
/// torch would allocate new tensors inside ILGPU's context while it is current. So, right after
/// creating the accelerator, we point it at the primary context (retained, as the runtime API does)
/// and destroy the context it made. ILGPU's default stream is the null stream, which in the primary
/// context is the same legacy default stream torch uses: our kernels and torch's ops are ordered with
/// no host synchronisation. The accelerator lives until the process ends: disposing it would destroy
/// the primary context under libtorch.
/// </remarks>
internal static class CudaContextSharing
{
    private static readonly MethodInfo NativePtrSetter =
        typeof(Accelerator).GetProperty(nameof(Accelerator.NativePtr))!.GetSetMethod(nonPublic: true)
        ?? throw new MissingMethodException("ILGPU Accelerator.NativePtr has no setter; the ILGPU version is not the one Liger was built for.");

    internal static CudaAccelerator CreateInPrimaryContext(Context context, int ordinal)
    {
        var accelerator = context.CreateCudaAccelerator(ordinal);
        IntPtr own = accelerator.NativePtr;
        CudaDriver.Check(CudaDriver.DeviceGet(out int device, ordinal), "cuDeviceGet");
        CudaDriver.Check(CudaDriver.PrimaryCtxRetain(out IntPtr primary, device), "cuDevicePrimaryCtxRetain");
        NativePtrSetter.Invoke(accelerator, [primary]);
        CudaDriver.Check(CudaDriver.CtxSetCurrent(primary), "cuCtxSetCurrent");
        CudaDriver.Check(CudaDriver.CtxDestroy(own), "cuCtxDestroy");
        // cuCtxDestroy may leave no context current on this thread: make the primary current again,
        // and bind the accelerator so ILGPU's thread-local notion of "current" agrees.
        CudaDriver.Check(CudaDriver.CtxSetCurrent(primary), "cuCtxSetCurrent");
        accelerator.Bind();
        return accelerator;
    }
}
