using Liger.Kernels.Kernels;
using Liger.Kernels.Runtime;
using Liger.Kernels.Modules;
using Liger.Kernels.Ops;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// LigerGELUMulFunction, GeGluOp and LigerGEGLUMLP against float64 eager references, on every path (the shared
/// tests are <see cref="GatedOpTests"/>'), and gelu_tanh itself: a dense sweep, non-finite inputs, DeviceMath.Tanh.
/// </summary>
[TestClass]
public sealed class GeGluTests : GatedOpTests
{
    /// <summary>fp32's unit roundoff, 2^-24.</summary>
    private const double Roundoff = 5.9604644775390625e-8;

    protected override string ForwardOp => "gelu_mul_forward";
    protected override string BackwardOp => "gelu_mul_backward";
    protected override Tensor Apply(Tensor a, Tensor b, bool inPlaceBackward = false) => LigerGELUMulFunction.Apply(a, b, inPlaceBackward);
    protected override Tensor HostForward(Tensor a, Tensor b) => GeGluOp.Forward(a, b);
    protected override (Tensor Da, Tensor Db) HostBackward(Tensor dc, Tensor a, Tensor b) => GeGluOp.Backward(dc, a, b, inPlace: false);
    protected override GatedReference Reference(Tensor a, Tensor b, Tensor dc) => References.GeGlu(a, b, dc);
    protected override Tensor Activation64(Tensor a64) => References.GeluTanh64(a64);

    protected override nn.Module<Tensor, Tensor> Mlp(long hidden, long intermediate, bool bias = false, ScalarType dtype = ScalarType.Float32, Device? device = null) =>
        new LigerGEGLUMLP(hidden, intermediate, bias, dtype, device);

    /// <summary>c, da and db against the float64 reference, within <see cref="ErrorAllowances"/>.</summary>
    protected override void AssertMatchesReference(Tensor? c, Tensor da, Tensor db, Tensor a, Tensor b, Tensor dc, ScalarType dtype, string context)
    {
        using var scope = NewDisposeScope();
        var reference = References.GeGlu(a, b, dc);
        var (cAllowance, daAllowance, dbAllowance) = ErrorAllowances(a, b, dc, dtype);
        if (c is not null)
            AssertClose(c, reference.C, cAllowance, dtype, "c", context);
        AssertClose(da, reference.Da, daAllowance, dtype, "da", context);
        AssertClose(db, reference.Db, dbAllowance, dtype, "db", context);
    }

    /// <summary>
    /// The torch path is eager torch itself (gelu, then the product), so comparing with it holds the kernels
    /// to eager's roundings where those are well defined: for a &lt; -1.5, 1 + tanh(u) cancels and the last
    /// bit of tanh (Sleef's in torch, DeviceMath's here) moves gelu and gelu' by many of their own ulps, in
    /// fp32 and so in the 16-bit rounding of them. There both are held to the float64 reference
    /// (<see cref="AssertMatchesReference"/>), within that cancellation's error.
    /// </summary>
    protected override Tensor? RoundsLikeTorch(Tensor a) => a.to(ScalarType.Float32).GreaterOrEqual(-1.5);

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
