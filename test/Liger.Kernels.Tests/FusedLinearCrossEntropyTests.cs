using Liger.Kernels.Runtime;
using Liger.Kernels.Modules;
using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// LigerFusedLinearCrossEntropyFunction against a float64 reference with materialised logits, on every
/// path, with chunks forced small so that several (and an uneven last one) run.
/// </summary>
[TestClass]
public sealed class FusedLinearCrossEntropyTests
{
    private const string Forward = "cross_entropy_forward";

    /// <summary>The option cases, by name: what requires a gradient and which cross-entropy options.</summary>
    public static readonly string[] CaseNames =
        ["mean+bias", "sum", "none", "everything", "all-ignored", "frozen-hidden", "hidden-only", "eval", "fp32-accumulation"];

    /// <summary>Rows: path, case, dtype.</summary>
    public static IEnumerable<object[]> Cases() =>
        from path in TestPaths.Names
        from name in CaseNames
        from dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 }
        select new object[] { path, name, dtype };

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void MatchesFloat64Reference(string path, string name, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        long[] tokens = [2, 7];
        long size = 24, vocab = name == "everything" ? 37 : 40;   // 37: the scalar kernel, 40: the vectorised one
        var hidden = Inputs.Randn([.. tokens, size], dtype);
        var weight = Inputs.Randn([vocab, size], dtype, scale: 0.5);
        var bias = name is "mean+bias" or "everything" or "fp32-accumulation" ? Inputs.Randn([vocab], dtype) : null;
        var classWeight = rand(vocab).Plus(0.25);
        var (ce, gradOutput) = name switch
        {
            "sum" => (new CrossEntropyOptions { Reduction = CrossEntropyReduction.Sum }, tensor(0.75f)),
            "none" => (new CrossEntropyOptions { Reduction = CrossEntropyReduction.None }, randn(tokens)),
            "everything" => (new CrossEntropyOptions { Weight = classWeight, LabelSmoothing = 0.1, LseSquareScale = 1e-3, Softcap = 2.0 }, tensor(-1.5f)),
            _ => (new CrossEntropyOptions(), ones(Array.Empty<long>())),
        };
        ce = ce with { ReturnZLoss = true, ReturnPredictedTokens = true, ReturnTokenAccuracy = true };
        var target = CrossEntropyTests.RandomTargets(tokens, vocab, ce.IgnoreIndex, name == "all-ignored" ? 1.0 : 0.25);
        var expected = References.FusedLinearCrossEntropy(hidden, weight, bias, target, ce, gradOutput);
        string context = Inputs.Describe(seed, path, name, dtype);

        using var p = PathScope.Enter(path);
        bool wantHidden = name is not ("frozen-hidden" or "eval"), wantWeight = name is not ("hidden-only" or "eval");
        var x = p.On(hidden).requires_grad_(wantHidden);
        var w = p.On(weight).requires_grad_(wantWeight);
        var b = bias is null ? null : p.On(bias).requires_grad_(name != "eval");
        var options = new FusedLinearCrossEntropyOptions
        {
            CrossEntropy = ce with { Weight = ce.Weight is null ? null : p.On(ce.Weight) },
            ChunkBytes = 5 * vocab * hidden.element_size(),   // chunks of 5, 5 and 4 tokens
            AccumulateInFloat32 = name == "fp32-accumulation",
        };
        var result = LigerFusedLinearCrossEntropyFunction.ApplyWithExtras(x, w, p.On(target), b, options);
        if (name != "eval")
            result.Loss.backward([p.On(gradOutput)]);
        p.AssertRan(Forward);

        var lossTolerance = Tolerance.VersusFloat64(ScalarType.Float32) with { Atol = 1e-5 };
        if (dtype != ScalarType.Float32)   // the logits themselves are rounded to bf16 before the loss sees them
            lossTolerance = new Tolerance(1e-2, 1e-2, 1e-2);
        Assert.AreEqual(ScalarType.Float32, result.Loss.dtype, $"loss dtype. {context}");
        TensorAssert.Close(result.Loss, expected.CrossEntropy.Loss, lossTolerance, "loss", context, scale: expected.CrossEntropy.LossTermScale);
        TensorAssert.Close(result.ZLoss!, expected.CrossEntropy.ZLoss, lossTolerance with { Atol = 1e-4 }, "z-loss", context);
        if (dtype == ScalarType.Float32)   // in bf16 a near-tie of two rounded logits may flip the argmax
            CollectionAssert.AreEqual(expected.CrossEntropy.Predicted.reshape(-1).data<long>().ToArray(),
                result.PredictedTokens!.cpu().reshape(-1).data<long>().ToArray(), $"predicted tokens. {context}");
        var correct = expected.CrossEntropy.Predicted.eq(target).to(ScalarType.Float32);
        double counted = target.NotEqualTo(ce.IgnoreIndex).sum().item<long>();
        if (dtype == ScalarType.Float32 && ce.Reduction == CrossEntropyReduction.None)
            TensorAssert.BitwiseEqual(correct, result.TokenAccuracy!.cpu(), "per-token accuracy", context);
        else if (dtype == ScalarType.Float32)
            Assert.AreEqual(counted == 0 ? 0 : correct.sum().item<float>() / counted, result.TokenAccuracy!.cpu().item<float>(), 1e-6, $"accuracy. {context}");

        // fp32: matmuls accumulate in a different order than float64's; bf16: logits, their gradient and
        // every matmul output are rounded to bf16 (the same roundings eager linear + cross_entropy makes).
        var gradTolerance = dtype == ScalarType.Float32
            ? Tolerance.VersusFloat64(ScalarType.Float32) with { NormRel = 1e-5, Atol = 1e-4 }
            : new Tolerance(2e-2, 5e-2, 5e-2);
        CheckGradient(x, wantHidden && name != "eval", expected.GradHidden, gradTolerance, "hidden grad", context);
        CheckGradient(w, wantWeight && name != "eval", expected.GradWeight, gradTolerance, "weight grad", context);
        if (b is not null)
            CheckGradient(b, name != "eval", expected.GradBias, gradTolerance, "bias grad", context);
        if (name == "eval")
            Assert.IsFalse(result.Loss.requires_grad, $"no autograd node without gradients. {context}");
    }

    private static void CheckGradient(Tensor input, bool wanted, Tensor expected, Tolerance tolerance, string what, string context)
    {
        if (!wanted)
        {
            Assert.IsTrue(input.grad is null, $"{what}: none was asked for. {context}");
            return;
        }
        Assert.AreEqual(input.dtype, input.grad!.dtype, $"{what} dtype. {context}");
        TensorAssert.Close(input.grad!, expected, tolerance, what, context);
    }

    /// <summary>The chunking is invisible: one chunk, many, and one token per chunk agree (fp32).</summary>
    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void ChunkSizes_DoNotChangeTheResult(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        bool slow = TestPaths.IsSlow(path);
        long tokens = slow ? 9 : 301, size = slow ? 16 : 64, vocab = slow ? 24 : 1000;
        var hidden = randn(tokens, size);
        var weight = randn(vocab, size).DividedBy(8);
        var target = CrossEntropyTests.RandomTargets([tokens], vocab, -100, 0.1);
        using var p = PathScope.Enter(path);
        var results = new List<(Tensor Loss, Tensor GradHidden, Tensor GradWeight)>();
        foreach (long chunkTokens in new[] { tokens, 4, 1 })
        {
            var x = p.On(hidden).requires_grad_(true);
            var w = p.On(weight).requires_grad_(true);
            var options = new FusedLinearCrossEntropyOptions { ChunkBytes = chunkTokens * vocab * 4 };
            var loss = LigerFusedLinearCrossEntropyFunction.Apply(x, w, p.On(target), options: options);
            loss.backward();
            results.Add((loss, x.grad!, w.grad!));
        }
        string context = Inputs.Describe(seed, path);
        var tolerance = Tolerance.SameRounding(ScalarType.Float32) with { Atol = 1e-5 };
        foreach (var (loss, gradHidden, gradWeight) in results.Skip(1))
        {
            TensorAssert.Close(loss, results[0].Loss, tolerance, "loss", context);
            TensorAssert.Close(gradHidden, results[0].GradHidden, tolerance, "hidden grad", context);
            TensorAssert.Close(gradWeight, results[0].GradWeight, tolerance, "weight grad", context);
        }
    }

    /// <summary>retain_graph: a second backward adds the same gradients again (Mean scales saved gradients; None recomputes).</summary>
    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void SecondBackward_AccumulatesTheSameGradientAgain(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var hidden = randn(6, 16);
        var weight = randn(24, 16).DividedBy(4);
        var bias = randn(24);
        var target = CrossEntropyTests.RandomTargets([6], 24, -100, 0.2);
        foreach (var (reduction, gradOutput) in new[]
                 {
                     (CrossEntropyReduction.Mean, tensor(0.5f)),
                     (CrossEntropyReduction.None, tensor(new[] { 0.5f, 0f, 2f, -1f, 1f, 3f })),
                 })
        {
            var ce = new CrossEntropyOptions { Reduction = reduction };
            var expected = References.FusedLinearCrossEntropy(hidden, weight, bias, target, ce, gradOutput);
            using var p = PathScope.Enter(path);
            var x = p.On(hidden).requires_grad_(true);
            var w = p.On(weight).requires_grad_(true);
            var b = p.On(bias).requires_grad_(true);
            var loss = LigerFusedLinearCrossEntropyFunction.Apply(x, w, p.On(target), b, new FusedLinearCrossEntropyOptions { CrossEntropy = ce });
            loss.backward([p.On(gradOutput)], retain_graph: true);
            loss.backward([p.On(gradOutput)]);
            string context = Inputs.Describe(seed, path, reduction);
            var tolerance = Tolerance.VersusFloat64(ScalarType.Float32) with { NormRel = 1e-5, Atol = 1e-4 };
            TensorAssert.Close(x.grad!, expected.GradHidden.Times(2), tolerance, "hidden grad after two backwards", context);
            TensorAssert.Close(w.grad!, expected.GradWeight.Times(2), tolerance, "weight grad after two backwards", context);
            TensorAssert.Close(b.grad!, expected.GradBias.Times(2), tolerance, "bias grad after two backwards", context);
        }
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void Module_MatchesTheReference_AndLeavesInputsUntouched(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var hidden = randn(2, 5, 16);
        var weight = randn(32, 16).DividedBy(4);
        var target = CrossEntropyTests.RandomTargets([2, 5], 32, -100, 0.2);
        var ce = new CrossEntropyOptions { LabelSmoothing = 0.1 };
        var expected = References.FusedLinearCrossEntropy(hidden, weight, null, target, ce, ones(Array.Empty<long>()));
        using var p = PathScope.Enter(path);
        var x = p.On(hidden).requires_grad_(true);
        var w = p.On(weight).requires_grad_(true);
        var loss = new LigerFusedLinearCrossEntropyLoss(new FusedLinearCrossEntropyOptions { CrossEntropy = ce }).forward(x, w, p.On(target));
        loss.backward();
        string context = Inputs.Describe(seed, path);
        var tolerance = Tolerance.VersusFloat64(ScalarType.Float32) with { NormRel = 1e-5, Atol = 1e-4 };
        TensorAssert.Close(loss, expected.CrossEntropy.Loss, tolerance, "loss", context, scale: expected.CrossEntropy.LossTermScale);
        TensorAssert.Close(x.grad!, expected.GradHidden, tolerance, "hidden grad", context);
        TensorAssert.Close(w.grad!, expected.GradWeight, tolerance, "weight grad", context);
        TensorAssert.BitwiseEqual(x.detach().cpu(), hidden, "hidden states are not modified", context);
        TensorAssert.BitwiseEqual(w.detach().cpu(), weight, "weight is not modified", context);
    }

    [TestMethod]
    public void ChunkPolicy_FillsTheBudget_AndSpreadsTokensEvenly()
    {
        Assert.AreEqual(4096, FusedLinearCrossEntropyOp.ChunkTokens(8192, 128256, 2));   // Llama 3, bf16: two chunks
        Assert.AreEqual(4100, FusedLinearCrossEntropyOp.ChunkTokens(8200, 128256, 2));   // not 4096 + 4096 + 8
        Assert.AreEqual(3, FusedLinearCrossEntropyOp.ChunkTokens(3, 128256, 2));
        Assert.AreEqual(1, FusedLinearCrossEntropyOp.ChunkTokens(5, 1L << 28, 4));        // one row over budget still runs
        Assert.AreEqual(0, FusedLinearCrossEntropyOp.ChunkTokens(0, 100, 4));
        Assert.AreEqual(2, FusedLinearCrossEntropyOp.ChunkTokens(10, 100, 4, chunkBytes: 800));
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void BadInputs_ThrowArgumentExceptionsNamingTheArgument(string path)
    {
        using var scope = NewDisposeScope();
        using var p = PathScope.Enter(path);
        var x = randn(4, 8, device: p.Device);
        var w = randn(10, 8, device: p.Device);
        var y = randint(0, 10, [4], device: p.Device);
        static Tensor Run(Tensor x, Tensor w, Tensor y, Tensor? b = null, FusedLinearCrossEntropyOptions? o = null) =>
            LigerFusedLinearCrossEntropyFunction.Apply(x, w, y, b, o);
        RmsNormTests.ExpectArgument<ArgumentException>("weight", () => Run(x, randn(10, 7, device: p.Device), y), "hidden size 7 for 8");
        RmsNormTests.ExpectArgument<ArgumentException>("weight", () => Run(x, randn(10, 8, 1, device: p.Device), y), "3-d weight");
        RmsNormTests.ExpectArgument<ArgumentException>("weight", () => Run(x, w.to(ScalarType.BFloat16), y), "bf16 weight, fp32 hidden");
        RmsNormTests.ExpectArgument<ArgumentException>("hidden", () => Run(x.to(ScalarType.Int32), w, y), "int hidden states");
        RmsNormTests.ExpectArgument<ArgumentException>("bias", () => Run(x, w, y, randn(9, device: p.Device)), "9 biases for 10 classes");
        RmsNormTests.ExpectArgument<ArgumentException>("target", () => Run(x, w, randint(0, 10, [5], device: p.Device)), "5 targets for 4 tokens");
        RmsNormTests.ExpectArgument<ArgumentException>("target", () => Run(x, w, tensor(new long[] { 0, 10, 1, 2 }, device: p.Device),
            o: new FusedLinearCrossEntropyOptions { CrossEntropy = new CrossEntropyOptions { ValidateTargets = true } }), "a target = V");
        RmsNormTests.ExpectArgument<ArgumentOutOfRangeException>("options.ChunkBytes", () => Run(x, w, y, o: new FusedLinearCrossEntropyOptions { ChunkBytes = 0 }), "chunk of 0 bytes");
        RmsNormTests.ExpectArgument<ArgumentOutOfRangeException>("options.LabelSmoothing",
            () => Run(x, w, y, o: new FusedLinearCrossEntropyOptions { CrossEntropy = new CrossEntropyOptions { LabelSmoothing = -0.1 } }), "negative smoothing");
        if (TestPaths.CudaAvailable && p.Device.type == DeviceType.CPU)
            RmsNormTests.ExpectArgument<ArgumentException>("weight", () => Run(x, w.cuda(), y), "weight on another device");
    }
}
