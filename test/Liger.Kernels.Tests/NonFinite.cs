using System.Globalization;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// Poisoning inputs with NaN and ±inf, and comparing a result with torch's eager reference for the exact
/// non-finite pattern: the same elements NaN, the same +inf, the same −inf, and the finite ones close.
/// </summary>
public static class NonFinite
{
    /// <summary>Sets <paramref name="count"/> random elements of <paramref name="t"/> (in place) to each of NaN, +inf and −inf.</summary>
    public static void PoisonRandom(Tensor t, Random random, int count = 1)
    {
        foreach (double value in new[] { double.NaN, double.PositiveInfinity, double.NegativeInfinity })
            for (int i = 0; i < count; i++)
                Set(t, random.NextInt64(t.numel()), value);
    }

    /// <summary>Sets one flat element of <paramref name="t"/> to <paramref name="value"/>.</summary>
    public static void Set(Tensor t, long flatIndex, double value)
    {
        using var flat = t.view(-1);
        using var slot = flat.narrow(0, flatIndex, 1);
        using Scalar s = value.ToScalar();
        slot.fill_(s);
    }

    /// <summary>Fills row <paramref name="row"/> of <paramref name="t"/> (its last dimension, counted over the rest) with <paramref name="value"/>.</summary>
    public static void SetRow(Tensor t, long row, double value)
    {
        using var rows = t.view(-1, t.shape[^1]);
        using var r = rows[row];
        using Scalar s = value.ToScalar();
        r.fill_(s);
    }

    /// <summary>
    /// Asserts <paramref name="actual"/> has <paramref name="expected"/>'s shape, NaN exactly where it is NaN,
    /// +inf and −inf exactly where it has them, and finite values within |a − e| ≤ atol + rtol·|e|.
    /// </summary>
    public static void AssertSame(Tensor actual, Tensor expected, string what, string context, double rtol = 1e-4, double atol = 1e-5)
    {
        Assert.IsTrue(actual.shape.SequenceEqual(expected.shape),
            $"{what}: shape [{string.Join(", ", actual.shape)}], expected [{string.Join(", ", expected.shape)}]. {context}");
        using var scope = NewDisposeScope();
        var a = actual.detach().cpu().to(ScalarType.Float64).reshape(-1).data<double>().ToArray();
        var e = expected.detach().cpu().to(ScalarType.Float64).reshape(-1).data<double>().ToArray();
        var wrong = new List<string>();
        for (int i = 0; i < a.Length; i++)
        {
            bool same = double.IsNaN(e[i]) ? double.IsNaN(a[i])
                : double.IsInfinity(e[i]) ? a[i] == e[i]
                : double.IsFinite(a[i]) && Math.Abs(a[i] - e[i]) <= atol + rtol * Math.Abs(e[i]);
            if (!same)
                wrong.Add(string.Create(CultureInfo.InvariantCulture, $"[{i}] {a[i]:G6} vs {e[i]:G6}"));
        }
        Assert.IsEmpty(wrong, $"{what}: {wrong.Count} of {a.Length} elements differ from torch (flat index, ours vs torch's): " +
            $"{string.Join(", ", wrong.Take(12))}. Torch's non-finite elements: {Describe(e)}. {context}");
    }

    /// <summary>Asserts <paramref name="actual"/> is non-finite (NaN or ±inf) exactly where <paramref name="expected"/> is, and the rest close.</summary>
    public static void AssertSameNonFinite(Tensor actual, Tensor expected, string what, string context)
    {
        using var scope = NewDisposeScope();
        var a = actual.detach().cpu().to(ScalarType.Float64);
        var e = expected.detach().cpu().to(ScalarType.Float64);
        // every non-finite element as NaN: then AssertSame compares the set, and the finite values
        AssertSame(a.FilledWhere(a.isfinite().logical_not(), double.NaN), e.FilledWhere(e.isfinite().logical_not(), double.NaN),
            what + " (non-finite elements)", context);
    }

    /// <summary>Asserts two integer tensors are equal element for element.</summary>
    public static void AssertEqual(Tensor actual, Tensor expected, string what, string context)
    {
        var a = actual.detach().cpu().to(ScalarType.Int64).reshape(-1).data<long>().ToArray();
        var e = expected.detach().cpu().to(ScalarType.Int64).reshape(-1).data<long>().ToArray();
        Assert.IsTrue(a.SequenceEqual(e), $"{what}: [{string.Join(", ", a)}], torch gives [{string.Join(", ", e)}]. {context}");
    }

    private static string Describe(double[] values)
    {
        var bad = values.Select((v, i) => (v, i)).Where(p => !double.IsFinite(p.v)).Select(p => $"{p.i}:{p.v}").ToList();
        return bad.Count == 0 ? "none" : string.Join(" ", bad.Take(24)) + (bad.Count > 24 ? $" (+{bad.Count - 24})" : "");
    }

    /// <summary>A float64 leaf copy of <paramref name="t"/> on the CPU that requires grad.</summary>
    public static Tensor Leaf64(Tensor t) => t.detach().cpu().to(ScalarType.Float64).requires_grad_(true);

    /// <summary>randn · <paramref name="scale"/> in float32 on the CPU.</summary>
    public static Tensor Randn(long[] shape, double scale = 1.0) => randn(shape, dtype: ScalarType.Float32).Times(scale);
}
