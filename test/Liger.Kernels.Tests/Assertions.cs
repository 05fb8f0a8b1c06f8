using Liger.Kernels.Runtime;
using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>How close a result must be: norm-wise relative error and an elementwise allclose.</summary>
/// <param name="NormRel">Bound on ‖actual − expected‖ / ‖expected‖ (the denominator is the scale where one is given).</param>
/// <param name="Rtol">Elementwise relative tolerance.</param>
/// <param name="Atol">Elementwise absolute tolerance, in units of the result's scale (its RMS): "after normalising scale".</param>
/// <param name="MaxMismatchFraction">Largest fraction of elements allowed to differ at all (1 = no limit). Two
/// implementations of the same rounding differ only where a tie or an fp32 summation order flips a
/// rounding, which is rare; a conversion that truncates instead of rounding differs in about half.</param>
public readonly record struct Tolerance(double NormRel, double Rtol, double Atol, double MaxMismatchFraction = 1.0)
{
    /// <summary>Tolerance of a result of <paramref name="dtype"/> against an exact (float64) reference.</summary>
    public static Tolerance VersusFloat64(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => new(1e-5, 1e-4, 1e-5),
        ScalarType.BFloat16 => new(1e-2, 2e-2, 2e-2),
        ScalarType.Float16 => new(2e-3, 5e-3, 5e-3),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "No tolerance for this dtype."),
    };

    /// <summary>
    /// Tolerance between two implementations of the same rounding at the same dtype (kernel vs the torch
    /// path): a few units in the last place of the dtype (a rounding tie or an fp32 summation order flips
    /// one rounding, and in llama/none modes a flipped intermediate moves the next rounding too), plus a
    /// small allowance at the scale of the terms for fp32 summation order; for 16-bit dtypes at most 1%
    /// of the elements may differ at all, which a conversion that rounds differently (not to nearest
    /// even) exceeds many times over. The 16-bit norm bound is the same two units in the last place as
    /// the elementwise one: in a tensor of one element (or a few), the single element that may differ
    /// makes the whole norm, and the eager path rounds twice (silu, then the product), so that element
    /// can be two units off near the bottom of a binade (CI once saw 1.22e-3 for one fp16 element);
    /// the mismatch fraction, not the norm, is what catches a systematic rounding error.
    /// </summary>
    public static Tolerance SameRounding(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => new(2e-6, 1e-5, 1e-5),
        ScalarType.BFloat16 => new(2.0 / 128, 2.0 / 128, 1e-4, MaxMismatchFraction: 0.01),
        ScalarType.Float16 => new(2.0 / 1024, 2.0 / 1024, 1e-4, MaxMismatchFraction: 0.01),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "No tolerance for this dtype."),
    };
}

/// <summary>Tensor assertions used by the op tests.</summary>
public static class TensorAssert
{
    /// <summary>
    /// Asserts <paramref name="actual"/> is finite and close to <paramref name="expected"/>:
    /// ‖a − e‖ / max(‖e‖, ‖scale‖) ≤ NormRel and |a − e| ≤ Atol·rms(scale or e) + Rtol·|e| elementwise.
    /// <paramref name="scale"/> is the size of the terms a result is computed from, for results that cancel
    /// (RMSNorm's dx = rstd·(m − rstd²·dot/H·x)): rounding error is relative to the terms, not to the difference.
    /// </summary>
    /// <param name="termMagnitude">For sums of products (matrix products): Σ|terms| per element. The
    /// elementwise bound becomes Atol·rms(scale or e) + Rtol·max(|e|, Σ|terms|), the classical bound for a rounded
    /// dot product, where near-zero results of large terms carry an error the size of the terms.</param>
    public static void Close(Tensor actual, Tensor expected, Tolerance tolerance, string what, string context,
        Tensor? scale = null, Tensor? termMagnitude = null)
    {
        using var _ = NewDisposeScope();
        CollectionAssert.AreEqual(expected.shape, actual.shape, $"{what}: shape differs. {context}");
        AssertFinite(actual, what, context);
        var a = actual.detach().cpu().to(ScalarType.Float64);
        var e = expected.detach().cpu().to(ScalarType.Float64);
        if (a.numel() == 0)
            return;
        var s = scale is null ? e : scale.detach().cpu().to(ScalarType.Float64);

        double diffNorm = (a - e).norm().item<double>();
        double denominator = Math.Max(e.norm().item<double>(), s.norm().item<double>());
        double relative = denominator == 0 ? diffNorm : diffNorm / denominator;
        Assert.IsLessThanOrEqualTo(tolerance.NormRel, relative,
            $"{what}: ‖actual − expected‖/‖expected‖ = {relative:E3} exceeds {tolerance.NormRel:E1}. {context}");

        if (tolerance.MaxMismatchFraction < 1.0)
        {
            long differing = a.ne(e).sum().item<long>();
            long allowedCount = Math.Max(1L, (long)Math.Floor(tolerance.MaxMismatchFraction * a.numel()));
            Assert.IsLessThanOrEqualTo(allowedCount, differing,
                $"{what}: {differing} of {a.numel()} elements differ at all (at most {allowedCount} may, from rounding ties). {context}");
        }

        double rms = Math.Sqrt(s.Squared().mean().item<double>());
        var error = (a - e).abs();
        var magnitude = termMagnitude is null ? e.abs() : maximum(e.abs(), termMagnitude.detach().cpu().to(ScalarType.Float64));
        var allowed = magnitude.Times(tolerance.Rtol).Plus(tolerance.Atol * rms);
        var bad = error > allowed;
        long badCount = bad.sum().item<long>();
        if (badCount > 0)
        {
            long worst = (error - allowed).flatten().argmax().item<long>();
            Assert.Fail(
                $"{what}: {badCount} of {a.numel()} elements outside atol {tolerance.Atol:E1}·rms({rms:E3}) + rtol {tolerance.Rtol:E1}·{(termMagnitude is null ? "|expected|" : "Σ|terms|")}; " +
                $"worst at flat index {worst}: actual {a.flatten()[worst].item<double>():R}, expected {e.flatten()[worst].item<double>():R}. {context}");
        }
    }

    /// <summary>
    /// <see cref="Close"/> for results that are sums of products (a linear layer's output or gradients), with both bounds
    /// taken relative to Σ|terms| per element (<paramref name="terms"/>): a few outputs that cancel (two out features,
    /// a row of eight) carry rounding error the size of their terms, which a norm relative to the result itself exceeds.
    /// </summary>
    public static void CloseToSums(Tensor actual, Tensor expected, Tolerance tolerance, string what, string context, Tensor terms) =>
        Close(actual, expected, tolerance, what, context, scale: terms, termMagnitude: terms);

    /// <summary>Asserts every element is finite (NaN never passes: outputs are poisoned with NaN).</summary>
    public static void AssertFinite(Tensor tensor, string what, string context)
    {
        using var _ = NewDisposeScope();
        var t = tensor.detach().cpu();
        if (t.numel() == 0)
            return;
        long notFinite = t.isfinite().logical_not().sum().item<long>();
        Assert.AreEqual(0L, notFinite, $"{what}: {notFinite} of {t.numel()} elements are NaN or infinite. {context}");
    }

    /// <summary>Asserts two tensors hold the same bytes (same dtype, shape, and every bit).</summary>
    public static void BitwiseEqual(Tensor expected, Tensor actual, string what, string context)
    {
        Assert.AreEqual(expected.dtype, actual.dtype, $"{what}: dtype differs. {context}");
        CollectionAssert.AreEqual(expected.shape, actual.shape, $"{what}: shape differs. {context}");
        AssertFinite(actual, what, context);
        using var e = expected.detach().cpu().contiguous();
        using var a = actual.detach().cpu().contiguous();
        var eb = e.bytes.ToArray();
        var ab = a.bytes.ToArray();
        int first = Enumerable.Range(0, eb.Length).FirstOrDefault(i => eb[i] != ab[i], -1);
        Assert.AreEqual(-1, first, $"{what}: not bitwise identical (first differing byte {first}). {context}");
    }
}

/// <summary>Shapes written as "7x4097" (readable in test names) and random inputs.</summary>
public static class Inputs
{
    /// <summary>Parses "2x3x33" into [2, 3, 33].</summary>
    public static long[] Shape(string text) =>
        text.Split('x').Select(s => long.Parse(s, CultureInfo.InvariantCulture)).ToArray();

    /// <summary>randn(shape) · <paramref name="scale"/> + <paramref name="shift"/>, made in fp32 on the CPU and rounded to <paramref name="dtype"/>.</summary>
    public static Tensor Randn(long[] shape, ScalarType dtype, double scale = 1.0, double shift = 0.0) =>
        (randn(shape, dtype: ScalarType.Float32).Times(scale).Plus(shift)).to(dtype);

    /// <summary>A case description for messages.</summary>
    public static string Describe(long seed, params object[] parts) =>
        $"[{string.Join(", ", parts.Select(p => Convert.ToString(p, CultureInfo.InvariantCulture)))}] {Seeds.Describe(seed)}";
}
