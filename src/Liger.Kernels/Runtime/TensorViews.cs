using ILGPU;
using ILGPU.Runtime;
using TorchSharp;

namespace Liger.Kernels.Runtime;

/// <summary>
/// An ILGPU buffer over memory that a torch tensor owns: no allocation, no copy. The tensor must stay
/// alive while kernels that use the view are being launched (<see cref="TensorViews"/> keeps it so);
/// afterwards torch's caching allocator orders any reuse of the memory after our kernels, since both
/// run on the same stream.
/// </summary>
internal sealed class TensorBuffer : MemoryBuffer
{
    internal TensorBuffer(Accelerator accelerator, IntPtr pointer, long length, int elementSize)
        : base(accelerator, length, elementSize) => NativePtr = pointer;

    protected override void MemSet(AcceleratorStream stream, byte value, in ArrayView<byte> targetView) =>
        throw new NotSupportedException("Tensor memory is written by torch or by Liger kernels, not through ILGPU copies.");

    protected override void CopyFrom(AcceleratorStream stream, in ArrayView<byte> sourceView, in ArrayView<byte> targetView) =>
        throw new NotSupportedException("Tensor memory is written by torch or by Liger kernels, not through ILGPU copies.");

    protected override void CopyTo(AcceleratorStream stream, in ArrayView<byte> sourceView, in ArrayView<byte> targetView) =>
        throw new NotSupportedException("Tensor memory is read by torch or by Liger kernels, not through ILGPU copies.");

    // The memory belongs to the tensor: nothing to free.
    protected override void DisposeAcceleratorObject(bool disposing) { }
}

/// <summary>
/// Zero-copy ILGPU views of torch tensors for one launch. Dispose after the launch call returns: that
/// releases the ILGPU buffer objects and ends the keep-alive of the tensors.
/// </summary>
internal sealed class TensorViews : IDisposable
{
    private readonly KernelDevice device;
    private readonly List<TensorBuffer> buffers = new(8);
    private readonly List<torch.Tensor> tensors = new(8);

    internal TensorViews(KernelDevice device)
    {
        this.device = device;
        if (device.IsCuda)
            device.Accelerator.Bind(); // sets libtorch's primary context current on this thread
    }

    /// <summary>A view of <paramref name="tensor"/>'s elements; checks element size, contiguity and device.</summary>
    internal ArrayView<T> Of<T>(torch.Tensor tensor, string argumentName) where T : unmanaged
    {
        int size = System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        if (tensor.element_size() != size)
            throw new ArgumentException($"'{argumentName}' has {tensor.element_size()}-byte elements ({tensor.dtype}); the kernel expects {size}-byte elements.", argumentName);
        return Create<T>(tensor, argumentName, tensor.numel());
    }

    /// <summary>
    /// A view of <paramref name="tensor"/> as packed vectors (8 elements each, e.g. 16 bytes of bf16), for
    /// kernels that move one vector per access. The tensor's size in bytes must be a multiple of the
    /// vector's and its data 16-byte aligned (see <see cref="VectorFriendly"/>).
    /// </summary>
    internal ArrayView<TVec> OfVectors<TVec>(torch.Tensor tensor, string argumentName) where TVec : unmanaged
    {
        int size = System.Runtime.CompilerServices.Unsafe.SizeOf<TVec>();
        long bytes = tensor.numel() * tensor.element_size();
        if (bytes % size != 0 || TorchInterop.DataPointer(tensor) % VectorAlignment != 0)
            throw new ArgumentException($"'{argumentName}' cannot be read as {size}-byte vectors ({bytes} bytes, data at {TorchInterop.DataPointer(tensor):X}).", argumentName);
        return Create<TVec>(tensor, argumentName, bytes / size);
    }

    /// <summary>Byte alignment that vector accesses need.</summary>
    internal const int VectorAlignment = 16;

    /// <summary>True when every tensor's data starts on a <see cref="VectorAlignment"/>-byte boundary.</summary>
    internal static bool VectorFriendly(params torch.Tensor[] tensors) =>
        tensors.All(t => TorchInterop.DataPointer(t) % VectorAlignment == 0);

    private ArrayView<T> Create<T>(torch.Tensor tensor, string argumentName, long length) where T : unmanaged
    {
        if (!tensor.is_contiguous())
            throw new ArgumentException($"'{argumentName}' must be contiguous.", argumentName);
        bool onCuda = tensor.device.type == DeviceType.CUDA;
        if (onCuda != device.IsCuda || (onCuda && Math.Max(tensor.device.index, 0) != device.TorchDeviceIndex))
            throw new ArgumentException($"'{argumentName}' is on {tensor.device}, but the kernels run on {device}.", argumentName);
        int size = System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        var buffer = new TensorBuffer(device.Accelerator, TorchInterop.DataPointer(tensor), Math.Max(length, 1), size);
        buffers.Add(buffer);
        tensors.Add(tensor);
        return new ArrayView<T>(buffer, 0, length);
    }

    public void Dispose()
    {
        device.AfterLaunch();
        foreach (var buffer in buffers)
            buffer.Dispose();
        GC.KeepAlive(tensors);
    }
}
