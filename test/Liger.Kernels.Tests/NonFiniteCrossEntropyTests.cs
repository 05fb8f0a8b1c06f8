using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// NaN and ±inf through cross-entropy and the fused linear cross-entropy, on every path, against torch's
/// eager cross_entropy in float64 (z-loss as Liger-Kernel's reference: torch.logsumexp, masked with where;
/// soft cap as c·tanh(x/c) before it): loss, z-loss, argmax, accuracy and the gradients must be NaN and
/// ±inf exactly where torch's are.
/// </summary>
[TestClass]
public sealed class NonFiniteCrossEntropyTests
{
    private const long Ignore = -100;

    /// <summary>Option sets by name.</summary>
    private static CrossEntropyOptions Options(string name, long vocab) => name switch
    {
        "mean" => new() { ReturnPredictedTokens = true, ReturnTokenAccuracy = true },
        "sum-smoothing" => new() { Reduction = CrossEntropyReduction.Sum, LabelSmoothing = 0.1 },
        "none-weight" => new() { Reduction = CrossEntropyReduction.None, Weight = rand(vocab).Plus(0.5), ReturnPredictedTokens = true },
        "mean-softcap-z" => new() { Softcap = 3.0, LseSquareScale = 1e-2, ReturnZLoss = true, ReturnPredictedTokens = true },
        "mean-weight-smoothing-z" => new() { Weight = rand(vocab).Plus(0.5), LabelSmoothing = 0.2, LseSquareScale = 1e-3, ReturnZLoss = true },
        "none-smoothing-z" => new() { Reduction = CrossEntropyReduction.None, LabelSmoothing = 0.1, LseSquareScale = 1e-2, ReturnZLoss = true },
        _ => throw new ArgumentException(name),
    };

    private static readonly string[] OptionNames =
        ["mean", "sum-smoothing", "none-weight", "mean-softcap-z", "mean-weight-smoothing-z", "none-smoothing-z"];

    /// <summary>Rows: path, V (13: the scalar kernel; 24: the vectorised one), options, scenario.</summary>
    public static IEnumerable<object[]> Cases() =>
        from path in TestPaths.Names
        from vocab in new[] { 13L, 24L }
        from options in OptionNames
        from scenario in new[] { "every", "benign" }
        select new object[] { path, vocab, options, scenario };

    /// <summary>
    /// "every": one row per kind of poison (NaN off and on the target, +inf off and on it, −inf off and on it,
    /// a row of −inf, a row of NaN, NaN and −inf at the row's max, ignored rows holding NaN and +inf, clean
    /// rows). "benign": only what leaves torch's loss finite (−inf off the target, poisoned ignored rows),
    /// so a reduced loss must stay finite while the ignored rows' gradients still follow torch.
    /// </summary>
    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void CrossEntropy_NonFiniteLogits_MatchTorchPattern(string path, long vocab, string optionName, string scenario)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var random = new Random((int)seed);
        var options = Options(optionName, vocab);
        var (logits, target) = PoisonedRows(vocab, scenario, random);
        var gradOutput = options.Reduction == CrossEntropyReduction.None ? rand(target.shape).Plus(0.5) : rand(Array.Empty<long>()).Plus(0.5);
        string context = Inputs.Describe(seed, path, vocab, optionName, scenario);

        var expected = Reference(logits, target, options, gradOutput);
        using var p = PathScope.Enter(path);
        var x = p.On(logits).requires_grad_(true);
        var kernelOptions = options with { Weight = options.Weight is { } w ? p.On(w) : null };
        var result = LigerCrossEntropyFunction.ApplyWithExtras(x, p.On(target), kernelOptions);
        result.Loss.backward([p.On(gradOutput)]);
        p.AssertRan("cross_entropy_forward");

        NonFinite.AssertSame(result.Loss, expected.Loss, "loss", context);
        NonFinite.AssertSame(x.grad!, expected.Grad, "logits' gradient", context);
        if (options.ReturnZLoss)
            NonFinite.AssertSame(result.ZLoss!, expected.ZLoss, "z-loss", context);
        if (options.ReturnPredictedTokens)
            NonFinite.AssertEqual(result.PredictedTokens!, expected.Predicted, "argmax", context);
        if (options.ReturnTokenAccuracy)
            NonFinite.AssertSame(result.TokenAccuracy!, expected.Accuracy, "token accuracy", context);
    }

    /// <summary>Rows: path, options, scenario (what is poisoned), bias or not.</summary>
    public static IEnumerable<object[]> FusedCases() =>
        from path in TestPaths.Names
        from options in new[] { "mean", "none-smoothing-z", "mean-softcap-z" }
        from scenario in new[] { "hidden", "ignored-only", "weight" }
        from bias in new[] { false, true }
        select new object[] { path, options, scenario, bias };

    /// <summary>
    /// The fused linear cross-entropy inherits the pattern: hidden states (14, 11) poisoned in rows 0 to 2
    /// and in an ignored row, or only in an ignored row (the loss stays finite, the weight's gradient does
    /// not: torch's ignored row backpropagates NaN), or a NaN in the weight (every row's logits NaN).
    /// </summary>
    [TestMethod]
    [DynamicData(nameof(FusedCases))]
    public void FusedLinearCrossEntropy_NonFiniteInputs_MatchTorchPattern(string path, string optionName, string scenario, bool withBias)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var random = new Random((int)seed);
        const long rows = 14, size = 11, vocab = 19;
        var options = Options(optionName, vocab);
        var hidden = NonFinite.Randn([rows, size]);
        var weight = NonFinite.Randn([vocab, size], scale: 0.5);
        var bias = withBias ? NonFinite.Randn([vocab], scale: 0.1) : null;
        var target = randint(0, vocab, [rows], dtype: ScalarType.Int64);
        foreach (long r in new long[] { 9, 10 })
            target[r] = tensor(Ignore);
        if (scenario == "hidden")
        {
            NonFinite.Set(hidden, 0 * size + random.NextInt64(size), double.NaN);
            NonFinite.Set(hidden, 1 * size + random.NextInt64(size), double.PositiveInfinity);
            NonFinite.Set(hidden, 2 * size + random.NextInt64(size), double.NegativeInfinity);
        }
        if (scenario is "hidden" or "ignored-only")
            NonFinite.Set(hidden, 9 * size + random.NextInt64(size), double.NaN);
        if (scenario == "weight")
            NonFinite.Set(weight, random.NextInt64(weight.numel()), double.NaN);
        var gradOutput = options.Reduction == CrossEntropyReduction.None ? rand(rows).Plus(0.5) : rand(Array.Empty<long>()).Plus(0.5);
        string context = Inputs.Describe(seed, path, optionName, scenario, withBias);

        var h64 = NonFinite.Leaf64(hidden);
        var w64 = NonFinite.Leaf64(weight);
        var b64 = bias is null ? null : NonFinite.Leaf64(bias);
        var logits = b64 is null ? h64.mm(w64.t()) : addmm(b64, h64, w64.t(), beta: 1, alpha: 1);
        var expected = Eager(logits, target, options);
        expected.Loss.backward([gradOutput.to(ScalarType.Float64)]);

        using var p = PathScope.Enter(path);
        var h = p.On(hidden).requires_grad_(true);
        var w = p.On(weight).requires_grad_(true);
        var b = bias is null ? null : p.On(bias).requires_grad_(true);
        var ceOptions = options with { Weight = options.Weight is { } cw ? p.On(cw) : null };
        var result = LigerFusedLinearCrossEntropyFunction.ApplyWithExtras(h, w, p.On(target), b, new() { CrossEntropy = ceOptions });
        result.Loss.backward([p.On(gradOutput)]);
        p.AssertRan("cross_entropy_forward");

        NonFinite.AssertSame(result.Loss, expected.Loss, "loss", context);
        NonFinite.AssertSame(h.grad!, h64.grad!, "hidden's gradient", context);
        NonFinite.AssertSame(w.grad!, w64.grad!, "weight's gradient", context);
        if (b is not null)
            NonFinite.AssertSame(b.grad!, b64!.grad!, "bias's gradient", context);
        if (options.ReturnZLoss)
            NonFinite.AssertSame(result.ZLoss!, expected.ZLoss, "z-loss", context);
        if (options.ReturnPredictedTokens)
            NonFinite.AssertEqual(result.PredictedTokens!, expected.Predicted, "argmax", context);
    }

    /// <summary>Rows: path, dtype.</summary>
    public static IEnumerable<object[]> DivergingCases() =>
        from path in TestPaths.Names
        from dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 }
        select new object[] { path, dtype };

    /// <summary>
    /// A diverging run: hidden states growing by 10^6 per step until they overflow. At each step the fused
    /// loss and its gradients are finite exactly when torch's eager loss in the same dtype (its logits
    /// overflow there too) is: a blown-up model never reports a finite loss.
    /// </summary>
    [TestMethod]
    [DynamicData(nameof(DivergingCases))]
    public void FusedLinearCrossEntropy_DivergingHiddenStates_NeverReportFiniteLoss(string path, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        const long rows = 9, size = 13, vocab = 21;
        var hidden = NonFinite.Randn([rows, size]);
        var weight = NonFinite.Randn([vocab, size]).to(dtype);
        var target = randint(0, vocab, [rows], dtype: ScalarType.Int64);
        using var p = PathScope.Enter(path);
        int nonFinite = 0;
        for (int step = 0; step <= 8; step++)
        {
            string context = Inputs.Describe(seed, path, dtype, $"hidden x 1e{6 * step}");
            var h = hidden.Times(Math.Pow(10, 6 * step)).to(dtype);
            var eager = nn.functional.cross_entropy(h.mm(weight.t()).to(ScalarType.Float32), target);
            bool torchFinite = eager.isfinite().item<bool>();
            var leaf = p.On(h).requires_grad_(true);
            var loss = LigerFusedLinearCrossEntropyFunction.Apply(leaf, p.On(weight), p.On(target));
            loss.backward();
            Assert.AreEqual(torchFinite, loss.isfinite().item<bool>(), $"loss {loss.item<float>()}, torch's {eager.item<float>()}. {context}");
            Assert.AreEqual(torchFinite, leaf.grad!.isfinite().all().item<bool>(), $"hidden's gradient finite. {context}");
            nonFinite += torchFinite ? 0 : 1;
        }
        Assert.IsGreaterThan(0, nonFinite, $"the hidden states never overflowed: the test did not test. {Seeds.Describe(seed)}");
    }

    /// <summary>Logits (14, V) in float32 with the scenario's poisons, and targets (rows 9 to 11 ignored).</summary>
    internal static (Tensor Logits, Tensor Target) PoisonedRows(long vocab, string scenario, Random random)
    {
        const long rows = 14;
        var logits = NonFinite.Randn([rows, vocab], scale: 2);
        var target = randint(0, vocab, [rows], dtype: ScalarType.Int64);
        foreach (long r in new long[] { 9, 10, 11 })
            target[r] = tensor(Ignore);
        var y = target.data<long>().ToArray();
        long Other(long r) => (y[r] + 1 + random.NextInt64(vocab - 1)) % vocab;
        long At(long r, long c) => r * vocab + c;
        long ArgMax(long r) => logits[r].argmax().item<long>();
        if (scenario == "every")
        {
            NonFinite.Set(logits, At(0, Other(0)), double.NaN);
            NonFinite.Set(logits, At(1, y[1]), double.NaN);
            NonFinite.Set(logits, At(2, Other(2)), double.PositiveInfinity);
            NonFinite.Set(logits, At(3, y[3]), double.PositiveInfinity);
            NonFinite.Set(logits, At(4, Other(4)), double.NegativeInfinity);
            NonFinite.Set(logits, At(5, y[5]), double.NegativeInfinity);
            NonFinite.SetRow(logits, 6, double.NegativeInfinity);
            NonFinite.SetRow(logits, 7, double.NaN);
            NonFinite.Set(logits, At(8, ArgMax(8)), double.NaN);
            NonFinite.Set(logits, At(13, ArgMax(13)), double.NegativeInfinity);
        }
        else
        {
            NonFinite.Set(logits, At(0, Other(0)), double.NegativeInfinity);
            NonFinite.Set(logits, At(4, Other(4)), double.NegativeInfinity);
            NonFinite.Set(logits, At(13, ArgMax(13)), double.NegativeInfinity);
            NonFinite.SetRow(logits, 11, double.NegativeInfinity);
        }
        NonFinite.Set(logits, At(9, random.NextInt64(vocab)), double.NaN);
        NonFinite.Set(logits, At(10, random.NextInt64(vocab)), double.PositiveInfinity);
        return (logits, target);
    }

    internal sealed record Expected(Tensor Loss, Tensor ZLoss, Tensor Grad, Tensor Predicted, Tensor Accuracy);

    /// <summary>torch's eager result in float64, backpropagated from <paramref name="gradOutput"/>.</summary>
    internal static Expected Reference(Tensor logits, Tensor target, CrossEntropyOptions options, Tensor gradOutput)
    {
        var x = NonFinite.Leaf64(logits);
        var eager = Eager(x, target, options);
        eager.Loss.backward([gradOutput.to(ScalarType.Float64)]);
        return eager with { Loss = eager.Loss.detach(), Grad = x.grad! };
    }

    /// <summary>
    /// torch's eager loss of float64 logits (R, V), a graph node: cross_entropy over the soft-capped logits,
    /// plus Liger-Kernel's z-loss reference, where(target counted, scale·logsumexp², 0), reduced like the loss.
    /// </summary>
    internal static Expected Eager(Tensor x, Tensor target, CrossEntropyOptions options)
    {
        var capped = options.Softcap is { } c ? x.SoftCapped(c) : x;
        var reduction = options.Reduction switch
        {
            CrossEntropyReduction.Mean => nn.Reduction.Mean,
            CrossEntropyReduction.Sum => nn.Reduction.Sum,
            _ => nn.Reduction.None,
        };
        var ce = nn.functional.cross_entropy(capped, target, options.Weight?.cpu().to(ScalarType.Float64), options.IgnoreIndex,
            reduction, options.LabelSmoothing);
        var counted = target.NotEqualTo(options.IgnoreIndex);
        var zRows = where(counted, capped.logsumexp(1).Squared().Times(options.LseSquareScale), zeros(target.shape, dtype: ScalarType.Float64));
        var count = counted.sum().to(ScalarType.Float64);
        var z = options.Reduction switch
        {
            CrossEntropyReduction.Mean => zRows.sum() / count,
            CrossEntropyReduction.Sum => zRows.sum(),
            _ => zRows,
        };
        var loss = options.LseSquareScale > 0 ? ce.Plus(z) : ce;
        var predicted = where(counted, capped.detach().argmax(1), ScalarArithmetic.Full(target.shape, -1, ScalarType.Int64, CPU));
        var correct = predicted.eq(target).to(ScalarType.Float64);
        var accuracy = options.Reduction == CrossEntropyReduction.None ? correct : correct.sum() / count;
        return new Expected(loss, z.detach(), empty(0), predicted, accuracy);
    }
}
