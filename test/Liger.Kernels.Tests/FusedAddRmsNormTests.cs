using Liger.Kernels.Runtime;
using Liger.Kernels.Modules;
using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// LigerFusedAddRMSNormFunction, FusedAddRmsNormOp and LigerFusedAddRMSNorm against a float64 reference
/// and against the eager graph they replace (residual + x, then RMSNorm), on every execution path, with
/// outputs poisoned with NaN so unwritten elements fail.
/// </summary>
[TestClass]
public sealed class FusedAddRmsNormTests
{
    private const string Forward = "fused_add_rms_norm_forward", Backward = "fused_add_rms_norm_backward";

    /// <summary>(casting mode, offset, eps): each mode with its usual offset.</summary>
    private static readonly (RmsNormCastingMode Mode, double Offset, double Eps)[] Modes =
    [
        (RmsNormCastingMode.Llama, 0.0, 1e-6),
        (RmsNormCastingMode.Gemma, 1.0, 1e-6),
        (RmsNormCastingMode.None, 0.0, 1e-5),
    ];

    /// <summary>Rows: path, shape, dtype, mode, offset, eps, whether the returned residual gets a gradient.</summary>
    public static IEnumerable<object[]> ReferenceCases()
    {
        foreach (var path in TestPaths.Names)
        {
            string[] shapes = TestPaths.IsSlow(path)
                ? ["1x1", "4x3", "2x3x37", "13x8", "5x4097", "9x2048"]
                : ["1x1", "4x3", "2x3x37", "13x8", "7x4097", "9x2048", "2x128x4096", "3x8192"];
            foreach (var shape in shapes)
                foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
                    foreach (var (mode, offset, eps) in Modes)
                        foreach (bool residualGrad in new[] { true, false })
                            yield return [path, shape, dtype, mode, offset, eps, residualGrad];

            foreach (var shape in new[] { "4x3", "2x3x37", "13x8" })
                foreach (var (mode, offset, eps) in Modes)
                    yield return [path, shape, ScalarType.Float16, mode, offset, eps, true];
            yield return [path, "5x4097", ScalarType.Float16, RmsNormCastingMode.Llama, 0.0, 1e-6, false];
            yield return [path, "3x64", ScalarType.BFloat16, RmsNormCastingMode.Llama, 1.0, 1e-5, true];
            yield return [path, "3x64", ScalarType.Float32, RmsNormCastingMode.Gemma, 0.0, 1e-5, true];
        }
    }

    /// <summary>Rows: path, shape, dtype, whether the returned residual gets a gradient.</summary>
    public static IEnumerable<object[]> EagerCases()
    {
        foreach (var path in TestPaths.Names)
        {
            string[] shapes = TestPaths.IsSlow(path) ? ["4x3", "2x3x37", "9x64"] : ["4x3", "2x3x37", "7x4097", "64x4096"];
            foreach (var shape in shapes)
                foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16 })
                    foreach (bool residualGrad in new[] { true, false })
                        yield return [path, shape, dtype, residualGrad];
        }
    }

    /// <summary>Rows: path, dtype.</summary>
    public static IEnumerable<object[]> PathAndDtype() =>
        from path in TestPaths.Names
        from dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 }
        select new object[] { path, dtype };

    /// <summary>Rows: kernel path, shape (scalar kernels, vectorised kernels), dtype, whether h gets a gradient.</summary>
    public static IEnumerable<object[]> DeterminismCases() =>
        from path in TestPaths.KernelNames
        from shape in TestPaths.IsSlow(path) ? new[] { "7x4097", "9x2048" } : new[] { "256x4097", "256x4096" }
        from dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 }
        from residualGrad in new[] { true, false }
        select new object[] { path, shape, dtype, residualGrad };

    [TestMethod]
    [DynamicData(nameof(ReferenceCases))]
    public void MatchesFloat64Reference(string path, string shape, ScalarType dtype, RmsNormCastingMode mode, double offset,
        double eps, bool residualGrad)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var inputs = RandomInputs(Inputs.Shape(shape), dtype, offset, residualGrad);
        string context = Inputs.Describe(seed, path, shape, dtype, mode, $"offset {offset}", $"eps {eps}",
            residualGrad ? "h gets a gradient" : "only y gets a gradient");

        var run = Run(path, inputs, eps, offset, mode);
        var reference = References.FusedAddRmsNorm(inputs.X, inputs.Residual, inputs.W, inputs.Dy, inputs.Dh, eps, offset);
        AssertClose(run, reference, reference, Tolerance.VersusFloat64(dtype), context, inputs.Dh);
        foreach (var (name, t) in new[] { ("y", run.Y), ("h", run.H), ("dx", run.Dx), ("dresidual", run.Dresidual), ("dW", run.Dw!) })
            Assert.AreEqual(dtype, t.dtype, $"{name} dtype. {context}");

        if (path != TestPaths.Torch)
        {
            // The kernels round where the torch path (the eager graph) rounds: at the same dtype they agree
            // but for ties and fp32 summation order.
            var torchRun = Run(TestPaths.Torch, inputs, eps, offset, mode);
            AssertClose(run, torchRun.AsReference(), reference, Tolerance.SameRounding(dtype), context + " (vs torch path)", inputs.Dh);
            TensorAssert.BitwiseEqual(torchRun.H, run.H, "h vs torch path (one rounding of an fp32 sum)", context);
        }
    }

    /// <summary>
    /// The eager graph this op replaces, op for op at the same dtype: h = residual + x, Hugging Face's
    /// LlamaRMSNorm on h, autograd summing h's two gradients. h must be bitwise eager's.
    /// </summary>
    [TestMethod]
    [DynamicData(nameof(EagerCases))]
    public void MatchesEagerAddThenLlamaRmsNorm(string path, string shape, ScalarType dtype, bool residualGrad)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        const double eps = 1e-6;
        var inputs = RandomInputs(Inputs.Shape(shape), dtype, 0.0, residualGrad);
        string context = Inputs.Describe(seed, path, shape, dtype, residualGrad ? "h gets a gradient" : "only y gets a gradient");
        var run = Run(path, inputs, eps, 0.0, RmsNormCastingMode.Llama);

        using var p = PathScope.Enter(path);
        var xe = p.On(inputs.X).requires_grad_(true);
        var re = p.On(inputs.Residual).requires_grad_(true);
        var we = p.On(inputs.W).requires_grad_(true);
        var he = re.Plus(xe);
        var hf = he.to(ScalarType.Float32);
        var ye = we * (hf * rsqrt(hf.Squared().mean([-1L], keepdim: true).Plus(eps))).to(dtype);
        if (inputs.Dh is null)
            ye.backward([p.On(inputs.Dy)]);
        else
            autograd.backward([ye, he], [p.On(inputs.Dy), p.On(inputs.Dh)]);
        Assert.IsEmpty(p.Events, "eager must not run Liger ops");
        var eager = new Result(ye.detach().cpu(), he.detach().cpu(), xe.grad!.cpu(), re.grad!.cpu(), we.grad!.cpu());

        var reference = References.FusedAddRmsNorm(inputs.X, inputs.Residual, inputs.W, inputs.Dy, inputs.Dh, eps, 0.0);
        TensorAssert.BitwiseEqual(eager.H, run.H, "h vs eager residual + x", context);
        AssertClose(run, eager.AsReference(), reference, Tolerance.SameRounding(dtype), context + " (vs eager)", inputs.Dh);
    }

    /// <summary>Only the returned residual takes part in the loss: its gradient passes through to x and residual, the weight gets none.</summary>
    [TestMethod]
    [DynamicData(nameof(PathAndDtype))]
    public void OnlyResidualOutputUsed_PassesItsGradientToBothInputs(string path, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var inputs = RandomInputs([3, 40], dtype, 0.0, residualGrad: true);
        string context = Inputs.Describe(seed, path, dtype);
        using var p = PathScope.Enter(path);
        var (xd, rd, wd) = (p.On(inputs.X).requires_grad_(true), p.On(inputs.Residual).requires_grad_(true), p.On(inputs.W).requires_grad_(true));
        var (_, h) = LigerFusedAddRMSNormFunction.Apply(xd, rd, wd);
        h.backward([p.On(inputs.Dh!)]);
        p.AssertRan(Forward);
        Assert.IsFalse(p.Events.Any(e => e.Op == Backward), $"no kernel is needed when y has no gradient. {context}");
        TensorAssert.BitwiseEqual(inputs.Dh!, xd.grad!, "dx", context);
        TensorAssert.BitwiseEqual(inputs.Dh!, rd.grad!, "dresidual", context);
        Assert.IsTrue(wd.grad is null || wd.grad.IsInvalid, $"dW must stay undefined. {context}");
        using (no_grad())
            xd.grad!.PlusInPlace(1.0);
        TensorAssert.BitwiseEqual(inputs.Dh!, rd.grad!, "dresidual after an in-place change of dx", context);
    }

    /// <summary>x and residual receive one gradient tensor from the node; their .grad must still be independent tensors.</summary>
    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void InputGradients_AreIndependentTensors(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var inputs = RandomInputs([4, 16], ScalarType.Float32, 0.0, residualGrad: true);
        string context = Inputs.Describe(seed, path);
        using var p = PathScope.Enter(path);
        var (xd, rd, wd) = (p.On(inputs.X).requires_grad_(true), p.On(inputs.Residual).requires_grad_(true), p.On(inputs.W).requires_grad_(true));
        var (y, h) = LigerFusedAddRMSNormFunction.Apply(xd, rd, wd);
        autograd.backward([y, h], [p.On(inputs.Dy), p.On(inputs.Dh!)]);
        p.AssertRan(Forward, Backward);
        var before = rd.grad!.cpu().clone();
        TensorAssert.BitwiseEqual(before, xd.grad!, "dx equals dresidual", context);
        using (no_grad())
            xd.grad!.PlusInPlace(1.0);
        TensorAssert.BitwiseEqual(before, rd.grad!, "dresidual after an in-place change of dx", context);
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void InputsAndUpstreamGradients_AreLeftUntouched(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var inputs = RandomInputs([5, 64], ScalarType.BFloat16, 0.0, residualGrad: true);
        string context = Inputs.Describe(seed, path, "5x64 bf16");
        using var p = PathScope.Enter(path);
        var (xd, rd, wd) = (p.On(inputs.X).requires_grad_(true), p.On(inputs.Residual).requires_grad_(true), p.On(inputs.W).requires_grad_(true));
        var (dyd, dhd) = (p.On(inputs.Dy), p.On(inputs.Dh!));
        var (y, h) = LigerFusedAddRMSNormFunction.Apply(xd, rd, wd);
        autograd.backward([y, h], [dyd, dhd]);
        p.AssertRan(Forward, Backward);
        TensorAssert.BitwiseEqual(inputs.X, xd, "x", context);
        TensorAssert.BitwiseEqual(inputs.Residual, rd, "residual", context);
        TensorAssert.BitwiseEqual(inputs.W, wd, "weight", context);
        TensorAssert.BitwiseEqual(inputs.Dy, dyd, "gradient of y", context);
        TensorAssert.BitwiseEqual(inputs.Dh!, dhd, "gradient of h", context);
    }

    /// <summary>
    /// Rows whose scalar-kernel dW partials do not fit a CUDA group's 48 KiB of shared memory (16385 fp32
    /// columns): dW then comes from torch ops. (The emulator's shared memory is unbounded.)
    /// </summary>
    [TestMethod]
    [DynamicData(nameof(WideRowCases))]
    public void WideRows_MatchReference(string path, bool residualGrad)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var inputs = RandomInputs([2, 16385], ScalarType.Float32, 0.0, residualGrad);
        string context = Inputs.Describe(seed, path, "2x16385", residualGrad ? "h gets a gradient" : "only y gets a gradient");
        var run = Run(path, inputs, 1e-6, 0.0, RmsNormCastingMode.Llama);
        var reference = References.FusedAddRmsNorm(inputs.X, inputs.Residual, inputs.W, inputs.Dy, inputs.Dh, 1e-6, 0.0);
        AssertClose(run, reference, reference, Tolerance.VersusFloat64(ScalarType.Float32), context, inputs.Dh);
    }

    /// <summary>Rows: path, whether h gets a gradient.</summary>
    public static IEnumerable<object[]> WideRowCases() =>
        from path in TestPaths.Names
        from residualGrad in new[] { true, false }
        select new object[] { path, residualGrad };

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void EmptyInput_GivesEmptyOutputsAndZeroWeightGradient(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        foreach (var shape in new long[][] { [0, 8], [2, 0, 8] })
        {
            string context = Inputs.Describe(seed, path, string.Join("x", shape));
            using var p = PathScope.Enter(path);
            var x = p.On(Inputs.Randn(shape, ScalarType.Float32)).requires_grad_(true);
            var r = p.On(Inputs.Randn(shape, ScalarType.Float32)).requires_grad_(true);
            var w = p.On(Inputs.Randn([8], ScalarType.Float32, 0.5, 1.0)).requires_grad_(true);
            var (y, h) = LigerFusedAddRMSNormFunction.Apply(x, r, w);
            CollectionAssert.AreEqual(shape, y.shape, $"y shape. {context}");
            CollectionAssert.AreEqual(shape, h.shape, $"h shape. {context}");
            autograd.backward([y, h], [zeros(shape, device: p.Device), zeros(shape, device: p.Device)]);
            p.AssertRan(Forward, Backward);
            CollectionAssert.AreEqual(shape, x.grad!.shape, $"dx shape. {context}");
            CollectionAssert.AreEqual(shape, r.grad!.shape, $"dresidual shape. {context}");
            TensorAssert.BitwiseEqual(zeros(8), w.grad!, "dW of an empty batch", context);
        }
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void HostFunctions_ReturnEagerSumAndFp32RstdAndMatchTheAutogradFunction(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        const double eps = 1e-5;
        var inputs = RandomInputs([6, 33], ScalarType.BFloat16, 0.0, residualGrad: true);
        string context = Inputs.Describe(seed, path, "6x33 bf16");

        using var p = PathScope.Enter(path);
        var (y, h, rstd) = FusedAddRmsNormOp.Forward(p.On(inputs.X), p.On(inputs.Residual), p.On(inputs.W), eps, 0, RmsNormCastingMode.Llama);
        var (dh, dw) = FusedAddRmsNormOp.Backward(p.On(inputs.Dy), p.On(inputs.Dh!), h, p.On(inputs.W), rstd, 0, RmsNormCastingMode.Llama);
        p.AssertRan(Forward, Backward);

        TensorAssert.BitwiseEqual(inputs.Residual.Plus(inputs.X), h, "h vs eager residual + x", context);
        Assert.AreEqual(ScalarType.Float32, rstd.dtype, $"rstd dtype. {context}");
        var h64 = h.cpu().to(ScalarType.Float64);
        TensorAssert.Close(rstd, rsqrt(h64.Squared().mean([-1L]).Plus(eps)), Tolerance.VersusFloat64(ScalarType.Float32), "rstd of the rounded h", context);

        var run = Run(path, inputs, eps, 0, RmsNormCastingMode.Llama);
        TensorAssert.BitwiseEqual(run.Y, y, "y (host vs autograd)", context);
        TensorAssert.BitwiseEqual(run.Dx, dh, "dx (host vs autograd)", context);
        TensorAssert.BitwiseEqual(run.Dw!, dw, "dW (host vs autograd)", context);
    }

    [TestMethod]
    [DynamicData(nameof(DeterminismCases))]
    public void KernelBackward_IsBitwiseDeterministic(string path, string shape, ScalarType dtype, bool residualGrad)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var inputs = RandomInputs(Inputs.Shape(shape), dtype, 0.0, residualGrad);
        string context = Inputs.Describe(seed, path, shape, dtype, residualGrad ? "h gets a gradient" : "only y");

        using var p = PathScope.Enter(path);
        var wd = p.On(inputs.W);
        var dhd = inputs.Dh is null ? null : p.On(inputs.Dh);
        var (_, h, rstd) = FusedAddRmsNormOp.Forward(p.On(inputs.X), p.On(inputs.Residual), wd, 1e-6, 0, RmsNormCastingMode.Llama);
        var dyd = p.On(inputs.Dy);
        var (dh1, dw1) = FusedAddRmsNormOp.Backward(dyd, dhd, h, wd, rstd, 0, RmsNormCastingMode.Llama);
        var (dh2, dw2) = FusedAddRmsNormOp.Backward(dyd, dhd, h, wd, rstd, 0, RmsNormCastingMode.Llama);
        p.AssertRan(Forward, Backward);
        TensorAssert.BitwiseEqual(dh1, dh2, "dh, second run", context);
        TensorAssert.BitwiseEqual(dw1, dw2, "dW, second run", context);
        var reference = References.FusedAddRmsNorm(inputs.X, inputs.Residual, inputs.W, inputs.Dy, inputs.Dh, 1e-6, 0);
        TensorAssert.Close(dw1, reference.Dw, Tolerance.VersusFloat64(dtype), "dW", context, scale: reference.DwScale,
            termMagnitude: reference.DwTerms);
    }

    // ---- module ----

    [TestMethod]
    public void LigerFusedAddRMSNorm_HasOneParameterNamedWeight()
    {
        using var scope = NewDisposeScope();
        using var norm = new LigerFusedAddRMSNorm(48, eps: 1e-5, dtype: ScalarType.BFloat16);
        CollectionAssert.AreEqual(new[] { "weight" }, norm.named_parameters().Select(n => n.name).ToArray());
        CollectionAssert.AreEqual(new[] { "weight" }, norm.state_dict().Keys.ToArray());
        TensorAssert.BitwiseEqual(ones(48, dtype: ScalarType.BFloat16), norm.weight, "initial weight", "");
        Assert.IsTrue(norm.weight.requires_grad);
        Assert.AreEqual(1e-5, norm.Eps);
        Assert.AreEqual(0.0, norm.Offset);
        Assert.AreEqual(RmsNormCastingMode.Llama, norm.CastingMode);

        // an RMSNorm's state dict (same parameter name) loads into it
        using var rmsNorm = new LigerRMSNorm(48, dtype: ScalarType.BFloat16);
        using (no_grad())
            rmsNorm.weight.copy_(randn(48).to(ScalarType.BFloat16));
        norm.load_state_dict(rmsNorm.state_dict());
        TensorAssert.BitwiseEqual(rmsNorm.weight, norm.weight, "weight loaded from an RMSNorm state dict", "");
    }

    [TestMethod]
    [DynamicData(nameof(PathAndDtype))]
    public void Module_ForwardAndBackward_EqualTheFunction(string path, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        foreach (bool gemma in new[] { false, true })
        {
            double offset = gemma ? 1.0 : 0.0;
            var mode = gemma ? RmsNormCastingMode.Gemma : RmsNormCastingMode.Llama;
            var inputs = RandomInputs([2, 3, 40], dtype, offset, residualGrad: true);
            string context = Inputs.Describe(seed, path, dtype, mode);
            using var p = PathScope.Enter(path);
            using var norm = new LigerFusedAddRMSNorm(40, 1e-5, offset, mode, initValue: 1.0 - offset, dtype: dtype, device: p.Device);
            using (no_grad())
                norm.weight.copy_(p.On(inputs.W));
            var (xm, rm) = (p.On(inputs.X).requires_grad_(true), p.On(inputs.Residual).requires_grad_(true));
            var (ym, hm) = norm.forward(xm, rm);
            autograd.backward([ym, hm], [p.On(inputs.Dy), p.On(inputs.Dh!)]);
            p.AssertRan(Forward, Backward);

            var run = Run(path, inputs, 1e-5, offset, mode);
            TensorAssert.BitwiseEqual(run.Y, ym, "module y vs function", context);
            TensorAssert.BitwiseEqual(run.H, hm, "module h vs function", context);
            TensorAssert.BitwiseEqual(run.Dx, xm.grad!, "module dx vs function", context);
            TensorAssert.BitwiseEqual(run.Dresidual, rm.grad!, "module dresidual vs function", context);
            TensorAssert.BitwiseEqual(run.Dw!, norm.weight.grad!, "module dW vs function", context);
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
        var r = randn(4, 8, device: device);
        var w = randn(8, device: device);

        Expect<ArgumentException>("x", () => LigerFusedAddRMSNormFunction.Apply(x.to(ScalarType.Int64), r.to(ScalarType.Int64), w.to(ScalarType.Int64)), "int64 x");
        Expect<ArgumentException>("x", () => LigerFusedAddRMSNormFunction.Apply(x.to(ScalarType.Float64), r.to(ScalarType.Float64), w.to(ScalarType.Float64)), "float64 x");
        Expect<ArgumentException>("x", () => LigerFusedAddRMSNormFunction.Apply(randn(8, 4, device: device).t(), r, w), "transposed x");
        Expect<ArgumentException>("x", () => LigerFusedAddRMSNormFunction.Apply(tensor(3.0f, device: device), tensor(1.0f, device: device), randn(1, device: device)), "0-dim x");
        Expect<ArgumentException>("residual", () => LigerFusedAddRMSNormFunction.Apply(x, randn(4, 9, device: device), w), "residual of another shape");
        Expect<ArgumentException>("residual", () => LigerFusedAddRMSNormFunction.Apply(x, randn(8, device: device), w), "residual that would broadcast");
        Expect<ArgumentException>("residual", () => LigerFusedAddRMSNormFunction.Apply(x, r.to(ScalarType.BFloat16), w), "bf16 residual for fp32 x");
        Expect<ArgumentException>("residual", () => LigerFusedAddRMSNormFunction.Apply(x, randn(8, 4, device: device).t(), w), "transposed residual");
        Expect<ArgumentException>("weight", () => LigerFusedAddRMSNormFunction.Apply(x, r, randn(7, device: device)), "weight of 7 for 8 features");
        Expect<ArgumentException>("weight", () => LigerFusedAddRMSNormFunction.Apply(x, r, w.to(ScalarType.BFloat16)), "bf16 weight for fp32 x");
        Expect<ArgumentOutOfRangeException>("eps", () => LigerFusedAddRMSNormFunction.Apply(x, r, w, eps: -1e-6), "negative eps");
        Expect<ArgumentOutOfRangeException>("eps", () => LigerFusedAddRMSNormFunction.Apply(x, r, w, eps: double.NaN), "NaN eps");
        Expect<ArgumentOutOfRangeException>("offset", () => LigerFusedAddRMSNormFunction.Apply(x, r, w, offset: double.PositiveInfinity), "infinite offset");
        Expect<ArgumentOutOfRangeException>("castingMode", () => LigerFusedAddRMSNormFunction.Apply(x, r, w, castingMode: (RmsNormCastingMode)7), "undefined casting mode");
        Expect<ArgumentNullException>("x", () => LigerFusedAddRMSNormFunction.Apply(null!, r, w), "null x");
        Expect<ArgumentNullException>("residual", () => LigerFusedAddRMSNormFunction.Apply(x, null!, w), "null residual");
        Expect<ArgumentNullException>("weight", () => LigerFusedAddRMSNormFunction.Apply(x, r, null!), "null weight");
        Expect<ArgumentOutOfRangeException>("hiddenSize", () => new LigerFusedAddRMSNorm(0), "hidden size 0");
        if (path == TestPaths.Cuda)
        {
            Expect<ArgumentException>("residual", () => LigerFusedAddRMSNormFunction.Apply(x, r.cpu(), w), "residual on the CPU, x on CUDA");
            Expect<ArgumentException>("weight", () => LigerFusedAddRMSNormFunction.Apply(x, r, w.cpu()), "weight on the CPU, x on CUDA");
        }
        Assert.IsEmpty(p.Events, "no op may run on rejected arguments");
    }

    private static void Expect<T>(string argument, Func<object> call, string what) where T : ArgumentException =>
        RmsNormTests.ExpectArgument<T>(argument, call, what);

    // ---- helpers ----

    private sealed record Case(Tensor X, Tensor Residual, Tensor W, Tensor Dy, Tensor? Dh);

    private sealed record Result(Tensor Y, Tensor H, Tensor Dx, Tensor Dresidual, Tensor? Dw)
    {
        internal FusedAddRmsNormReference AsReference() => new(Y, H, Dx, Dresidual, Dw!, null!, null!, null!);
    }

    /// <summary>x = randn, residual = 2·randn, weight = (1 − offset) + 0.5·randn, dy = randn, dh = randn (or none).</summary>
    private static Case RandomInputs(long[] shape, ScalarType dtype, double offset, bool residualGrad)
    {
        var x = Inputs.Randn(shape, dtype);
        var residual = Inputs.Randn(shape, dtype, scale: 2.0);
        var w = Inputs.Randn([shape[^1]], dtype, scale: 0.5, shift: 1.0 - offset);
        var dy = Inputs.Randn(shape, dtype);
        var dh = residualGrad ? Inputs.Randn(shape, dtype) : null;
        return new Case(x, residual, w, dy, dh);
    }

    /// <summary>Forward and backward of LigerFusedAddRMSNormFunction on <paramref name="path"/>; results on the CPU.</summary>
    private static Result Run(string path, Case inputs, double eps, double offset, RmsNormCastingMode mode)
    {
        using var p = PathScope.Enter(path);
        var xd = p.On(inputs.X).requires_grad_(true);
        var rd = p.On(inputs.Residual).requires_grad_(true);
        var wd = p.On(inputs.W).requires_grad_(true);
        var (y, h) = LigerFusedAddRMSNormFunction.Apply(xd, rd, wd, eps, offset, mode);
        if (inputs.Dh is null)
            y.backward([p.On(inputs.Dy)]);
        else
            autograd.backward([y, h], [p.On(inputs.Dy), p.On(inputs.Dh)]);
        p.AssertRan(Forward, Backward);
        return new Result(y.detach().cpu(), h.detach().cpu(), xd.grad!.cpu(), rd.grad!.cpu(), wd.grad!.cpu());
    }

    /// <summary>Every result against <paramref name="expected"/>, with the scales of the float64 reference.</summary>
    /// <remarks>With a gradient of h, dx is the sum of RMSNorm's dh (rounded to the dtype first, as
    /// autograd sums in the stored dtype) and dh itself: where the two cancel, a flipped rounding of the
    /// first term is an error the size of the terms, so the elementwise bound is relative to |term₁| + |term₂|.</remarks>
    private static void AssertClose(Result run, FusedAddRmsNormReference expected, FusedAddRmsNormReference scales,
        Tolerance tolerance, string context, Tensor? dh)
    {
        using var terms = dh is null ? null : (scales.Dx - dh.to(ScalarType.Float64)).abs().Plus(dh.to(ScalarType.Float64).abs());
        TensorAssert.Close(run.Y, expected.Y, tolerance, "y", context);
        TensorAssert.Close(run.H, expected.H, tolerance, "h", context);
        TensorAssert.Close(run.Dx, expected.Dx, tolerance, "dx", context, scale: scales.DxScale, termMagnitude: terms);
        TensorAssert.Close(run.Dresidual, expected.Dresidual, tolerance, "dresidual", context, scale: scales.DxScale, termMagnitude: terms);
        TensorAssert.Close(run.Dw!, expected.Dw, tolerance, "dW", context, scale: scales.DwScale, termMagnitude: scales.DwTerms);
    }
}
