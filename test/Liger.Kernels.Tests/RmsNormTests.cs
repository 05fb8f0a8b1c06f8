using Liger.Kernels.Runtime;
using Liger.Kernels.Modules;
using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// LigerRMSNormFunction, RmsNormOp and the RMSNorm modules against a float64 eager reference, on every
/// execution path, with outputs poisoned with NaN so unwritten elements fail.
/// </summary>
[TestClass]
public sealed class RmsNormTests
{
    private const string Forward = "rms_norm_forward", Backward = "rms_norm_backward";

    /// <summary>(casting mode, offset, eps) combinations: each mode with its usual offset, plus the others.</summary>
    private static readonly (RmsNormCastingMode Mode, double Offset, double Eps)[] Modes =
    [
        (RmsNormCastingMode.Llama, 0.0, 1e-6),
        (RmsNormCastingMode.Gemma, 1.0, 1e-6),
        (RmsNormCastingMode.None, 0.0, 1e-5),
    ];

    /// <summary>Rows: path, shape, dtype, mode, offset, eps.</summary>
    public static IEnumerable<object[]> ReferenceCases()
    {
        foreach (var path in TestPaths.Names)
        {
            // 13x8 and 9x2048 have rows of whole 8-element chunks (the vectorised kernels, up to 8 x the
            // largest group: 2048 on the emulator); the others take the scalar kernels there.
            string[] shapes = TestPaths.IsSlow(path)
                ? ["1x1", "3x5", "13x8", "7x4097", "2x3x33", "9x2048"]
                : ["1x1", "3x5", "13x8", "7x4097", "2x3x33", "9x2048", "2x128x4096"];
            foreach (var shape in shapes)
                foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
                    foreach (var (mode, offset, eps) in Modes)
                        yield return [path, shape, dtype, mode, offset, eps];

            // float16: every mode on small shapes, and llama on a wide row.
            foreach (var shape in new[] { "3x5", "2x3x33", "13x8" })
                foreach (var (mode, offset, eps) in Modes)
                    yield return [path, shape, ScalarType.Float16, mode, offset, eps];
            yield return [path, "7x4097", ScalarType.Float16, RmsNormCastingMode.Llama, 0.0, 1e-6];

            // the other offsets and eps per mode
            yield return [path, "3x5", ScalarType.Float32, RmsNormCastingMode.Llama, 1.0, 1e-5];
            yield return [path, "3x5", ScalarType.BFloat16, RmsNormCastingMode.Llama, 1.0, 1e-5];
            yield return [path, "2x3x33", ScalarType.Float32, RmsNormCastingMode.Gemma, 0.0, 1e-5];
            yield return [path, "3x5", ScalarType.BFloat16, RmsNormCastingMode.None, 1.0, 1e-6];
        }
    }

    /// <summary>Rows: path, dtype, shape for the in-place tests.</summary>
    public static IEnumerable<object[]> InPlaceCases() =>
        from path in TestPaths.Names
        from dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 }
        from shape in new[] { "3x5", "2x3x33", "4x64" }
        select new object[] { path, dtype, shape };

    /// <summary>Rows: path, dtype.</summary>
    public static IEnumerable<object[]> PathAndDtype() =>
        from path in TestPaths.Names
        from dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 }
        select new object[] { path, dtype };

    /// <summary>Rows: kernel path, shape (one for the scalar kernels, one for the vectorised), dtype, mode.</summary>
    public static IEnumerable<object[]> DeterminismCases() =>
        from path in TestPaths.KernelNames
        from shape in TestPaths.IsSlow(path) ? new[] { "7x4097", "9x2048" } : new[] { "256x4097", "256x4096" }
        from dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 }
        from mode in new[] { RmsNormCastingMode.Llama, RmsNormCastingMode.Gemma }
        select new object[] { path, shape, dtype, mode };

    [TestMethod]
    [DynamicData(nameof(ReferenceCases))]
    public void MatchesFloat64Reference(string path, string shape, ScalarType dtype, RmsNormCastingMode mode,
        double offset, double eps)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var (x, w, dy) = RandomInputs(Inputs.Shape(shape), dtype, offset);
        string context = Inputs.Describe(seed, path, shape, dtype, mode, $"offset {offset}", $"eps {eps}");

        var run = Run(path, x, w, dy, eps, offset, mode, inPlace: false);
        var reference = References.RmsNorm(x, w, dy, eps, offset);
        var tolerance = Tolerance.VersusFloat64(dtype);
        TensorAssert.Close(run.Y, reference.Y, tolerance, "y", context);
        TensorAssert.Close(run.Dx, reference.Dx, tolerance, "dx", context, scale: reference.DxScale);
        TensorAssert.Close(run.Dw, reference.Dw, tolerance, "dW", context, scale: reference.DwScale,
            termMagnitude: reference.DwTerms);
        Assert.AreEqual(dtype, run.Y.dtype, $"y dtype. {context}");
        Assert.AreEqual(dtype, run.Dx.dtype, $"dx dtype. {context}");
        Assert.AreEqual(dtype, run.Dw.dtype, $"dW dtype. {context}");

        if (path != TestPaths.Torch)
        {
            // The kernels implement the torch path's rounding: at the same dtype they agree to the last bit
            // but for ties and fp32 summation order (a flipped tie in one term of dW's sum moves dW by a few
            // ulps of that term: dW's elementwise bound is relative to Σ|terms|).
            var torchRun = Run(TestPaths.Torch, x, w, dy, eps, offset, mode, inPlace: false);
            var same = Tolerance.SameRounding(dtype);
            TensorAssert.Close(run.Y, torchRun.Y, same, "y vs torch path", context);
            TensorAssert.Close(run.Dx, torchRun.Dx, same, "dx vs torch path", context, scale: reference.DxScale);
            TensorAssert.Close(run.Dw, torchRun.Dw, same, "dW vs torch path", context, scale: reference.DwScale,
                termMagnitude: reference.DwTerms);
        }
    }

    [TestMethod]
    [DynamicData(nameof(InPlaceCases))]
    public void InPlaceBackward_WritesCorrectDxIntoUpstreamGradientAndCorrectDw(string path, ScalarType dtype, string shape)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        const double eps = 1e-6;
        var (x, w, dy) = RandomInputs(Inputs.Shape(shape), dtype, offset: 0);
        string context = Inputs.Describe(seed, path, shape, dtype, "inPlaceBackward");
        var reference = References.RmsNorm(x, w, dy, eps, 0);

        using var p = PathScope.Enter(path);
        var xd = p.On(x).requires_grad_(true);
        var wd = p.On(w).requires_grad_(true);
        var upstream = p.On(dy);
        var y = LigerRMSNormFunction.Apply(xd, wd, eps, 0, RmsNormCastingMode.Llama, inPlaceBackward: true);
        y.backward([upstream]);
        p.AssertRan(Forward, Backward);

        var tolerance = Tolerance.VersusFloat64(dtype);
        TensorAssert.Close(xd.grad!, reference.Dx, tolerance, "dx", context, scale: reference.DxScale);
        TensorAssert.BitwiseEqual(xd.grad!, upstream, "upstream gradient buffer (in-place backward writes dx there)", context);
        TensorAssert.Close(wd.grad!, reference.Dw, tolerance, "dW (must be computed from dy before dx overwrites it)", context,
            scale: reference.DwScale, termMagnitude: reference.DwTerms);
    }

    [TestMethod]
    [DynamicData(nameof(InPlaceCases))]
    public void OutOfPlaceBackward_LeavesUpstreamGradientUntouched(string path, ScalarType dtype, string shape)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var (x, w, dy) = RandomInputs(Inputs.Shape(shape), dtype, offset: 0);
        string context = Inputs.Describe(seed, path, shape, dtype);

        using var p = PathScope.Enter(path);
        var xd = p.On(x).requires_grad_(true);
        var wd = p.On(w).requires_grad_(true);
        var upstream = p.On(dy);
        var y = LigerRMSNormFunction.Apply(xd, wd, 1e-6, 0, RmsNormCastingMode.Llama, inPlaceBackward: false);
        y.backward([upstream]);
        p.AssertRan(Forward, Backward);

        TensorAssert.BitwiseEqual(dy, upstream, "upstream gradient", context);
        var reference = References.RmsNorm(x, w, dy, 1e-6, 0);
        TensorAssert.Close(xd.grad!, reference.Dx, Tolerance.VersusFloat64(dtype), "dx", context, scale: reference.DxScale);
    }

    /// <summary>
    /// Rows wider than the kernel's shared-memory dW accumulator: the backward takes its other dW branch.
    /// 1 x 16384 fp32 is 64 KiB of partials, over the 48 KiB a CUDA block gets by default.
    /// </summary>
    [TestMethod]
    [DynamicData(nameof(WideRowCases))]
    public void WideRows_MatchReference(string path, bool inPlace)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        const double eps = 1e-6;
        var (x, w, dy) = RandomInputs([2, 16384], ScalarType.Float32, offset: 0);
        string context = Inputs.Describe(seed, path, "2x16384", $"inPlace {inPlace}");
        var run = Run(path, x, w, dy, eps, 0, RmsNormCastingMode.Llama, inPlace);
        var reference = References.RmsNorm(x, w, dy, eps, 0);
        var tolerance = Tolerance.VersusFloat64(ScalarType.Float32);
        TensorAssert.Close(run.Y, reference.Y, tolerance, "y", context);
        TensorAssert.Close(run.Dx, reference.Dx, tolerance, "dx", context, scale: reference.DxScale);
        TensorAssert.Close(run.Dw, reference.Dw, tolerance, "dW", context, scale: reference.DwScale,
            termMagnitude: reference.DwTerms);
    }

    /// <summary>Rows: path, inPlace.</summary>
    public static IEnumerable<object[]> WideRowCases() =>
        from path in TestPaths.Names
        from inPlace in new[] { false, true }
        select new object[] { path, inPlace };

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void EmptyInput_GivesEmptyOutputAndZeroWeightGradient(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        foreach (var shape in new long[][] { [0, 8], [2, 0, 8] })
        {
            string context = Inputs.Describe(seed, path, string.Join("x", shape));
            using var p = PathScope.Enter(path);
            var x = p.On(Inputs.Randn(shape, ScalarType.Float32)).requires_grad_(true);
            var w = p.On(Inputs.Randn([8], ScalarType.Float32, 0.5, 1.0)).requires_grad_(true);
            var y = LigerRMSNormFunction.Apply(x, w);
            CollectionAssert.AreEqual(shape, y.shape, $"y shape. {context}");
            y.backward([zeros(shape, device: p.Device)]);
            p.AssertRan(Forward, Backward);
            CollectionAssert.AreEqual(shape, x.grad!.shape, $"dx shape. {context}");
            TensorAssert.BitwiseEqual(zeros(8), w.grad!, "dW of an empty batch", context);
        }
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void HostFunctions_ReturnFp32RstdAndMatchTheAutogradFunction(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        const double eps = 1e-5;
        var (x, w, dy) = RandomInputs([6, 33], ScalarType.BFloat16, offset: 0);
        string context = Inputs.Describe(seed, path, "6x33 bf16");

        using var p = PathScope.Enter(path);
        var (y, rstd) = RmsNormOp.Forward(p.On(x), p.On(w), eps, 0, RmsNormCastingMode.Llama);
        var (dx, dw) = RmsNormOp.Backward(p.On(dy), p.On(x), p.On(w), rstd, 0, RmsNormCastingMode.Llama, inPlace: false);
        p.AssertRan(Forward, Backward);

        Assert.AreEqual(ScalarType.Float32, rstd.dtype, $"rstd dtype. {context}");
        var x64 = x.to(ScalarType.Float64);
        var expectedRstd = rsqrt(x64.Squared().mean([-1L]).Plus(eps));
        TensorAssert.Close(rstd, expectedRstd, Tolerance.VersusFloat64(ScalarType.Float32), "rstd", context);

        var run = Run(path, x, w, dy, eps, 0, RmsNormCastingMode.Llama, inPlace: false);
        TensorAssert.BitwiseEqual(run.Y, y, "y (host vs autograd)", context);
        TensorAssert.BitwiseEqual(run.Dx, dx, "dx (host vs autograd)", context);
        TensorAssert.BitwiseEqual(run.Dw, dw, "dW (host vs autograd)", context);
    }

    [TestMethod]
    [DynamicData(nameof(DeterminismCases))]
    public void KernelBackward_IsBitwiseDeterministic(string path, string shape, ScalarType dtype, RmsNormCastingMode mode)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var (x, w, dy) = RandomInputs(Inputs.Shape(shape), dtype, offset: 0);
        string context = Inputs.Describe(seed, path, shape, dtype, mode);

        using var p = PathScope.Enter(path);
        var (xd, wd, dyd) = (p.On(x), p.On(w), p.On(dy));
        var (_, rstd) = RmsNormOp.Forward(xd, wd, 1e-6, 0, mode);
        var (dx1, dw1) = RmsNormOp.Backward(dyd, xd, wd, rstd, 0, mode, inPlace: false);
        var (dx2, dw2) = RmsNormOp.Backward(dyd, xd, wd, rstd, 0, mode, inPlace: false);
        p.AssertRan(Forward, Backward);
        TensorAssert.BitwiseEqual(dx1, dx2, "dx, second run", context);
        TensorAssert.BitwiseEqual(dw1, dw2, "dW, second run", context);
        // and the runs are right, so determinism is not that of a constant
        var reference = References.RmsNorm(x, w, dy, 1e-6, 0);
        TensorAssert.Close(dw1, reference.Dw, Tolerance.VersusFloat64(dtype), "dW", context, scale: reference.DwScale,
            termMagnitude: reference.DwTerms);
    }

    // ---- modules ----

    [TestMethod]
    public void LigerRMSNorm_HasOneParameterNamedWeight_InitialisedToOne()
    {
        using var scope = NewDisposeScope();
        using var norm = new LigerRMSNorm(48, eps: 1e-5, dtype: ScalarType.BFloat16);
        var parameters = norm.named_parameters().ToList();
        CollectionAssert.AreEqual(new[] { "weight" }, parameters.Select(n => n.name).ToArray());
        CollectionAssert.AreEqual(new[] { "weight" }, norm.state_dict().Keys.ToArray());
        var weight = parameters[0].parameter;
        CollectionAssert.AreEqual(new long[] { 48 }, weight.shape);
        Assert.AreEqual(ScalarType.BFloat16, weight.dtype);
        Assert.IsTrue(weight.requires_grad);
        TensorAssert.BitwiseEqual(ones(48, dtype: ScalarType.BFloat16), weight, "initial weight", "");
        Assert.AreEqual(1e-5, norm.Eps);
        Assert.AreEqual(0.0, norm.Offset);
        Assert.AreEqual(RmsNormCastingMode.Llama, norm.CastingMode);
        Assert.IsFalse(norm.InPlaceBackward);
    }

    [TestMethod]
    public void LigerRMSNormForGemma_WeightZeros_OffsetOne_GemmaCasting()
    {
        using var scope = NewDisposeScope();
        using var norm = new LigerRMSNormForGemma(40);
        var parameters = norm.named_parameters().ToList();
        CollectionAssert.AreEqual(new[] { "weight" }, parameters.Select(n => n.name).ToArray());
        TensorAssert.BitwiseEqual(zeros(40), parameters[0].parameter, "initial Gemma weight (stored minus one)", "");
        Assert.AreEqual(1.0, norm.Offset);
        Assert.AreEqual(RmsNormCastingMode.Gemma, norm.CastingMode);
        Assert.IsFalse(norm.InPlaceBackward);

        // with zero weight and offset 1 the module is a plain RMS normalisation
        long seed = Seeds.Fresh();
        var x = Inputs.Randn([3, 40], ScalarType.Float32, 2.0);
        var y = norm.forward(x);
        var expected = References.RmsNorm(x, zeros(40), ones(3, 40), 1e-6, 1.0).Y;
        TensorAssert.Close(y, expected, Tolerance.VersusFloat64(ScalarType.Float32), "y of a fresh Gemma norm", Seeds.Describe(seed));
    }

    [TestMethod]
    [DynamicData(nameof(PathAndDtype))]
    public void Modules_ForwardAndBackward_EqualTheFunction(string path, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        long[] shape = [2, 3, 33];
        foreach (bool gemma in new[] { false, true })
        {
            double offset = gemma ? 1.0 : 0.0;
            var mode = gemma ? RmsNormCastingMode.Gemma : RmsNormCastingMode.None;
            const double eps = 1e-5;
            var (x, w, dy) = RandomInputs(shape, dtype, offset);
            string context = Inputs.Describe(seed, path, dtype, gemma ? "LigerRMSNormForGemma" : "LigerRMSNorm(None)");

            using var p = PathScope.Enter(path);
            using LigerRMSNorm norm = gemma
                ? new LigerRMSNormForGemma(33, eps, dtype, p.Device)
                : new LigerRMSNorm(33, eps, offset, mode, dtype: dtype, device: p.Device);
            using (no_grad())
                norm.weight.copy_(p.On(w));
            var xm = p.On(x).requires_grad_(true);
            var ym = norm.forward(xm);
            ym.backward([p.On(dy)]);
            p.AssertRan(Forward, Backward);

            var run = Run(path, x, w, dy, eps, offset, mode, inPlace: false);
            TensorAssert.BitwiseEqual(run.Y, ym, "module y vs function", context);
            TensorAssert.BitwiseEqual(run.Dx, xm.grad!, "module dx vs function", context);
            TensorAssert.BitwiseEqual(run.Dw, norm.weight.grad!, "module dW vs function", context);

            var reference = References.RmsNorm(x, w, dy, eps, offset);
            TensorAssert.Close(ym, reference.Y, Tolerance.VersusFloat64(dtype), "module y", context);
        }
    }

    // ---- bad inputs ----

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void BadInputs_ThrowArgumentExceptionsNamingTheArgument(string path)
    {
        using var scope = NewDisposeScope();
        using var p = PathScope.Enter(path);
        var device = p.Device;
        var x = randn(4, 8, device: device);
        var w = randn(8, device: device);

        ExpectArgument<ArgumentException>("x", () => LigerRMSNormFunction.Apply(x.to(ScalarType.Int64), w.to(ScalarType.Int64)), "int64 x");
        ExpectArgument<ArgumentException>("x", () => LigerRMSNormFunction.Apply(x.to(ScalarType.Float64), w.to(ScalarType.Float64)), "float64 x");
        ExpectArgument<ArgumentException>("weight", () => LigerRMSNormFunction.Apply(x, randn(7, device: device)), "weight of 7 for 8 features");
        ExpectArgument<ArgumentException>("weight", () => LigerRMSNormFunction.Apply(x, randn(2, 8, device: device)), "2-D weight");
        ExpectArgument<ArgumentException>("weight", () => LigerRMSNormFunction.Apply(x, w.to(ScalarType.BFloat16)), "bf16 weight for fp32 x");
        ExpectArgument<ArgumentException>("x", () => LigerRMSNormFunction.Apply(randn(8, 4, device: device).t(), w), "transposed x");
        ExpectArgument<ArgumentException>("x", () => LigerRMSNormFunction.Apply(tensor(3.0f, device: device), randn(1, device: device)), "0-dim x");
        ExpectArgument<ArgumentOutOfRangeException>("eps", () => LigerRMSNormFunction.Apply(x, w, eps: -1e-6), "negative eps");
        ExpectArgument<ArgumentOutOfRangeException>("eps", () => LigerRMSNormFunction.Apply(x, w, eps: double.NaN), "NaN eps");
        ExpectArgument<ArgumentOutOfRangeException>("eps", () => LigerRMSNormFunction.Apply(x, w, eps: double.PositiveInfinity), "infinite eps");
        ExpectArgument<ArgumentOutOfRangeException>("offset", () => LigerRMSNormFunction.Apply(x, w, offset: double.NaN), "NaN offset");
        ExpectArgument<ArgumentNullException>("x", () => LigerRMSNormFunction.Apply(null!, w), "null x");
        ExpectArgument<ArgumentNullException>("weight", () => LigerRMSNormFunction.Apply(x, null!), "null weight");
        ExpectArgument<ArgumentOutOfRangeException>("hiddenSize", () => new LigerRMSNorm(0), "hidden size 0");
        if (path == TestPaths.Cuda)
            ExpectArgument<ArgumentException>("weight", () => LigerRMSNormFunction.Apply(x, w.cpu()), "weight on the CPU, x on CUDA");
        Assert.IsEmpty(p.Events, "no op may run on rejected arguments");
    }

    /// <summary>Asserts the call throws exactly <typeparamref name="T"/> with ParamName and message naming <paramref name="argument"/>.</summary>
    internal static void ExpectArgument<T>(string argument, Func<object> call, string what) where T : ArgumentException
    {
        var e = Assert.ThrowsExactly<T>(call, what);
        Assert.AreEqual(argument, e.ParamName, $"{what}: ParamName. Message: {e.Message}");
        Assert.Contains($"'{argument}'", e.Message, $"{what}: the message names the argument.");
    }

    // ---- helpers ----

    internal sealed record Result(Tensor Y, Tensor Dx, Tensor Dw);

    /// <summary>x = 2·randn, weight = (1 − offset) + 0.5·randn (random, not ones), dy = randn (not ones).</summary>
    internal static (Tensor X, Tensor W, Tensor Dy) RandomInputs(long[] shape, ScalarType dtype, double offset)
    {
        var x = Inputs.Randn(shape, dtype, scale: 2.0);
        var w = Inputs.Randn([shape[^1]], dtype, scale: 0.5, shift: 1.0 - offset);
        var dy = Inputs.Randn(shape, dtype);
        return (x, w, dy);
    }

    /// <summary>Forward and backward of LigerRMSNormFunction on <paramref name="path"/>; results on the CPU.</summary>
    internal static Result Run(string path, Tensor x, Tensor w, Tensor dy, double eps, double offset,
        RmsNormCastingMode mode, bool inPlace)
    {
        using var p = PathScope.Enter(path);
        var xd = p.On(x).requires_grad_(true);
        var wd = p.On(w).requires_grad_(true);
        var y = LigerRMSNormFunction.Apply(xd, wd, eps, offset, mode, inPlace);
        y.backward([p.On(dy)]);
        p.AssertRan(Forward, Backward);
        return new Result(y.detach().cpu(), xd.grad!.cpu(), wd.grad!.cpu());
    }
}
