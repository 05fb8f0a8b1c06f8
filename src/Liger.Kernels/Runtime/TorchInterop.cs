using System.Runtime.InteropServices;
using TorchSharp;

namespace Liger.Kernels.Runtime;

/// <summary>Reads what TorchSharp keeps internal: the address of a tensor's first element.</summary>
internal static partial class TorchInterop
{
    // THSTensor_data returns at::Tensor::data_ptr(), which already includes the storage offset, so a
    // view that starts mid-storage (x[1..]) maps to its own first element, not the storage base.
    [LibraryImport("LibTorchSharp", EntryPoint = "THSTensor_data")]
    private static partial IntPtr TensorData(IntPtr handle);

    internal static IntPtr DataPointer(torch.Tensor tensor)
    {
        IntPtr ptr = TensorData(tensor.Handle);
        if (ptr == IntPtr.Zero && tensor.numel() > 0)
            throw new InvalidOperationException("libtorch returned no data pointer for a non-empty tensor.");
        return ptr;
    }
}
