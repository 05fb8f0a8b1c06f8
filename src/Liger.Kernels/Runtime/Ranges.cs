using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Runtime;

/// <summary>
/// torch.arange over int64 with its bounds held alive for the whole native call. TorchSharp passes the
/// implicit Scalar temporaries' handles to libtorch and keeps no reference to them, so a garbage collection
/// during the call can finalize (free) a bound while libtorch reads it; seen once in the model tests as
/// "Expected false to be true" from c10 Scalar::toLong.
/// </summary>
public static class Ranges
{
    /// <summary>[start, stop) by step, int64, on <paramref name="device"/>.</summary>
    public static Tensor Int64(long start, long stop, long step = 1, Device? device = null)
    {
        using Scalar first = start.ToScalar(), end = stop.ToScalar(), stride = step.ToScalar();
        return arange(first, end, stride, dtype: ScalarType.Int64, device: device);
    }
}
