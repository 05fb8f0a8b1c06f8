using Liger.Kernels.Runtime;
using Liger.Kernels.Kernels;
using Liger.Kernels.Modules;
using Liger.Kernels.Ops;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>LigerGELUMulFunction, GeGluOp and LigerGEGLUMLP against float64 eager references, on every path.</summary>
[TestClass]
public sealed class GeGluTests
{
    private const string Forward = "gelu_mul_forward", Backward = "gelu_mul_backward";

    /// <summary>fp32's unit roundoff, 2^-24.</summary>
    private const double Roundoff = 5.9604644775390625e-8;

    /// <summary>Rows: path, shape, dtype.</summary>
    public static IEnumerable<object[]> ReferenceCases()
    {
        foreach (var path in TestPaths.Names)
        {
            // 3x40 and 4x2048 hold whole 8-element chunks (the vectorised kernels); the others are scalar.
            string[] shapes = TestPaths.IsSlow(path)
                ? ["1x1", "3x5", "3x40", "7x4097", "2x3x33", "4x2048"]
                : ["1x1", "3x5", "3x40", "7x4097", "2x3x33", "4x2048", "2x128x1376"];
            foreach (var shape in shapes)
                foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16 })
                    yield return [path, shape, dtype];
        }
    }

    /// <summary>Rows: path, dtype, shape (scalar and vectorised kernels).</summary>
    public static IEnumerable<object[]> InPlaceCases() =>
        from path in TestPaths.Names
        from dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 }
        from shape in new[] { "3x37", "3x40" }
        select new object[] { path, dtype, shape };

    /// <summary>Rows: path, dtype.</summary>
    public static IEnumerable<object[]> PathAndDtype() =>
        from path in TestPaths.Names
        from dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 }
        select new object[] { path, dtype };

    [TestMethod]
    [DynamicData(nameof(ReferenceCases))]
    public void MatchesFloat64Reference(string path, string shape, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var (a, b, dc) = RandomInputs(Inputs.Shape(shape), dtype);
        string context = Inputs.Describe(seed, path, shape, dtype);

        var run = Run(path, a, b, dc);
        AssertMatchesReference(run, a, b, dc, dtype, context);
        Assert.AreEqual(dtype, run.C.dtype, $"c dtype. {context}");

        if (path != TestPaths.Torch)
        {
            // The torch path is eager torch itself (gelu, then the product), so this holds the kernels to
            // eager's roundings, where those are well defined: for a < -1.5, 1 + tanh(u) cancels and the last
            // bit of tanh (Sleef's in torch, DeviceMath's here) moves gelu and gelu' by many of their own
            // ulps, in fp32 and so in the 16-bit rounding of them. There both are held to the float64
            // reference above, within that cancellation's error.
            var torchRun = Run(TestPaths.Torch, a, b, dc);
            var conditioned = a.to(ScalarType.Float32).GreaterOrEqual(-1.5);
            var same = Tolerance.SameRounding(dtype);
            TensorAssert.Close(run.C.masked_select(conditioned), torchRun.C.masked_select(conditioned), same, "c vs torch path", context);
            TensorAssert.Close(run.Da.masked_select(conditioned), torchRun.Da.masked_select(conditioned), same, "da vs torch path", context);
            TensorAssert.Close(run.Db.masked_select(conditioned), torchRun.Db.masked_select(conditioned), same, "db vs torch path", context);
        }
    }

    /// <summary>
    /// gelu and gelu' of the op (b = 1 and dc = 1 make c = gelu(a), da = gelu'(a), db = gelu(a) exactly) over
    /// a dense sweep of a, from 1e-8 to 60 in magnitude, both signs, against the float64 function. Torch's
    /// formula 0.5 a (1 + tanh(u)) is evaluated in fp32, so the bound is a few units of fp32 roundoff times
    /// the size of its terms: 0.5|a|(1 + |t|) for gelu, 0.5(1 + |t|) + 0.5|a| u' for gelu'. That is a
    /// relative bound wherever gelu is not tiny (near 0 too: tanh keeps its relative accuracy there), and
    /// the formula's own absolute accuracy for a &lt; -3, where 1 + t cancels, in torch as here. The same
    /// bound holds against torch's own fp32 gelu and gelu backward.
    /// </summary>
    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void GeluAndDerivative_AreAccurateOverADenseSweep(string path)
    {
        using var scope = NewDisposeScope();
        var a = SweepPoints();
        string context = $"[{path}, {a.numel()} fixed points in ±[1e-8, 60]]";
        var ones = ones_like(a);
        var run = Run(path, a, ones, ones);

        var a64 = a.to(ScalarType.Float64);
        var gelu64 = References.GeluTanh64(a64);
        var derivative64 = References.GeluTanhDerivative64(a64);
        var (valueTerms, derivativeTerms) = FormulaTerms(a64);
        const double units = FormulaUnits;
        AssertWithin(run.C, gelu64, valueTerms.Times(units), a, "gelu (c)", context);
        AssertWithin(run.Db, gelu64, valueTerms.Times(units), a, "gelu (db)", context);
        AssertWithin(run.Da, derivative64, derivativeTerms.Times(units), a, "gelu' (da)", context);

        var leaf = a.clone().requires_grad_(true);
        var torchGelu = nn.functional.gelu(leaf, GELU.Approximate.tanh);
        var torchDerivative = autograd.grad([torchGelu], [leaf], [ones])[0];
        AssertWithin(run.C, torchGelu.detach().to(ScalarType.Float64), valueTerms.Times(2 * units), a, "gelu vs torch's", context);
        AssertWithin(run.Da, torchDerivative.to(ScalarType.Float64), derivativeTerms.Times(2 * units), a, "gelu' vs torch's", context);
    }

    /// <summary>Infinities, NaN and magnitudes whose cube or square overflow give what torch's fp32 gelu gives.</summary>
    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void NonFiniteAndHugeInputs_GiveTorchsResults(string path)
    {
        using var scope = NewDisposeScope();
        var a = tensor(new[] { float.PositiveInfinity, float.NegativeInfinity, float.NaN, 1e13f, -1e13f, 1e20f, -1e20f, float.MaxValue, -float.MaxValue });
        var ones = ones_like(a);
        var run = Run(path, a, ones, ones);
        var leaf = a.clone().requires_grad_(true);
        var gelu = nn.functional.gelu(leaf, GELU.Approximate.tanh);
        var derivative = autograd.grad([gelu], [leaf], [ones])[0];
        AssertSameValues(gelu.detach(), run.C, a, "gelu", path);
        AssertSameValues(derivative, run.Da, a, "gelu'", path);
    }

    /// <summary>tanh built from exp2 stays within 1.5 ulp of the float64 tanh for every magnitude (on the
    /// CPU, where exp2 is exact; the CUDA rows of the sweep above cover ex2.approx), keeps the sign of
    /// zero, and saturates to ±1 without overflow.</summary>
    [TestMethod]
    public void DeviceTanh_IsAccurateForEveryMagnitude()
    {
        double worst = 0;
        float worstAt = 0;
        // every 97th float from 1e-30 to 20 (about 10 million values), both signs
        for (uint bits = BitConverter.SingleToUInt32Bits(1e-30f); BitConverter.UInt32BitsToSingle(bits) < 20f; bits += 97)
        {
            float x = BitConverter.UInt32BitsToSingle(bits);
            foreach (float v in new[] { x, -x })
            {
                double exact = Math.Tanh(v);
                float ulp = MathF.BitIncrement(MathF.Abs((float)exact)) - MathF.Abs((float)exact);
                double error = Math.Abs(DeviceMath.Tanh(v) - exact) / ulp;
                if (error > worst)
                    (worst, worstAt) = (error, v);
            }
        }
        Assert.IsLessThanOrEqualTo(1.5, worst, $"largest error {worst:F3} ulp at x = {worstAt:R}");

        Assert.AreEqual(1e-40f, DeviceMath.Tanh(1e-40f), "subnormal x: tanh(x) = x");
        Assert.IsTrue(float.IsNegative(DeviceMath.Tanh(-0f)) && DeviceMath.Tanh(-0f) == 0f, "tanh(-0) = -0");
        foreach (float big in new[] { 9.1f, 50f, 1e30f, float.MaxValue, float.PositiveInfinity })
        {
            Assert.AreEqual(1f, DeviceMath.Tanh(big), $"tanh({big})");
            Assert.AreEqual(-1f, DeviceMath.Tanh(-big), $"tanh({-big})");
        }
        Assert.IsTrue(float.IsNaN(DeviceMath.Tanh(float.NaN)), "tanh(NaN)");
    }

    [TestMethod]
    [DynamicData(nameof(InPlaceCases))]
    public void InPlaceBackward_WritesDaAndDbIntoIntermediates(string path, ScalarType dtype, string shape)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var (a, b, dc) = RandomInputs(Inputs.Shape(shape), dtype);
        string context = Inputs.Describe(seed, path, shape, dtype, "inPlaceBackward");
        var reference = References.GeGlu(a, b, dc);

        using var p = PathScope.Enter(path);
        var a0 = p.On(a).requires_grad_(true);
        var b0 = p.On(b).requires_grad_(true);
        // non-leaf intermediates, as gate_proj / up_proj outputs are in the MLP
        var gate = a0.clone();
        var up = b0.clone();
        var c = LigerGELUMulFunction.Apply(gate, up, inPlaceBackward: true);
        c.backward([p.On(dc)]);
        p.AssertRan(Forward, Backward);

        var (_, daAllowance, dbAllowance) = ErrorAllowances(a, b, dc, dtype);
        AssertClose(a0.grad!, reference.Da, daAllowance, dtype, "da", context);
        AssertClose(b0.grad!, reference.Db, dbAllowance, dtype, "db", context);
        TensorAssert.BitwiseEqual(a0.grad!, gate, "a's buffer after the in-place backward (holds da)", context);
        TensorAssert.BitwiseEqual(b0.grad!, up, "b's buffer after the in-place backward (holds db)", context);
    }

    [TestMethod]
    [DynamicData(nameof(InPlaceCases))]
    public void OutOfPlaceBackward_LeavesInputsUntouched(string path, ScalarType dtype, string shape)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var (a, b, dc) = RandomInputs(Inputs.Shape(shape), dtype);
        string context = Inputs.Describe(seed, path, shape, dtype);

        using var p = PathScope.Enter(path);
        var a0 = p.On(a).requires_grad_(true);
        var b0 = p.On(b).requires_grad_(true);
        var upstream = p.On(dc);
        var c = LigerGELUMulFunction.Apply(a0, b0);
        c.backward([upstream]);
        p.AssertRan(Forward, Backward);

        TensorAssert.BitwiseEqual(a, a0, "a after backward", context);
        TensorAssert.BitwiseEqual(b, b0, "b after backward", context);
        TensorAssert.BitwiseEqual(dc, upstream, "upstream gradient after backward", context);
        var reference = References.GeGlu(a, b, dc);
        var (_, daAllowance, dbAllowance) = ErrorAllowances(a, b, dc, dtype);
        AssertClose(a0.grad!, reference.Da, daAllowance, dtype, "da", context);
        AssertClose(b0.grad!, reference.Db, dbAllowance, dtype, "db", context);
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void EmptyInput_GivesEmptyOutputAndGradients(string path)
    {
        using var scope = NewDisposeScope();
        using var p = PathScope.Enter(path);
        var a = empty([0, 5], device: p.Device).requires_grad_(true);
        var b = empty([0, 5], device: p.Device).requires_grad_(true);
        var c = LigerGELUMulFunction.Apply(a, b);
        CollectionAssert.AreEqual(new long[] { 0, 5 }, c.shape);
        c.backward([empty([0, 5], device: p.Device)]);
        p.AssertRan(Forward, Backward);
        CollectionAssert.AreEqual(new long[] { 0, 5 }, a.grad!.shape);
        CollectionAssert.AreEqual(new long[] { 0, 5 }, b.grad!.shape);
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void HostFunctions_MatchTheAutogradFunction(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var (a, b, dc) = RandomInputs([5, 29], ScalarType.BFloat16);
        string context = Inputs.Describe(seed, path, "5x29 bf16");
        using var p = PathScope.Enter(path);
        var c = GeGluOp.Forward(p.On(a), p.On(b));
        var (da, db) = GeGluOp.Backward(p.On(dc), p.On(a), p.On(b), inPlace: false);
        p.AssertRan(Forward, Backward);
        var run = Run(path, a, b, dc);
        TensorAssert.BitwiseEqual(run.C, c, "c (host vs autograd)", context);
        TensorAssert.BitwiseEqual(run.Da, da, "da (host vs autograd)", context);
        TensorAssert.BitwiseEqual(run.Db, db, "db (host vs autograd)", context);
    }

    // ---- LigerGEGLUMLP ----

    [TestMethod]
    public void Mlp_HasHuggingFaceSubmoduleAndStateDictNames()
    {
        using var scope = NewDisposeScope();
        using var mlp = new LigerGEGLUMLP(16, 40);
        CollectionAssert.AreEquivalent(new[] { "gate_proj", "up_proj", "down_proj" },
            mlp.named_children().Select(c => c.name).ToArray());
        CollectionAssert.AreEquivalent(new[] { "gate_proj.weight", "up_proj.weight", "down_proj.weight" },
            mlp.state_dict().Keys.ToArray());
        CollectionAssert.AreEqual(new long[] { 40, 16 }, mlp.gate_proj.weight!.shape);
        CollectionAssert.AreEqual(new long[] { 40, 16 }, mlp.up_proj.weight!.shape);
        CollectionAssert.AreEqual(new long[] { 16, 40 }, mlp.down_proj.weight!.shape);

        using var withBias = new LigerGEGLUMLP(16, 40, bias: true, dtype: ScalarType.BFloat16);
        CollectionAssert.AreEquivalent(
            new[] { "gate_proj.weight", "gate_proj.bias", "up_proj.weight", "up_proj.bias", "down_proj.weight", "down_proj.bias" },
            withBias.state_dict().Keys.ToArray());
        Assert.IsTrue(withBias.parameters().All(t => t.dtype == ScalarType.BFloat16), "parameters take the requested dtype");
    }

    [TestMethod]
    [DynamicData(nameof(PathAndDtype))]
    public void Mlp_ForwardAndBackward_MatchEagerMlpWithSameWeights(string path, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        const long hidden = 24, intermediate = 56;
        foreach (bool bias in new[] { false, true })
        {
            string context = Inputs.Describe(seed, path, dtype, $"bias {bias}", $"{hidden}->{intermediate}");
            using var p = PathScope.Enter(path);
            using var mlp = new LigerGEGLUMLP(hidden, intermediate, bias, dtype, p.Device);
            var x = Inputs.Randn([2, 3, hidden], dtype);
            var dy = Inputs.Randn([2, 3, hidden], dtype);
            var xd = p.On(x).requires_grad_(true);
            var y = mlp.forward(xd);
            y.backward([p.On(dy)]);
            p.AssertRan(Forward, Backward);

            // eager float64 MLP with the same weights
            var named = mlp.named_parameters().ToDictionary(n => n.name, n => n.parameter);
            var weights64 = named.ToDictionary(n => n.Key, n => n.Value.detach().cpu().to(ScalarType.Float64).requires_grad_(true));
            var x64 = x.to(ScalarType.Float64).requires_grad_(true);
            var dy64 = dy.to(ScalarType.Float64);
            Tensor Linear(string name, Tensor input) =>
                nn.functional.linear(input, weights64[name + ".weight"], bias ? weights64[name + ".bias"] : null);
            var gate = Linear("gate_proj", x64);
            var up = Linear("up_proj", x64);
            gate.retain_grad();
            up.retain_grad();
            var h = References.GeluTanh64(gate) * up;
            var y64 = Linear("down_proj", h);
            y64.backward([dy64]);

            // Σ|terms| of each matrix product, for the elementwise bound (a low-precision product that sums
            // to near zero carries an error the size of its terms)
            var (wg, wu, wd) = (weights64["gate_proj.weight"].detach().abs(), weights64["up_proj.weight"].detach().abs(),
                weights64["down_proj.weight"].detach().abs());
            var (dGate, dUp) = (gate.grad!.abs().view(-1, intermediate), up.grad!.abs().view(-1, intermediate));
            var (xAbs, hAbs, dyAbs) = (x64.detach().abs().view(-1, hidden), h.detach().abs().view(-1, intermediate),
                dy64.abs().view(-1, hidden));
            var terms = new Dictionary<string, Tensor>
            {
                ["gate_proj.weight"] = dGate.t().matmul(xAbs),
                ["up_proj.weight"] = dUp.t().matmul(xAbs),
                ["down_proj.weight"] = dyAbs.t().matmul(hAbs),
                ["gate_proj.bias"] = dGate.sum([0L]),
                ["up_proj.bias"] = dUp.sum([0L]),
                ["down_proj.bias"] = dyAbs.sum([0L]),
            };
            var yTerms = hAbs.matmul(wd.t()).view(y64.shape);
            var dxTerms = (dGate.matmul(wg).Plus(dUp.matmul(wu))).view(x64.shape);

            var tolerance = Tolerance.VersusFloat64(dtype);
            TensorAssert.Close(y, y64, tolerance, "MLP output", context, termMagnitude: yTerms);
            TensorAssert.Close(xd.grad!, x64.grad!, tolerance, "MLP input gradient", context, termMagnitude: dxTerms);
            Assert.HasCount(bias ? 6 : 3, named, $"parameters. {context}");
            foreach (var (name, parameter) in named)
                TensorAssert.Close(parameter.grad!, weights64[name].grad!, tolerance, $"gradient of {name}", context,
                    termMagnitude: terms[name]);
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
        var a = randn(4, 6, device: device);
        var b = randn(4, 6, device: device);

        RmsNormTests.ExpectArgument<ArgumentException>("b", () => LigerGELUMulFunction.Apply(a, randn(4, 7, device: device)), "b of another shape");
        RmsNormTests.ExpectArgument<ArgumentException>("b", () => LigerGELUMulFunction.Apply(a, randn(24, device: device)), "b with a's element count, another shape");
        RmsNormTests.ExpectArgument<ArgumentException>("a", () => LigerGELUMulFunction.Apply(a.to(ScalarType.Int64), b.to(ScalarType.Int64)), "int64 a");
        RmsNormTests.ExpectArgument<ArgumentException>("a", () => LigerGELUMulFunction.Apply(a.to(ScalarType.Float64), b.to(ScalarType.Float64)), "float64 a");
        RmsNormTests.ExpectArgument<ArgumentException>("b", () => LigerGELUMulFunction.Apply(a, b.to(ScalarType.BFloat16)), "bf16 b for fp32 a");
        RmsNormTests.ExpectArgument<ArgumentException>("a", () => LigerGELUMulFunction.Apply(randn(6, 4, device: device).t(), b), "transposed a");
        RmsNormTests.ExpectArgument<ArgumentException>("b", () => LigerGELUMulFunction.Apply(a, randn(6, 4, device: device).t()), "transposed b");
        RmsNormTests.ExpectArgument<ArgumentNullException>("a", () => LigerGELUMulFunction.Apply(null!, b), "null a");
        RmsNormTests.ExpectArgument<ArgumentNullException>("b", () => LigerGELUMulFunction.Apply(a, null!), "null b");
        if (path == TestPaths.Cuda)
            RmsNormTests.ExpectArgument<ArgumentException>("b", () => LigerGELUMulFunction.Apply(a, b.cpu()), "b on the CPU, a on CUDA");
        Assert.IsEmpty(p.Events, "no op may run on rejected arguments");
    }

    // ---- helpers ----

    /// <summary>The error of torch's fp32 formula for gelu and gelu', in units of fp32 roundoff times
    /// <see cref="FormulaTerms"/>: a few from tanh's last bits, a few from the sums that cancel.</summary>
    private const double FormulaUnits = 8 * Roundoff;

    /// <summary>
    /// The sizes of the terms torch's formulas sum, per element of a (float64): 0.5|a|(1 + |t|) for
    /// gelu = 0.5 a (1 + t), and 0.5(1 + |t|) + 0.5|a| u' for gelu' = 0.5 (1 + t) + 0.5 a (1 - t^2) u', with
    /// t = tanh(u), u = sqrt(2/pi)(a + 0.044715 a^3). Evaluated in fp32 they cancel where 1 + t is small
    /// (a &lt; -2) and around gelu's minimum (gelu' = 0), and their error is then that of the terms, not of
    /// the small result.
    /// </summary>
    private static (Tensor Value, Tensor Derivative) FormulaTerms(Tensor a64)
    {
        var t = tanh((a64.Plus(a64.Power(3).Times(0.044715))).Times(0.79788456080286535588)).abs();
        var value = a64.abs().Times(0.5) * (t.Plus(1));
        var derivative = (t.Plus(1)).Times(0.5).Plus(a64.abs().Times(0.5).Times(0.79788456080286535588) * a64.Squared().Times(3 * 0.044715).Plus(1));
        return (value, derivative);
    }

    /// <summary>
    /// Per element, the absolute error that c, da and db may carry beyond their dtype's relative tolerance,
    /// in torch's path as in the kernels: the fp32 formula's (<see cref="FormulaUnits"/> · its terms · |b|,
    /// |dc·b| or |dc|), which only matters where gelu or gelu' cancel; and for fp16 its subnormal spacing
    /// 2^-24 on each rounded quantity (gelu(a) of a &lt; -3.6 and the results near 0 are subnormal there).
    /// </summary>
    private static (Tensor C, Tensor Da, Tensor Db) ErrorAllowances(Tensor a, Tensor b, Tensor dc, ScalarType dtype)
    {
        var a64 = a.to(ScalarType.Float64);
        var (value, derivative) = FormulaTerms(a64);
        var (b64, dc64) = (b.to(ScalarType.Float64).abs(), dc.to(ScalarType.Float64).abs());
        var (c, da, db) = (value.Times(FormulaUnits) * b64, derivative.Times(FormulaUnits) * dc64 * b64, value.Times(FormulaUnits) * dc64);
        if (dtype != ScalarType.Float16)
            return (c, da, db);
        const double spacing = 5.9604644775390625e-8;
        var slope = References.GeluTanhDerivative64(a64).abs();
        return (c.Plus((b64.Plus(1)).Times(spacing)), da.Plus((slope.Plus(1)).Times(spacing)), db.Plus((dc64.Plus(1)).Times(spacing)));
    }

    /// <summary>
    /// <see cref="TensorAssert.Close"/> against float64 with the <paramref name="allowance"/> of
    /// <see cref="ErrorAllowances"/> added: elementwise Atol·rms + max(Rtol·|expected|, allowance), and the
    /// norm of the error within NormRel·‖|expected| + allowance / NormRel‖.
    /// </summary>
    private static void AssertClose(Tensor actual, Tensor expected, Tensor allowance, ScalarType dtype, string what, string context)
    {
        using var scope = NewDisposeScope();
        var tolerance = Tolerance.VersusFloat64(dtype);
        TensorAssert.Close(actual, expected, tolerance, what, context, scale: expected.abs().Plus(allowance.DividedBy(tolerance.NormRel)),
            termMagnitude: allowance.DividedBy(tolerance.Rtol));
    }

    /// <summary>c, da and db against the float64 reference, within <see cref="ErrorAllowances"/>.</summary>
    private static void AssertMatchesReference(Result run, Tensor a, Tensor b, Tensor dc, ScalarType dtype, string context)
    {
        using var scope = NewDisposeScope();
        var reference = References.GeGlu(a, b, dc);
        var (c, da, db) = ErrorAllowances(a, b, dc, dtype);
        AssertClose(run.C, reference.C, c, dtype, "c", context);
        AssertClose(run.Da, reference.Da, da, dtype, "da", context);
        AssertClose(run.Db, reference.Db, db, dtype, "db", context);
    }

    internal sealed record Result(Tensor C, Tensor Da, Tensor Db);

    /// <summary>a = 3·randn (gelu's curved region, its minimum near -0.75, and both tails), b = 2·randn, dc = randn.</summary>
    internal static (Tensor A, Tensor B, Tensor Dc) RandomInputs(long[] shape, ScalarType dtype) =>
        (Inputs.Randn(shape, dtype, 3.0), Inputs.Randn(shape, dtype, 2.0), Inputs.Randn(shape, dtype));

    /// <summary>Forward and backward of LigerGELUMulFunction on <paramref name="path"/>; results on the CPU.</summary>
    internal static Result Run(string path, Tensor a, Tensor b, Tensor dc)
    {
        using var p = PathScope.Enter(path);
        var ad = p.On(a).requires_grad_(true);
        var bd = p.On(b).requires_grad_(true);
        var c = LigerGELUMulFunction.Apply(ad, bd);
        c.backward([p.On(dc)]);
        p.AssertRan(Forward, Backward);
        return new Result(c.detach().cpu(), ad.grad!.cpu(), bd.grad!.cpu());
    }

    /// <summary>fp32 points: ±1e-8, ±1e-3, ±3, ±10, ±50, 0, and 4000 magnitudes spaced evenly in log from
    /// 1e-8 to 60 with both signs (a 1-D tensor, small enough for the emulator).</summary>
    private static Tensor SweepPoints()
    {
        var magnitudes = logspace(-8, Math.Log10(60), 2000, dtype: ScalarType.Float64).to(ScalarType.Float32);
        var special = tensor(new[] { 0f, 1e-8f, 1e-3f, 3f, 10f, 50f });
        var positive = cat([special, magnitudes]);
        return cat([positive, -positive]);
    }

    private static void AssertWithin(Tensor actual, Tensor expected64, Tensor allowed, Tensor at, string what, string context)
    {
        using var scope = NewDisposeScope();
        TensorAssert.AssertFinite(actual, what, context);
        var error = (actual.to(ScalarType.Float64) - expected64).abs();
        var excess = error - allowed;
        long worst = excess.argmax().item<long>();
        Assert.IsLessThanOrEqualTo(0.0, excess[worst].item<double>(),
            $"{what}: {excess.GreaterThan(0).sum().item<long>()} of {at.numel()} points beyond the bound; worst at a = {at[worst].item<float>():R}: " +
            $"got {actual[worst].item<float>():R}, exact {expected64[worst].item<double>():R}, allowed error {allowed[worst].item<double>():E2}. {context}");
    }

    /// <summary>Equal values, NaN where <paramref name="expected"/> is NaN.</summary>
    private static void AssertSameValues(Tensor expected, Tensor actual, Tensor at, string what, string path)
    {
        for (int i = 0; i < at.numel(); i++)
        {
            float e = expected[i].item<float>(), a = actual[i].item<float>();
            Assert.IsTrue(float.IsNaN(e) ? float.IsNaN(a) : e == a,
                $"{what}({at[i].item<float>():R}) on {path}: torch gives {e:R}, got {a:R}");
        }
    }
}
