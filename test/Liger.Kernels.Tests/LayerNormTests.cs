using Liger.Kernels.Runtime;
using Liger.Kernels.Modules;
using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// LigerLayerNormFunction, LayerNormOp and LigerLayerNorm against a float64 reference and torch's own
/// layer_norm, on every execution path, with outputs poisoned with NaN so unwritten elements fail.
/// </summary>
[TestClass]
public sealed class LayerNormTests
{
    private const string Forward = "layer_norm_forward", Backward = "layer_norm_backward";

    /// <summary>Rows: path, shape, dtype, with bias, eps.</summary>
    public static IEnumerable<object[]> ReferenceCases()
    {
        foreach (var path in TestPaths.Names)
        {
            // Rows of whole 8-element chunks up to 8 x the largest group (2048 on the emulator, 8192 on a
            // GPU) take the vectorised kernels; the others the scalar ones.
            string[] shapes = TestPaths.IsSlow(path)
                ? ["1x1", "4x3", "2x3x37", "13x8", "5x4097", "9x2048"]
                : ["1x1", "4x3", "2x3x37", "13x8", "7x4097", "9x2048", "2x128x4096", "3x8192"];
            foreach (var shape in shapes)
                foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
                    foreach (bool bias in new[] { true, false })
                        yield return [path, shape, dtype, bias, 1e-5];

            foreach (var shape in new[] { "4x3", "2x3x37", "13x8" })
                yield return [path, shape, ScalarType.Float16, true, 1e-5];
            yield return [path, "5x4097", ScalarType.Float16, false, 1e-5];
            yield return [path, "3x64", ScalarType.Float32, true, 1e-2];
            yield return [path, "3x64", ScalarType.BFloat16, true, 0.0];
        }
    }

    /// <summary>Rows: path, shape, dtype.</summary>
    public static IEnumerable<object[]> TorchCases()
    {
        foreach (var path in TestPaths.Names)
        {
            string[] shapes = TestPaths.IsSlow(path) ? ["4x3", "2x3x37", "9x64"] : ["4x3", "2x3x37", "7x4097", "64x4096"];
            foreach (var shape in shapes)
            {
                yield return [path, shape, ScalarType.Float32];
                // torch's CPU layer_norm keeps bf16 inputs' mean and rstd in bf16 for its backward, so
                // only CUDA's (fp32 statistics, as ours) is the same rounding at bf16.
                if (path == TestPaths.Cuda)
                    yield return [path, shape, ScalarType.BFloat16];
            }
        }
    }

    /// <summary>Rows: path, dtype.</summary>
    public static IEnumerable<object[]> PathAndDtype() =>
        from path in TestPaths.Names
        from dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 }
        select new object[] { path, dtype };

    /// <summary>Rows: kernel path, shape (scalar kernels, vectorised kernels), dtype, with bias.</summary>
    public static IEnumerable<object[]> DeterminismCases() =>
        from path in TestPaths.KernelNames
        from shape in TestPaths.IsSlow(path) ? new[] { "7x4097", "9x2048" } : new[] { "256x4097", "256x4096" }
        from dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 }
        from bias in new[] { true, false }
        select new object[] { path, shape, dtype, bias };

    [TestMethod]
    [DynamicData(nameof(ReferenceCases))]
    public void MatchesFloat64Reference(string path, string shape, ScalarType dtype, bool withBias, double eps)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var (x, w, b, dy) = RandomInputs(Inputs.Shape(shape), dtype, withBias);
        string context = Inputs.Describe(seed, path, shape, dtype, withBias ? "bias" : "no bias", $"eps {eps}");

        var run = Run(path, x, w, b, dy, eps);
        var reference = References.LayerNorm(x, w, b, dy, eps);
        var tolerance = Tolerance.VersusFloat64(dtype);
        AssertClose(run, reference, tolerance, context);
        Assert.AreEqual(dtype, run.Y.dtype, $"y dtype. {context}");
        Assert.AreEqual(dtype, run.Dx.dtype, $"dx dtype. {context}");
        Assert.AreEqual(dtype, run.Dw.dtype, $"dW dtype. {context}");
        Assert.AreEqual(withBias, run.Db is not null, $"dB exists exactly when there is a bias. {context}");

        if (path != TestPaths.Torch)
        {
            // The kernels and the CPU path compute the same fp32 math and round once: at the same dtype
            // they differ only where fp32 summation order flips a rounding.
            var torchRun = Run(TestPaths.Torch, x, w, b, dy, eps);
            AssertClose(run, torchRun, reference, Tolerance.SameRounding(dtype), context + " (vs torch path)");
        }
    }

    /// <summary>The same results as torch's nn.functional.layer_norm forward and backward, at the same dtype.</summary>
    [TestMethod]
    [DynamicData(nameof(TorchCases))]
    public void MatchesTorchLayerNorm(string path, string shape, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        const double eps = 1e-5;
        var (x, w, b, dy) = RandomInputs(Inputs.Shape(shape), dtype, withBias: true);
        string context = Inputs.Describe(seed, path, shape, dtype);
        var run = Run(path, x, w, b, dy, eps);

        using var p = PathScope.Enter(path);
        var xe = p.On(x).requires_grad_(true);
        var we = p.On(w).requires_grad_(true);
        var be = p.On(b!).requires_grad_(true);
        var ye = nn.functional.layer_norm(xe, [x.shape[^1]], we, be, eps);
        ye.backward([p.On(dy)]);
        var eager = new Result(ye.detach().cpu(), xe.grad!.cpu(), we.grad!.cpu(), be.grad!.cpu());
        Assert.IsEmpty(p.Events.Where(e => e.Op.StartsWith("layer_norm")), "eager must not run Liger ops");

        AssertClose(run, eager, References.LayerNorm(x, w, b, dy, eps), Tolerance.SameRounding(dtype), context + " (vs torch layer_norm)");
    }

    /// <summary>
    /// Rows with a mean far from zero against their spread: the variance must be taken around the mean.
    /// (E[x²] − mean² in fp32 loses about mean²/var · 6e-8 of the variance: 6e-4 here, over the tolerance.)
    /// </summary>
    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void LargeMean_KeepsFp32Precision(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        foreach (var shape in TestPaths.IsSlow(path) ? new[] { "4x37", "4x256" } : new[] { "4x37", "4x256", "16x4096" })
        {
            var (_, w, b, dy) = RandomInputs(Inputs.Shape(shape), ScalarType.Float32, withBias: true);
            var x = Inputs.Randn(Inputs.Shape(shape), ScalarType.Float32, scale: 1.0, shift: 100.0);
            string context = Inputs.Describe(seed, path, shape, "mean 100, std 1");
            var run = Run(path, x, w, b, dy, 1e-5);
            AssertClose(run, References.LayerNorm(x, w, b, dy, 1e-5), Tolerance.VersusFloat64(ScalarType.Float32), context);
        }
    }

    /// <summary>
    /// Rows whose scalar-kernel dW and dB partials do not fit a CUDA group's 48 KiB of shared memory: dW
    /// (and dB) then come from torch ops. 8191 fp32 columns fit one partial row but not two (with bias);
    /// 16385 fit neither. (The emulator's shared memory is unbounded: there the kernel accumulates.)
    /// </summary>
    [TestMethod]
    [DynamicData(nameof(WideRowCases))]
    public void WideRows_MatchReference(string path, string shape, bool withBias)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var (x, w, b, dy) = RandomInputs(Inputs.Shape(shape), ScalarType.Float32, withBias);
        string context = Inputs.Describe(seed, path, shape, withBias ? "bias" : "no bias");
        var run = Run(path, x, w, b, dy, 1e-5);
        AssertClose(run, References.LayerNorm(x, w, b, dy, 1e-5), Tolerance.VersusFloat64(ScalarType.Float32), context);
    }

    /// <summary>Rows: path, shape, with bias.</summary>
    public static IEnumerable<object[]> WideRowCases() =>
        from path in TestPaths.Names
        from shape in new[] { "2x8191", "2x16385" }
        from bias in new[] { true, false }
        select new object[] { path, shape, bias };

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void EmptyInput_GivesEmptyOutputAndZeroParameterGradients(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        foreach (var shape in new long[][] { [0, 8], [2, 0, 8] })
        {
            string context = Inputs.Describe(seed, path, string.Join("x", shape));
            using var p = PathScope.Enter(path);
            var x = p.On(Inputs.Randn(shape, ScalarType.Float32)).requires_grad_(true);
            var w = p.On(Inputs.Randn([8], ScalarType.Float32, 0.5, 1.0)).requires_grad_(true);
            var b = p.On(Inputs.Randn([8], ScalarType.Float32)).requires_grad_(true);
            var y = LigerLayerNormFunction.Apply(x, w, b);
            CollectionAssert.AreEqual(shape, y.shape, $"y shape. {context}");
            y.backward([zeros(shape, device: p.Device)]);
            p.AssertRan(Forward, Backward);
            CollectionAssert.AreEqual(shape, x.grad!.shape, $"dx shape. {context}");
            TensorAssert.BitwiseEqual(zeros(8), w.grad!, "dW of an empty batch", context);
            TensorAssert.BitwiseEqual(zeros(8), b.grad!, "dB of an empty batch", context);
        }
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void HostFunctions_ReturnFp32StatisticsAndMatchTheAutogradFunction(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        const double eps = 1e-5;
        var (x, w, b, dy) = RandomInputs([6, 33], ScalarType.BFloat16, withBias: true);
        string context = Inputs.Describe(seed, path, "6x33 bf16");

        using var p = PathScope.Enter(path);
        var (y, mean, rstd) = LayerNormOp.Forward(p.On(x), p.On(w), p.On(b!), eps);
        var (dx, dw, db) = LayerNormOp.Backward(p.On(dy), p.On(x), p.On(w), mean, rstd, hasBias: true);
        p.AssertRan(Forward, Backward);

        Assert.AreEqual(ScalarType.Float32, mean.dtype, $"mean dtype. {context}");
        Assert.AreEqual(ScalarType.Float32, rstd.dtype, $"rstd dtype. {context}");
        var x64 = x.to(ScalarType.Float64);
        var tolerance = Tolerance.VersusFloat64(ScalarType.Float32);
        TensorAssert.Close(mean, x64.mean([-1L]), tolerance, "mean", context);
        TensorAssert.Close(rstd, rsqrt(x64.var([-1L], unbiased: false).Plus(eps)), tolerance, "rstd", context);

        var run = Run(path, x, w, b, dy, eps);
        TensorAssert.BitwiseEqual(run.Y, y, "y (host vs autograd)", context);
        TensorAssert.BitwiseEqual(run.Dx, dx, "dx (host vs autograd)", context);
        TensorAssert.BitwiseEqual(run.Dw, dw, "dW (host vs autograd)", context);
        TensorAssert.BitwiseEqual(run.Db!, db!, "dB (host vs autograd)", context);
    }

    [TestMethod]
    [DynamicData(nameof(DeterminismCases))]
    public void KernelBackward_IsBitwiseDeterministic(string path, string shape, ScalarType dtype, bool withBias)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var (x, w, b, dy) = RandomInputs(Inputs.Shape(shape), dtype, withBias);
        string context = Inputs.Describe(seed, path, shape, dtype, withBias ? "bias" : "no bias");

        using var p = PathScope.Enter(path);
        var (xd, wd, dyd) = (p.On(x), p.On(w), p.On(dy));
        var (_, mean, rstd) = LayerNormOp.Forward(xd, wd, b is null ? null : p.On(b), 1e-5);
        var (dx1, dw1, db1) = LayerNormOp.Backward(dyd, xd, wd, mean, rstd, withBias);
        var (dx2, dw2, db2) = LayerNormOp.Backward(dyd, xd, wd, mean, rstd, withBias);
        p.AssertRan(Forward, Backward);
        TensorAssert.BitwiseEqual(dx1, dx2, "dx, second run", context);
        TensorAssert.BitwiseEqual(dw1, dw2, "dW, second run", context);
        if (withBias)
            TensorAssert.BitwiseEqual(db1!, db2!, "dB, second run", context);
        // and the runs are right, so determinism is not that of a constant
        var reference = References.LayerNorm(x, w, b, dy, 1e-5);
        var tolerance = Tolerance.VersusFloat64(dtype);
        TensorAssert.Close(dw1, reference.Dw, tolerance, "dW", context, scale: reference.DwScale, termMagnitude: reference.DwTerms);
        if (withBias)
            TensorAssert.Close(db1!, reference.Db, tolerance, "dB", context, scale: reference.DbScale, termMagnitude: reference.DbTerms);
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void InputsAndUpstreamGradient_AreLeftUntouched(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var (x, w, b, dy) = RandomInputs([5, 64], ScalarType.BFloat16, withBias: true);
        string context = Inputs.Describe(seed, path, "5x64 bf16");
        using var p = PathScope.Enter(path);
        var (xd, wd, bd, dyd) = (p.On(x).requires_grad_(true), p.On(w).requires_grad_(true), p.On(b!).requires_grad_(true), p.On(dy));
        LigerLayerNormFunction.Apply(xd, wd, bd).backward([dyd]);
        p.AssertRan(Forward, Backward);
        TensorAssert.BitwiseEqual(x, xd, "x", context);
        TensorAssert.BitwiseEqual(w, wd, "weight", context);
        TensorAssert.BitwiseEqual(b!, bd, "bias", context);
        TensorAssert.BitwiseEqual(dy, dyd, "upstream gradient", context);
    }

    // ---- module ----

    [TestMethod]
    public void LigerLayerNorm_HasTorchParameterNamesAndInitialValues()
    {
        using var scope = NewDisposeScope();
        using var norm = new LigerLayerNorm(48, dtype: ScalarType.BFloat16);
        CollectionAssert.AreEqual(new[] { "weight", "bias" }, norm.named_parameters().Select(n => n.name).ToArray());
        CollectionAssert.AreEqual(new[] { "weight", "bias" }, norm.state_dict().Keys.ToArray());
        TensorAssert.BitwiseEqual(ones(48, dtype: ScalarType.BFloat16), norm.weight, "initial weight", "");
        TensorAssert.BitwiseEqual(zeros(48, dtype: ScalarType.BFloat16), norm.bias!, "initial bias", "");
        Assert.IsTrue(norm.weight.requires_grad && norm.bias!.requires_grad);
        Assert.AreEqual(1e-5, norm.Eps);

        using var noBias = new LigerLayerNorm(48, eps: 1e-6, bias: false);
        CollectionAssert.AreEqual(new[] { "weight" }, noBias.named_parameters().Select(n => n.name).ToArray());
        Assert.IsNull(noBias.bias);
        Assert.AreEqual(1e-6, noBias.Eps);
    }

    /// <summary>A state dict of torch's nn.LayerNorm loads by name, and the two modules then agree.</summary>
    [TestMethod]
    public void LigerLayerNorm_LoadsTorchLayerNormStateDictAndMatchesIt()
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        using var torchNorm = nn.LayerNorm(33);
        using (no_grad())
        {
            torchNorm.weight!.copy_(Inputs.Randn([33], ScalarType.Float32, 0.5, 1.0));
            torchNorm.bias!.copy_(Inputs.Randn([33], ScalarType.Float32));
        }
        using var norm = new LigerLayerNorm(33);
        norm.load_state_dict(torchNorm.state_dict());
        var x = Inputs.Randn([4, 33], ScalarType.Float32, 2.0);
        TensorAssert.Close(norm.forward(x), torchNorm.forward(x), Tolerance.SameRounding(ScalarType.Float32), "y", Seeds.Describe(seed));
    }

    [TestMethod]
    [DynamicData(nameof(PathAndDtype))]
    public void Module_ForwardAndBackward_EqualTheFunction(string path, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        foreach (bool withBias in new[] { true, false })
        {
            var (x, w, b, dy) = RandomInputs([2, 3, 40], dtype, withBias);
            string context = Inputs.Describe(seed, path, dtype, withBias ? "bias" : "no bias");
            using var p = PathScope.Enter(path);
            using var norm = new LigerLayerNorm(40, eps: 1e-6, bias: withBias, dtype: dtype, device: p.Device);
            using (no_grad())
            {
                norm.weight.copy_(p.On(w));
                norm.bias?.copy_(p.On(b!));
            }
            var xm = p.On(x).requires_grad_(true);
            var ym = norm.forward(xm);
            ym.backward([p.On(dy)]);
            p.AssertRan(Forward, Backward);

            var run = Run(path, x, w, b, dy, 1e-6);
            TensorAssert.BitwiseEqual(run.Y, ym, "module y vs function", context);
            TensorAssert.BitwiseEqual(run.Dx, xm.grad!, "module dx vs function", context);
            TensorAssert.BitwiseEqual(run.Dw, norm.weight.grad!, "module dW vs function", context);
            if (withBias)
                TensorAssert.BitwiseEqual(run.Db!, norm.bias!.grad!, "module dB vs function", context);
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
        var b = randn(8, device: device);

        Expect<ArgumentException>("x", () => LigerLayerNormFunction.Apply(x.to(ScalarType.Int64), w.to(ScalarType.Int64), null), "int64 x");
        Expect<ArgumentException>("x", () => LigerLayerNormFunction.Apply(x.to(ScalarType.Float64), w.to(ScalarType.Float64), null), "float64 x");
        Expect<ArgumentException>("x", () => LigerLayerNormFunction.Apply(randn(8, 4, device: device).t(), w, b), "transposed x");
        Expect<ArgumentException>("x", () => LigerLayerNormFunction.Apply(tensor(3.0f, device: device), randn(1, device: device), null), "0-dim x");
        Expect<ArgumentException>("weight", () => LigerLayerNormFunction.Apply(x, randn(7, device: device), b), "weight of 7 for 8 features");
        Expect<ArgumentException>("weight", () => LigerLayerNormFunction.Apply(x, randn(2, 8, device: device), b), "2-D weight");
        Expect<ArgumentException>("weight", () => LigerLayerNormFunction.Apply(x, w.to(ScalarType.BFloat16), b), "bf16 weight for fp32 x");
        Expect<ArgumentException>("weight", () => LigerLayerNormFunction.Apply(x, randn(16, device: device)[TensorIndex.Slice(step: 2)], b), "strided weight");
        Expect<ArgumentException>("bias", () => LigerLayerNormFunction.Apply(x, w, randn(9, device: device)), "bias of 9 for 8 features");
        Expect<ArgumentException>("bias", () => LigerLayerNormFunction.Apply(x, w, b.to(ScalarType.BFloat16)), "bf16 bias for fp32 x");
        Expect<ArgumentException>("bias", () => LigerLayerNormFunction.Apply(x, w, randn(16, device: device)[TensorIndex.Slice(step: 2)]), "strided bias");
        Expect<ArgumentOutOfRangeException>("eps", () => LigerLayerNormFunction.Apply(x, w, b, eps: -1e-6), "negative eps");
        Expect<ArgumentOutOfRangeException>("eps", () => LigerLayerNormFunction.Apply(x, w, b, eps: double.NaN), "NaN eps");
        Expect<ArgumentOutOfRangeException>("eps", () => LigerLayerNormFunction.Apply(x, w, b, eps: double.PositiveInfinity), "infinite eps");
        Expect<ArgumentNullException>("x", () => LigerLayerNormFunction.Apply(null!, w, b), "null x");
        Expect<ArgumentNullException>("weight", () => LigerLayerNormFunction.Apply(x, null!, b), "null weight");
        var disposed = randn(8, device: device);
        disposed.Dispose();
        Expect<ArgumentException>("bias", () => LigerLayerNormFunction.Apply(x, w, disposed), "disposed bias");
        Expect<ArgumentOutOfRangeException>("hiddenSize", () => new LigerLayerNorm(0), "hidden size 0");
        if (path == TestPaths.Cuda)
        {
            Expect<ArgumentException>("weight", () => LigerLayerNormFunction.Apply(x, w.cpu(), b), "weight on the CPU, x on CUDA");
            Expect<ArgumentException>("bias", () => LigerLayerNormFunction.Apply(x, w, b.cpu()), "bias on the CPU, x on CUDA");
        }
        Assert.IsEmpty(p.Events, "no op may run on rejected arguments");
    }

    private static void Expect<T>(string argument, Func<object> call, string what) where T : ArgumentException =>
        RmsNormTests.ExpectArgument<T>(argument, call, what);

    // ---- helpers ----

    internal sealed record Result(Tensor Y, Tensor Dx, Tensor Dw, Tensor? Db);

    /// <summary>x = 2·randn + 0.5, weight = 1 + 0.5·randn, bias = randn (or none), dy = randn.</summary>
    private static (Tensor X, Tensor W, Tensor? B, Tensor Dy) RandomInputs(long[] shape, ScalarType dtype, bool withBias)
    {
        var x = Inputs.Randn(shape, dtype, scale: 2.0, shift: 0.5);
        var w = Inputs.Randn([shape[^1]], dtype, scale: 0.5, shift: 1.0);
        var b = withBias ? Inputs.Randn([shape[^1]], dtype) : null;
        var dy = Inputs.Randn(shape, dtype);
        return (x, w, b, dy);
    }

    /// <summary>Forward and backward of LigerLayerNormFunction on <paramref name="path"/>; results on the CPU.</summary>
    private static Result Run(string path, Tensor x, Tensor w, Tensor? b, Tensor dy, double eps)
    {
        using var p = PathScope.Enter(path);
        var xd = p.On(x).requires_grad_(true);
        var wd = p.On(w).requires_grad_(true);
        var bd = b is null ? null : p.On(b).requires_grad_(true);
        var y = LigerLayerNormFunction.Apply(xd, wd, bd, eps);
        y.backward([p.On(dy)]);
        p.AssertRan(Forward, Backward);
        return new Result(y.detach().cpu(), xd.grad!.cpu(), wd.grad!.cpu(), bd?.grad!.cpu());
    }

    private static void AssertClose(Result run, LayerNormReference reference, Tolerance tolerance, string context) =>
        AssertClose(run, new Result(reference.Y, reference.Dx, reference.Dw, reference.Db), reference, tolerance, context);

    /// <summary>Every result against <paramref name="expected"/>, with the scales of the float64 reference.</summary>
    private static void AssertClose(Result run, Result expected, LayerNormReference scales, Tolerance tolerance, string context)
    {
        TensorAssert.Close(run.Y, expected.Y, tolerance, "y", context);
        TensorAssert.Close(run.Dx, expected.Dx, tolerance, "dx", context, scale: scales.DxScale);
        TensorAssert.Close(run.Dw, expected.Dw, tolerance, "dW", context, scale: scales.DwScale, termMagnitude: scales.DwTerms);
        if (run.Db is not null)
            TensorAssert.Close(run.Db, expected.Db!, tolerance, "dB", context, scale: scales.DbScale, termMagnitude: scales.DbTerms);
    }
}
