using Liger.Kernels.Runtime;
using Liger.Kernels.Modules;
using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>LigerCrossEntropyFunction and LigerCrossEntropyLoss against a float64 reference, on every path.</summary>
[TestClass]
public sealed class CrossEntropyTests
{
    private const string Forward = "cross_entropy_forward", Backward = "cross_entropy_backward";

    /// <summary>Rows: path, shape (tokens x V, or B x T x V), dtype.</summary>
    public static IEnumerable<object[]> ReferenceCases()
    {
        foreach (var path in TestPaths.Names)
        {
            // V a multiple of 8 takes the vectorised kernel (not for float16); the others the scalar one.
            string[] shapes = TestPaths.IsSlow(path)
                ? ["1x1", "3x5", "4x40", "5x203", "2x3x64"]
                : ["1x1", "3x5", "4x40", "5x203", "2x3x64", "33x4096", "9x32003"];
            foreach (var shape in shapes)
                foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16 })
                    yield return [path, shape, dtype];
        }
    }

    /// <summary>The option combinations, by name.</summary>
    public static readonly string[] OptionNames =
        ["smoothing", "weights", "weights+smoothing", "zloss", "softcap", "sum", "none", "everything", "ignore-index-5", "all-ignored", "scaled-grad"];

    /// <summary>Rows: path, option case, dtype, V.</summary>
    public static IEnumerable<object[]> OptionCases() =>
        from path in TestPaths.Names
        from name in OptionNames
        from dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 }
        from vocab in new[] { 64, 37 }
        select new object[] { path, name, dtype, vocab };

    [TestMethod]
    [DynamicData(nameof(ReferenceCases))]
    public void MatchesFloat64Reference(string path, string shape, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var dims = Inputs.Shape(shape);
        var logits = Inputs.Randn(dims, dtype, scale: 3.0);
        var target = RandomTargets(dims[..^1], dims[^1], ignoreIndex: -100, ignoredFraction: 0.2);
        var options = new CrossEntropyOptions { ReturnZLoss = true, ReturnPredictedTokens = true, ReturnTokenAccuracy = true };
        CheckAgainstReference(path, logits, target, options, ones(Array.Empty<long>()), Inputs.Describe(seed, path, shape, dtype));
    }

    [TestMethod]
    [DynamicData(nameof(OptionCases))]
    public void OptionsMatchFloat64Reference(string path, string name, ScalarType dtype, int vocab)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        long[] tokens = [3, 7];
        var (options, gradOutput) = Options(name, tokens, vocab);
        double logitScale = name is "softcap" or "everything" ? 40.0 : 3.0; // past the cap, so tanh bends them
        var logits = Inputs.Randn([.. tokens, vocab], dtype, scale: logitScale);
        var target = RandomTargets(tokens, vocab, options.IgnoreIndex, ignoredFraction: name == "all-ignored" ? 1.0 : 0.25);
        if (name == "ignore-index-5")
            target[0, 0] = tensor(5L); // the ignore index is also a valid class: it must still be skipped
        CheckAgainstReference(path, logits, target, options with { ReturnZLoss = true, ReturnPredictedTokens = true, ReturnTokenAccuracy = true },
            gradOutput, Inputs.Describe(seed, path, name, dtype, vocab));
    }

    /// <summary>The float64 reference itself against torch's own cross_entropy, where torch has the option.</summary>
    [TestMethod]
    [DataRow("plain"), DataRow("smoothing"), DataRow("weights"), DataRow("weights+smoothing"), DataRow("sum"), DataRow("none")]
    public void Reference_AgreesWithTorchCrossEntropy(string name)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        long[] tokens = [11];
        var (options, gradOutput) = name == "plain" ? (new CrossEntropyOptions(), ones(Array.Empty<long>())) : Options(name, tokens, 23);
        var logits = randn(11, 23, dtype: ScalarType.Float64).Times(3);
        var target = RandomTargets(tokens, 23, options.IgnoreIndex, 0.25);
        var reference = References.CrossEntropy(logits, target, options, gradOutput);
        var leaf = logits.clone().requires_grad_(true);
        var reduction = options.Reduction switch
        {
            CrossEntropyReduction.Mean => nn.Reduction.Mean,
            CrossEntropyReduction.Sum => nn.Reduction.Sum,
            _ => nn.Reduction.None,
        };
        var torchLoss = nn.functional.cross_entropy(leaf, target, options.Weight?.to(ScalarType.Float64), options.IgnoreIndex,
            reduction, options.LabelSmoothing);
        torchLoss.backward([gradOutput.to(ScalarType.Float64)]);
        string context = Inputs.Describe(seed, name);
        TensorAssert.Close(reference.Loss, torchLoss, new Tolerance(1e-12, 1e-12, 1e-12), "loss", context);
        TensorAssert.Close(reference.Grad, leaf.grad!, new Tolerance(1e-12, 1e-12, 1e-12), "grad", context);
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void OutOfPlaceGradient_LeavesLogitsUntouched_InPlaceWritesTheGradientOverThem(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var logits = Inputs.Randn([6, 40], ScalarType.BFloat16, scale: 2);
        var target = RandomTargets([6], 40, -100, 0.2);
        string context = Inputs.Describe(seed, path);
        var reference = References.CrossEntropy(logits, target, new CrossEntropyOptions(), ones(Array.Empty<long>()));
        using var p = PathScope.Enter(path);

        var kept = p.On(logits).requires_grad_(true);
        LigerCrossEntropyFunction.Apply(kept, p.On(target), new CrossEntropyOptions { InPlaceGradient = false }).backward();
        TensorAssert.BitwiseEqual(logits, kept, "logits after an out-of-place loss", context);
        TensorAssert.Close(kept.grad!, reference.Grad, Tolerance.VersusFloat64(ScalarType.BFloat16), "grad (out of place)", context);

        var overwritten = p.On(logits).requires_grad_(true);
        LigerCrossEntropyFunction.Apply(overwritten, p.On(target)).backward();
        TensorAssert.Close(overwritten.grad!, reference.Grad, Tolerance.VersusFloat64(ScalarType.BFloat16), "grad (in place)", context);
        TensorAssert.BitwiseEqual(overwritten.grad!, overwritten, "logits after an in-place loss (hold the gradient)", context);
        p.AssertRan(Forward, Backward);
    }

    /// <summary>Through lm_head: gradients of the hidden states and the weight, via the logits' in-place gradient.</summary>
    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void BehindALinearLayer_GradientsOfHiddenAndWeightMatchReference(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var hidden = randn(10, 16, dtype: ScalarType.Float64);
        var weight = randn(48, 16, dtype: ScalarType.Float64).DividedBy(4);
        var target = RandomTargets([10], 48, -100, 0.2);
        string context = Inputs.Describe(seed, path);

        var h64 = hidden.clone().requires_grad_(true);
        var w64 = weight.clone().requires_grad_(true);
        var expected = nn.functional.cross_entropy(h64.mm(w64.t()), target);
        expected.backward();

        using var p = PathScope.Enter(path);
        var h = p.On(hidden.to(ScalarType.Float32)).requires_grad_(true);
        var w = p.On(weight.to(ScalarType.Float32)).requires_grad_(true);
        var loss = LigerCrossEntropyFunction.Apply(h.mm(w.t()), p.On(target));
        loss.backward();
        p.AssertRan(Forward, Backward);
        var tolerance = Tolerance.VersusFloat64(ScalarType.Float32);
        TensorAssert.Close(loss, expected, tolerance, "loss", context);
        TensorAssert.Close(h.grad!, h64.grad!, tolerance with { NormRel = 1e-5, Atol = 1e-4 }, "hidden grad", context);
        TensorAssert.Close(w.grad!, w64.grad!, tolerance with { NormRel = 1e-5, Atol = 1e-4 }, "weight grad", context);
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void WithoutGradients_LogitsStayUntouched(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var logits = Inputs.Randn([5, 24], ScalarType.Float32, scale: 2);
        var target = RandomTargets([5], 24, -100, 0.2);
        string context = Inputs.Describe(seed, path);
        var reference = References.CrossEntropy(logits, target, new CrossEntropyOptions(), ones(Array.Empty<long>()));
        using var p = PathScope.Enter(path);
        var x = p.On(logits);
        var loss = LigerCrossEntropyFunction.Apply(x, p.On(target));
        TensorAssert.BitwiseEqual(logits, x, "logits that need no gradient", context);
        TensorAssert.Close(loss, reference.Loss, Tolerance.VersusFloat64(ScalarType.Float32), "loss", context, scale: reference.LossTermScale);

        var leaf = p.On(logits).requires_grad_(true);
        using (no_grad())
            LigerCrossEntropyFunction.Apply(leaf, p.On(target));
        TensorAssert.BitwiseEqual(logits, leaf, "logits under no_grad", context);
        p.AssertRan(Forward);
    }

    /// <summary>
    /// A second backward through the same graph (retain_graph) must not scale the stored gradient twice:
    /// two backwards of 0.5·loss accumulate exactly twice the gradient of one.
    /// </summary>
    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void SecondBackward_AccumulatesTheSameGradientAgain(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var logits = Inputs.Randn([4, 16], ScalarType.Float32, scale: 2);
        var target = RandomTargets([4], 16, -100, 0.0);
        // Mean with a scalar incoming gradient; None with per-row ones, a zero among them (0 / 0 must not leak NaN).
        foreach (var (reduction, gradOutput) in new[]
                 {
                     (CrossEntropyReduction.Mean, tensor(0.5f)),
                     (CrossEntropyReduction.None, tensor(new[] { 0.5f, 0f, 2f, -1f })),
                 })
        {
            var options = new CrossEntropyOptions { Reduction = reduction };
            var reference = References.CrossEntropy(logits, target, options, gradOutput);
            using var p = PathScope.Enter(path);
            var x = p.On(logits).requires_grad_(true);
            var loss = LigerCrossEntropyFunction.Apply(x.Times(1f), p.On(target), options); // an intermediate, as lm_head's output is
            loss.backward([p.On(gradOutput)], retain_graph: true);
            loss.backward([p.On(gradOutput)]);
            TensorAssert.Close(x.grad!, reference.Grad.Times(2), Tolerance.VersusFloat64(ScalarType.Float32),
                $"grad after two backwards ({reduction})", Inputs.Describe(seed, path));
        }
    }

    [TestMethod]
    public void ArgmaxTies_PickTheFirstIndex_AsTorch()
    {
        using var scope = NewDisposeScope();
        foreach (var path in TestPaths.Names)
        {
            using var p = PathScope.Enter(path);
            var logits = zeros(3, 40);
            logits[0, 7] = tensor(2f); logits[0, 30] = tensor(2f);    // tie across chunks and threads
            logits[1, 1] = tensor(5f); logits[1, 2] = tensor(5f);     // tie inside one chunk
            logits[2, 39] = tensor(1f);
            var result = LigerCrossEntropyFunction.ApplyWithExtras(p.On(logits), p.On(tensor(new long[] { 7, 2, 39 })),
                new CrossEntropyOptions { ReturnPredictedTokens = true, ReturnTokenAccuracy = true });
            CollectionAssert.AreEqual(new long[] { 7, 1, 39 }, result.PredictedTokens!.cpu().data<long>().ToArray(), $"argmax [{path}]");
            Assert.AreEqual(2.0 / 3, result.TokenAccuracy!.cpu().item<float>(), 1e-6, $"accuracy [{path}]");
        }
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void Module_MatchesTheFunction(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var logits = Inputs.Randn([2, 5, 24], ScalarType.Float32);
        var target = RandomTargets([2, 5], 24, -100, 0.2);
        var options = new CrossEntropyOptions { LabelSmoothing = 0.1, InPlaceGradient = false };
        var reference = References.CrossEntropy(logits, target, options, ones(Array.Empty<long>()));
        using var p = PathScope.Enter(path);
        var x = p.On(logits).requires_grad_(true);
        var loss = new LigerCrossEntropyLoss(options).forward(x, p.On(target));
        loss.backward();
        string context = Inputs.Describe(seed, path);
        TensorAssert.Close(loss, reference.Loss, Tolerance.VersusFloat64(ScalarType.Float32), "loss", context, scale: reference.LossTermScale);
        TensorAssert.Close(x.grad!, reference.Grad, Tolerance.VersusFloat64(ScalarType.Float32), "grad", context, scale: reference.GradTermScale);
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void BadInputs_ThrowArgumentExceptionsNamingTheArgument(string path)
    {
        using var scope = NewDisposeScope();
        using var p = PathScope.Enter(path);
        var logits = randn(4, 10, device: p.Device);
        var target = randint(0, 10, [4], device: p.Device);
        // Target values are checked on CPU tensors always, on CUDA only when asked (the check synchronises).
        var validated = new CrossEntropyOptions { ValidateTargets = true };
        RmsNormTests.ExpectArgument<ArgumentException>("target", () => LigerCrossEntropyFunction.Apply(logits, target.to(ScalarType.Int32)), "int32 targets");
        RmsNormTests.ExpectArgument<ArgumentException>("target", () => LigerCrossEntropyFunction.Apply(logits, randint(0, 10, [5], device: p.Device)), "5 targets for 4 rows");
        RmsNormTests.ExpectArgument<ArgumentException>("target", () => LigerCrossEntropyFunction.Apply(logits, tensor(new long[] { 0, 1, 10, 2 }, device: p.Device), validated), "a target = V");
        RmsNormTests.ExpectArgument<ArgumentException>("target", () => LigerCrossEntropyFunction.Apply(logits, tensor(new long[] { 0, -1, 3, 2 }, device: p.Device), validated), "a negative target");
        RmsNormTests.ExpectArgument<ArgumentException>("logits", () => LigerCrossEntropyFunction.Apply(logits.t(), randint(0, 4, [10], device: p.Device)), "transposed logits");
        RmsNormTests.ExpectArgument<ArgumentException>("logits", () => LigerCrossEntropyFunction.Apply(logits.to(ScalarType.Float64), target), "float64 logits");
        RmsNormTests.ExpectArgument<ArgumentException>("options.Weight", () => LigerCrossEntropyFunction.Apply(logits, target, new CrossEntropyOptions { Weight = ones(9, device: p.Device) }), "9 weights for 10 classes");
        RmsNormTests.ExpectArgument<ArgumentOutOfRangeException>("options.LabelSmoothing", () => LigerCrossEntropyFunction.Apply(logits, target, new CrossEntropyOptions { LabelSmoothing = 1.5 }), "smoothing 1.5");
        RmsNormTests.ExpectArgument<ArgumentOutOfRangeException>("options.Softcap", () => LigerCrossEntropyFunction.Apply(logits, target, new CrossEntropyOptions { Softcap = 0 }), "softcap 0");
        RmsNormTests.ExpectArgument<ArgumentOutOfRangeException>("options.LseSquareScale", () => LigerCrossEntropyFunction.Apply(logits, target, new CrossEntropyOptions { LseSquareScale = double.NaN }), "NaN z-loss scale");
        if (TestPaths.CudaAvailable && p.Device.type == DeviceType.CPU)
            RmsNormTests.ExpectArgument<ArgumentException>("target", () => LigerCrossEntropyFunction.Apply(logits, target.cuda()), "targets on another device");
    }

    /// <summary>Without ValidateTargets a CUDA launch cannot throw; a bad target must still never read out of bounds.</summary>
    [TestMethod]
    public void OnCuda_UnvalidatedBadTarget_MakesItsRowNaN_OthersExact()
    {
        if (!TestPaths.CudaAvailable)
            return; // the CPU paths always validate (see BadInputs)
        using var scope = NewDisposeScope();
        var logits = randn(3, 40, device: CUDA).requires_grad_(true);
        var result = LigerCrossEntropyFunction.ApplyWithExtras(logits, tensor(new long[] { 1, 1000, 2 }, device: CUDA),
            new CrossEntropyOptions { Reduction = CrossEntropyReduction.None });
        var loss = result.Loss.cpu();
        Assert.IsTrue(float.IsNaN(loss[1].item<float>()), "the bad row's loss is NaN");
        Assert.IsTrue(float.IsFinite(loss[0].item<float>()) && float.IsFinite(loss[2].item<float>()), "other rows are finite");
    }

    // ---- helpers ----

    private static void CheckAgainstReference(string path, Tensor logits, Tensor target, CrossEntropyOptions options,
        Tensor gradOutput, string context)
    {
        var reference = References.CrossEntropy(logits, target, options, gradOutput);
        using var p = PathScope.Enter(path);
        var x = p.On(logits).requires_grad_(true);
        var onPath = options with { Weight = options.Weight is null ? null : p.On(options.Weight) };
        var result = LigerCrossEntropyFunction.ApplyWithExtras(x, p.On(target), onPath);
        result.Loss.backward([p.On(gradOutput)]);
        p.AssertRan(Forward, Backward);

        Assert.AreEqual(ScalarType.Float32, result.Loss.dtype, $"loss dtype. {context}");
        var lossTolerance = Tolerance.VersusFloat64(ScalarType.Float32) with { Atol = 1e-5 };
        TensorAssert.Close(result.Loss, reference.Loss, lossTolerance, "loss", context, scale: reference.LossTermScale);
        TensorAssert.Close(result.ZLoss!, reference.ZLoss, lossTolerance, "z-loss", context);
        Assert.AreEqual(logits.dtype, x.grad!.dtype, $"grad dtype. {context}");
        TensorAssert.Close(x.grad!, reference.Grad, Tolerance.VersusFloat64(logits.dtype), "grad", context, scale: reference.GradTermScale);
        // argmax of the stored values: exact, except where two rounded logits tie (checked separately)
        CollectionAssert.AreEqual(reference.Predicted.reshape(-1).data<long>().ToArray(),
            result.PredictedTokens!.cpu().reshape(-1).data<long>().ToArray(), $"predicted tokens. {context}");
    }

    private static (CrossEntropyOptions Options, Tensor GradOutput) Options(string name, long[] tokens, int vocab)
    {
        var weight = rand(vocab).Plus(0.25);
        var scalarOne = ones(Array.Empty<long>());
        return name switch
        {
            "smoothing" => (new CrossEntropyOptions { LabelSmoothing = 0.1 }, scalarOne),
            "weights" => (new CrossEntropyOptions { Weight = weight }, scalarOne),
            "weights+smoothing" => (new CrossEntropyOptions { Weight = weight, LabelSmoothing = 0.2 }, scalarOne),
            "zloss" => (new CrossEntropyOptions { LseSquareScale = 1e-2 }, scalarOne),
            "softcap" => (new CrossEntropyOptions { Softcap = 30.0 }, scalarOne),
            "sum" => (new CrossEntropyOptions { Reduction = CrossEntropyReduction.Sum }, scalarOne),
            "none" => (new CrossEntropyOptions { Reduction = CrossEntropyReduction.None }, randn(tokens)),
            "everything" => (new CrossEntropyOptions { Weight = weight, LabelSmoothing = 0.1, LseSquareScale = 1e-3, Softcap = 30.0 }, tensor(0.37f)),
            "ignore-index-5" => (new CrossEntropyOptions { IgnoreIndex = 5 }, scalarOne),
            "all-ignored" => (new CrossEntropyOptions(), scalarOne),
            "scaled-grad" => (new CrossEntropyOptions { LseSquareScale = 1e-3 }, tensor(-2.5f)),
            _ => throw new ArgumentOutOfRangeException(nameof(name), name, "unknown option case"),
        };
    }

    /// <summary>Uniform targets in [0, V), a fraction of them replaced by the ignore index.</summary>
    internal static Tensor RandomTargets(long[] shape, long vocab, long ignoreIndex, double ignoredFraction)
    {
        var target = randint(0, vocab, shape, dtype: ScalarType.Int64);
        var ignored = rand(shape).LessThan(ignoredFraction);
        return where(ignored, ScalarArithmetic.FullLike(target, ignoreIndex), target);
    }
}
