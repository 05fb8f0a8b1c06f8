using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// A NaN, ±inf or 0 in the gradient that reaches cross-entropy from above (a loss scaler overflowing, a NaN
/// weight on the loss). torch's nll_loss backward writes 0 into an ignored row without reading the incoming
/// gradient, so the ignored rows' gradients stay 0 whatever arrives; every counted row takes the poison.
/// Our gradient is computed in the forward and scaled in the backward, so the scaling must skip ignored rows.
/// An infinite incoming gradient makes torch's log-softmax backward compute inf − inf (the target's column,
/// every column under label smoothing): NaN where ours, scaling p − y, gives ±inf. There the set of non-finite
/// elements must match, not their kind; a NaN or a 0 arriving must match element for element.
/// </summary>
[TestClass]
public sealed class NonFiniteUpstreamGradientTests
{
    private const long Ignore = -100;

    /// <summary>Rows: path, V (13: the scalar kernel; 24: the vectorised one), reduction, the poison.</summary>
    public static IEnumerable<object[]> Cases() =>
        from path in TestPaths.Names
        from vocab in new[] { 13L, 24L }
        from reduction in new[] { CrossEntropyReduction.Mean, CrossEntropyReduction.Sum, CrossEntropyReduction.None }
        from poison in new[] { double.NaN, double.PositiveInfinity, double.NegativeInfinity, 0.0 }
        select new object[] { path, vocab, reduction, poison };

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void CrossEntropy_PoisonedUpstreamGradient_IgnoredRowsStayZero(string path, long vocab, CrossEntropyReduction reduction, double poison)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var random = new Random((int)seed);
        var (logits, target) = Rows(11, vocab, random);
        var gradOutput = Upstream(target, reduction, poison, random);
        var options = new CrossEntropyOptions { Reduction = reduction, LabelSmoothing = 0.1, LseSquareScale = 1e-2 };
        string context = Inputs.Describe(seed, path, vocab, reduction, poison);

        var expected = NonFiniteCrossEntropyTests.Reference(logits, target, options, gradOutput);
        using var p = PathScope.Enter(path);
        var x = p.On(logits).requires_grad_(true);
        var loss = LigerCrossEntropyFunction.Apply(x, p.On(target), options);
        loss.backward([p.On(gradOutput)]);
        p.AssertRan("cross_entropy_backward");
        Compare(x.grad!, expected.Grad, poison, "logits' gradient", context);
    }

    /// <summary>Rows: path, reduction, the poison, bias or not.</summary>
    public static IEnumerable<object[]> FusedCases() =>
        from path in TestPaths.Names
        from reduction in new[] { CrossEntropyReduction.Mean, CrossEntropyReduction.None }
        from poison in new[] { double.NaN, double.PositiveInfinity, 0.0 }
        from bias in new[] { false, true }
        select new object[] { path, reduction, poison, bias };

    /// <summary>
    /// The fused linear cross-entropy: the ignored tokens' hidden-state gradients stay 0, and every gradient
    /// is non-finite where torch's is (for a reduced loss the weight's and bias's gradients are also sums
    /// scaled after summing, where torch scales before: one more place where inf − inf is NaN for torch only).
    /// </summary>
    [TestMethod]
    [DynamicData(nameof(FusedCases))]
    public void FusedLinearCrossEntropy_PoisonedUpstreamGradient_IgnoredRowsStayZero(string path, CrossEntropyReduction reduction, double poison, bool withBias)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var random = new Random((int)seed);
        const long size = 9, vocab = 17;
        var (_, target) = Rows(13, vocab, random);
        var hidden = NonFinite.Randn([target.shape[0], size]);
        var weight = NonFinite.Randn([vocab, size], scale: 0.5);
        var bias = withBias ? NonFinite.Randn([vocab], scale: 0.1) : null;
        var gradOutput = Upstream(target, reduction, poison, random);
        var options = new CrossEntropyOptions { Reduction = reduction };
        string context = Inputs.Describe(seed, path, reduction, poison, withBias);

        var h64 = NonFinite.Leaf64(hidden);
        var w64 = NonFinite.Leaf64(weight);
        var b64 = bias is null ? null : NonFinite.Leaf64(bias);
        var logits64 = b64 is null ? h64.mm(w64.t()) : addmm(b64, h64, w64.t(), beta: 1, alpha: 1);
        NonFiniteCrossEntropyTests.Eager(logits64, target, options).Loss.backward([gradOutput.to(ScalarType.Float64)]);

        using var p = PathScope.Enter(path);
        var h = p.On(hidden).requires_grad_(true);
        var w = p.On(weight).requires_grad_(true);
        var b = bias is null ? null : p.On(bias).requires_grad_(true);
        var loss = LigerFusedLinearCrossEntropyFunction.Apply(h, w, p.On(target), b, new() { CrossEntropy = options });
        loss.backward([p.On(gradOutput)]);

        Compare(h.grad!, h64.grad!, poison, "hidden's gradient", context);
        Compare(w.grad!, w64.grad!, poison, "weight's gradient", context);
        if (b is not null)
            Compare(b.grad!, b64!.grad!, poison, "bias's gradient", context);
    }

    /// <summary>Element for element, or for an infinite poison the set of non-finite elements (see the class summary).</summary>
    private static void Compare(Tensor actual, Tensor expected, double poison, string what, string context)
    {
        if (double.IsInfinity(poison))
            NonFinite.AssertSameNonFinite(actual, expected, what, context);
        else
            NonFinite.AssertSame(actual, expected, what, context);
    }

    /// <summary>Finite logits (R, V) and targets with three ignored rows at random places.</summary>
    private static (Tensor Logits, Tensor Target) Rows(long rows, long vocab, Random random)
    {
        var logits = NonFinite.Randn([rows, vocab], scale: 2);
        var target = randint(0, vocab, [rows], dtype: ScalarType.Int64);
        foreach (long r in Enumerable.Range(0, (int)rows).OrderBy(_ => random.Next()).Take(3))
            target[r] = tensor(Ignore);
        return (logits, target);
    }

    /// <summary>
    /// The incoming gradient: the poison itself for a reduced loss; for reduction None one per token, the
    /// poison on one ignored and one counted token, the rest in [0.5, 1.5).
    /// </summary>
    private static Tensor Upstream(Tensor target, CrossEntropyReduction reduction, double poison, Random random)
    {
        if (reduction != CrossEntropyReduction.None)
            return ScalarArithmetic.Full([], poison, ScalarType.Float32, CPU);
        var upstream = rand(target.shape).Plus(0.5);
        var y = target.data<long>().ToArray();
        var ignored = Enumerable.Range(0, y.Length).Where(i => y[i] == Ignore).ToArray();
        var counted = Enumerable.Range(0, y.Length).Where(i => y[i] != Ignore).ToArray();
        NonFinite.Set(upstream, ignored[random.Next(ignored.Length)], poison);
        NonFinite.Set(upstream, counted[random.Next(counted.Length)], poison);
        return upstream;
    }
}
