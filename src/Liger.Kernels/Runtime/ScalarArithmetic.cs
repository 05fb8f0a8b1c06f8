using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Runtime;

/// <summary>
/// Tensor-with-number operations whose Scalar lives through the whole native call. TorchSharp 0.107 turns a
/// number into a Scalar object, passes its handle to libtorch and keeps no reference to it, so a garbage
/// collection during the call (another thread's allocation is enough) can finalize the Scalar and free it while
/// libtorch reads it: CI saw it as c10 assertions from Scalar::toLong and Scalar::equal, in eager model code, and
/// README's test command once as a SIGSEGV. TorchSharp also makes such Scalars inside some of its own methods
/// (<c>a + b</c> and <c>add(b)</c> are <c>add(b, 1)</c>, <c>square()</c> is <c>pow(2)</c>). BannedSymbols.txt bans all
/// of them at compile time (RS0030); these helpers are what to write instead (docs/design.md, "Temporaries TorchSharp
/// does not keep alive").
/// </summary>
public static partial class ScalarArithmetic
{
    // add's alpha for tensor + tensor, held for the process's lifetime (a long: torch refuses a floating alpha for integer tensors).
    private static readonly Scalar One = 1L.ToScalar();

    /// <summary><paramref name="tensor"/> × <paramref name="value"/>.</summary>
    public static Tensor Times(this Tensor tensor, double value)
    {
        using Scalar s = value.ToScalar();
        return tensor.mul(s);
    }

    /// <summary><paramref name="tensor"/> × <paramref name="value"/>, for integer tensors (a double would promote them to float).</summary>
    public static Tensor Times(this Tensor tensor, long value)
    {
        using Scalar s = value.ToScalar();
        return tensor.mul(s);
    }

    /// <summary><paramref name="tensor"/> − <paramref name="value"/>.</summary>
    public static Tensor Minus(this Tensor tensor, double value)
    {
        using Scalar s = value.ToScalar();
        return tensor.sub(s);
    }

    /// <summary><paramref name="tensor"/> / <paramref name="value"/>.</summary>
    public static Tensor DividedBy(this Tensor tensor, double value)
    {
        using Scalar s = value.ToScalar();
        return tensor.div(s);
    }

    /// <summary><paramref name="tensor"/> to the power <paramref name="exponent"/>, elementwise.</summary>
    public static Tensor Power(this Tensor tensor, long exponent)
    {
        using Scalar s = exponent.ToScalar();
        return tensor.pow(s);
    }

    /// <summary><paramref name="tensor"/>², elementwise (TorchSharp's <c>square()</c> is <c>pow(2)</c> through an unheld Scalar).</summary>
    public static Tensor Squared(this Tensor tensor)
    {
        using Scalar two = 2.ToScalar();
        return tensor.pow(two);
    }

    /// <summary><paramref name="tensor"/> + <paramref name="value"/>.</summary>
    public static Tensor Plus(this Tensor tensor, double value)
    {
        using Scalar s = value.ToScalar();
        return tensor.add(s, One);
    }

    /// <summary><paramref name="tensor"/> + <paramref name="value"/>, for integer tensors.</summary>
    public static Tensor Plus(this Tensor tensor, long value)
    {
        using Scalar s = value.ToScalar();
        return tensor.add(s, One);
    }

    /// <summary><paramref name="tensor"/> + <paramref name="other"/> (TorchSharp's <c>+</c> and <c>add(other)</c> pass alpha = 1 through an unheld Scalar).</summary>
    public static Tensor Plus(this Tensor tensor, Tensor other) => tensor.add(other, One);

    /// <summary><paramref name="tensor"/> += <paramref name="other"/>, in place; returns <paramref name="tensor"/>.</summary>
    public static Tensor PlusInPlace(this Tensor tensor, Tensor other) => tensor.add_(other, One);

    /// <summary><paramref name="tensor"/> += <paramref name="value"/>, in place; returns <paramref name="tensor"/>.</summary>
    public static Tensor PlusInPlace(this Tensor tensor, double value)
    {
        using Scalar s = value.ToScalar();
        return tensor.add_(s, One);
    }

    /// <summary><paramref name="tensor"/> ×= <paramref name="value"/>, in place; returns <paramref name="tensor"/>.</summary>
    public static Tensor TimesInPlace(this Tensor tensor, double value)
    {
        using Scalar s = value.ToScalar();
        return tensor.mul_(s);
    }

    /// <summary><paramref name="tensor"/> /= <paramref name="value"/>, in place; returns <paramref name="tensor"/>.</summary>
    public static Tensor DividedByInPlace(this Tensor tensor, double value)
    {
        using Scalar s = value.ToScalar();
        return tensor.div_(s);
    }

    /// <summary><paramref name="value"/> − <paramref name="tensor"/>.</summary>
    public static Tensor SubtractedFrom(this Tensor tensor, double value)
    {
        using Scalar s = value.ToScalar();
        return tensor.neg().add_(s, One);
    }

    /// <summary><paramref name="numerator"/> / <paramref name="tensor"/>, computed as TorchSharp's <c>k / x</c> (reciprocal, then ×).</summary>
    public static Tensor Over(double numerator, Tensor tensor) => tensor.reciprocal().Times(numerator);

    /// <summary><paramref name="tensor"/> with <paramref name="source"/>'s rows added at <paramref name="index"/> along <paramref name="dim"/>.</summary>
    public static Tensor IndexAdded(this Tensor tensor, long dim, Tensor index, Tensor source) => tensor.index_add(dim, index, source, One);

    /// <summary>cap · tanh(x / cap): Gemma's soft capping.</summary>
    public static Tensor SoftCapped(this Tensor tensor, double cap) => tensor.DividedBy(cap).tanh().Times(cap);
}
