using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Training;

/// <summary>
/// Batch arrays to the training device without a host synchronisation. A copy from pageable host memory to the GPU
/// waits for the device's queue to drain (measured: 2 of the 4 host syncs of a training step, one per input tensor,
/// at the start of each micro-batch, while the previous step's optimizer still runs); staged through pinned memory
/// the copy is queued behind that work instead, and the host goes on launching the forward. libtorch's pinned-memory
/// cache keeps the staging buffer until the copy has run, so it may be released at once.
/// </summary>
internal static class DeviceUpload
{
    public static Tensor Of(long[] values, long[] shape, Device device)
    {
        if (device.type != DeviceType.CUDA)
            return tensor(values, shape, device: device);
        using var pageable = tensor(values, shape);
        using var pinned = pageable.pin_memory();
        return pinned.to(device, non_blocking: true);
    }
}
