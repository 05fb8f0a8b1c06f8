using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Runtime;

// Comparisons, clamps, fills and filled tensors, each with its Scalar held through the native call (see ScalarArithmetic.cs).
public static partial class ScalarArithmetic
{
    /// <summary>Every element of <paramref name="tensor"/> set to <paramref name="value"/>, in place; returns <paramref name="tensor"/>.</summary>
    public static Tensor FillInPlace(this Tensor tensor, double value)
    {
        using Scalar s = value.ToScalar();
        return tensor.fill_(s);
    }

    /// <summary>max(<paramref name="tensor"/>, <paramref name="min"/>).</summary>
    public static Tensor AtLeast(this Tensor tensor, double min)
    {
        using Scalar s = min.ToScalar();
        return tensor.clamp_min(s);
    }

    /// <summary>max(<paramref name="tensor"/>, <paramref name="min"/>), for integer tensors (a double would promote them to float).</summary>
    public static Tensor AtLeast(this Tensor tensor, long min)
    {
        using Scalar s = min.ToScalar();
        return tensor.clamp_min(s);
    }

    /// <summary>min(<paramref name="tensor"/>, <paramref name="max"/>).</summary>
    public static Tensor AtMost(this Tensor tensor, double max)
    {
        using Scalar s = max.ToScalar();
        return tensor.clamp_max(s);
    }

    /// <summary><paramref name="tensor"/> with <paramref name="value"/> where <paramref name="mask"/> is true.</summary>
    public static Tensor FilledWhere(this Tensor tensor, Tensor mask, double value)
    {
        using Scalar s = value.ToScalar();
        return tensor.masked_fill(mask, s);
    }

    /// <summary><paramref name="tensor"/> with <paramref name="value"/> where <paramref name="mask"/> is true, in place; returns <paramref name="tensor"/>.</summary>
    public static Tensor FillWhereInPlace(this Tensor tensor, Tensor mask, double value)
    {
        using Scalar s = value.ToScalar();
        return tensor.masked_fill_(mask, s);
    }

    /// <summary>Where <paramref name="tensor"/> differs from <paramref name="value"/> (bool).</summary>
    public static Tensor NotEqualTo(this Tensor tensor, long value)
    {
        using Scalar s = value.ToScalar();
        return tensor.ne(s);
    }

    /// <summary>Where <paramref name="tensor"/> is below <paramref name="value"/> (bool).</summary>
    public static Tensor LessThan(this Tensor tensor, long value)
    {
        using Scalar s = value.ToScalar();
        return tensor.lt(s);
    }

    /// <summary>Where <paramref name="tensor"/> equals <paramref name="value"/> (bool).</summary>
    public static Tensor EqualTo(this Tensor tensor, long value)
    {
        using Scalar s = value.ToScalar();
        return tensor.eq(s);
    }

    /// <summary>Where <paramref name="tensor"/> is at least <paramref name="value"/> (bool).</summary>
    public static Tensor GreaterOrEqual(this Tensor tensor, double value)
    {
        using Scalar s = value.ToScalar();
        return tensor.ge(s);
    }

    /// <summary>Where <paramref name="tensor"/> is below <paramref name="value"/> (bool).</summary>
    public static Tensor LessThan(this Tensor tensor, double value)
    {
        using Scalar s = value.ToScalar();
        return tensor.lt(s);
    }

    /// <summary>Where <paramref name="tensor"/> is at most <paramref name="value"/> (bool).</summary>
    public static Tensor LessOrEqual(this Tensor tensor, double value)
    {
        using Scalar s = value.ToScalar();
        return tensor.le(s);
    }

    /// <summary>Where <paramref name="tensor"/> is above <paramref name="value"/> (bool).</summary>
    public static Tensor GreaterThan(this Tensor tensor, double value)
    {
        using Scalar s = value.ToScalar();
        return tensor.gt(s);
    }

    /// <summary>A tensor of <paramref name="shape"/> filled with <paramref name="value"/>.</summary>
    public static Tensor Full(long[] shape, long value, ScalarType dtype, Device? device = null)
    {
        using Scalar s = value.ToScalar();
        return full(shape, s, dtype: dtype, device: device);
    }

    /// <summary>A tensor of <paramref name="shape"/> filled with <paramref name="value"/> (floating; default dtype and device where null).</summary>
    public static Tensor Full(long[] shape, double value, ScalarType? dtype = null, Device? device = null)
    {
        using Scalar s = value.ToScalar();
        return full(shape, s, dtype: dtype, device: device);
    }

    /// <summary>A tensor shaped, typed and placed as <paramref name="like"/>, filled with <paramref name="value"/> (integer tensors).</summary>
    public static Tensor FullLike(Tensor like, long value)
    {
        using Scalar s = value.ToScalar();
        return full_like(like, s);
    }

    /// <summary>A tensor shaped, typed and placed as <paramref name="like"/>, filled with <paramref name="value"/>.</summary>
    public static Tensor FullLike(Tensor like, double value)
    {
        using Scalar s = value.ToScalar();
        return full_like(like, s);
    }
}
