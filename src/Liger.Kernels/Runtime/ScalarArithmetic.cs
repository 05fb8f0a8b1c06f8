using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Runtime;

/// <summary>
/// Tensor-with-number operations whose Scalar lives through the whole native call. TorchSharp 0.107 turns a
/// number into a Scalar object, passes its handle to libtorch and keeps no reference to it, so a garbage
/// collection during the call (another thread's allocation is enough) can finalize the Scalar and free it while
/// libtorch reads it: CI saw it as c10 assertions from Scalar::toLong and Scalar::equal, in eager model code. Code
/// that runs on every step uses these instead of the implicit conversions (<c>x * 0.5</c>, <c>x.pow(2)</c>).
/// </summary>
public static class ScalarArithmetic
{
    /// <summary><paramref name="tensor"/> × <paramref name="value"/>.</summary>
    public static Tensor Times(this Tensor tensor, double value)
    {
        using Scalar s = value;
        return tensor.mul(s);
    }

    /// <summary><paramref name="tensor"/> / <paramref name="value"/>.</summary>
    public static Tensor DividedBy(this Tensor tensor, double value)
    {
        using Scalar s = value;
        return tensor.div(s);
    }

    /// <summary><paramref name="tensor"/>², elementwise (TorchSharp's <c>square()</c> is <c>pow(2)</c> through an unheld Scalar).</summary>
    public static Tensor Squared(this Tensor tensor)
    {
        using Scalar two = 2;
        return tensor.pow(two);
    }

    /// <summary><paramref name="tensor"/> + <paramref name="value"/>.</summary>
    public static Tensor Plus(this Tensor tensor, double value)
    {
        using Scalar s = value;
        return tensor.add(s);
    }

    /// <summary><paramref name="tensor"/> + <paramref name="value"/>, for integer tensors.</summary>
    public static Tensor Plus(this Tensor tensor, long value)
    {
        using Scalar s = value;
        return tensor.add(s);
    }

    /// <summary>max(<paramref name="tensor"/>, <paramref name="min"/>).</summary>
    public static Tensor AtLeast(this Tensor tensor, double min)
    {
        using Scalar s = min;
        return tensor.clamp_min(s);
    }

    /// <summary>max(<paramref name="tensor"/>, <paramref name="min"/>), for integer tensors (a double would promote them to float).</summary>
    public static Tensor AtLeast(this Tensor tensor, long min)
    {
        using Scalar s = min;
        return tensor.clamp_min(s);
    }

    /// <summary>min(<paramref name="tensor"/>, <paramref name="max"/>).</summary>
    public static Tensor AtMost(this Tensor tensor, double max)
    {
        using Scalar s = max;
        return tensor.clamp_max(s);
    }

    /// <summary><paramref name="tensor"/> with <paramref name="value"/> where <paramref name="mask"/> is true.</summary>
    public static Tensor FilledWhere(this Tensor tensor, Tensor mask, double value)
    {
        using Scalar s = value;
        return tensor.masked_fill(mask, s);
    }

    /// <summary>Where <paramref name="tensor"/> differs from <paramref name="value"/> (bool).</summary>
    public static Tensor NotEqualTo(this Tensor tensor, long value)
    {
        using Scalar s = value;
        return tensor.ne(s);
    }

    /// <summary>Where <paramref name="tensor"/> is below <paramref name="value"/> (bool).</summary>
    public static Tensor LessThan(this Tensor tensor, long value)
    {
        using Scalar s = value;
        return tensor.lt(s);
    }

    /// <summary>cap · tanh(x / cap): Gemma's soft capping.</summary>
    public static Tensor SoftCapped(this Tensor tensor, double cap) => tensor.DividedBy(cap).tanh().Times(cap);

    /// <summary>A tensor of <paramref name="shape"/> filled with <paramref name="value"/>.</summary>
    public static Tensor Full(long[] shape, long value, ScalarType dtype, Device device)
    {
        using Scalar s = value;
        return full(shape, s, dtype: dtype, device: device);
    }
}
