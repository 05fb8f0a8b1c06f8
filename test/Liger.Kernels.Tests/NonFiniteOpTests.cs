using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// NaN and ±inf through the norms, RoPE, the gated activations and the fused linears, on every path:
/// outputs and every input's gradient must be NaN and ±inf exactly where torch's eager reference (the
/// composition each op replaces: Hugging Face's RMSNorm, F.layer_norm, rotate_half, F.silu, F.gelu) has
/// them, with the finite elements close. The reference runs in the inputs' dtype, fp32, not float64: which
/// products are 0·inf depends on it (gelu(−5.5) is 0 in fp32 and −1e-8 in float64, so its product with
/// an infinite b is NaN in fp32 eager torch and in ours). Inputs are fresh random fp32 with odd sizes,
/// poisoned per scenario: scattered (a NaN, a +inf and a −inf at random elements), a row of NaN, a row of
/// +inf and one of −inf, a poisoned parameter, or a poisoned upstream gradient. An infinite upstream
/// gradient makes a reduction over the row (a norm's backward) meet inf − inf, where which elements come
/// out NaN and which ±inf depends on the formula's order (torch's own CPU and CUDA kernels differ): there
/// the non-finite elements must match, not their kind. The same holds for an inf times gelu_tanh(a) or its
/// derivative where tanh saturates: whether fp32 tanh rounds to exactly −1 (a factor of 0, so inf·0 = NaN) or
/// one ulp above it (a tiny factor, so ±inf) depends on the tanh implementation at that element (seen in full
/// runs at seeds 1239663445 and 1317579830 on the emulator, one element of 280 each: ours +inf, torch's NaN).
/// </summary>
[TestClass]
public sealed class NonFiniteOpTests
{
    private static readonly string[] Scenarios = ["scattered", "row-nan", "row-inf", "parameter", "upstream-nan", "upstream-inf"];

    /// <summary>Rows: path, row width (odd: the scalar kernels; 40: the vectorised ones), scenario.</summary>
    public static IEnumerable<object[]> Cases() =>
        from path in TestPaths.Names
        from width in new[] { 37L, 40L }
        from scenario in Scenarios
        select new object[] { path, width, scenario };

    /// <summary>One op's run: inputs (all get gradients unless listed in <paramref name="Constant"/>), the op and its eager reference.</summary>
    private sealed record Case(Func<Tensor[]> Inputs, string[] Names, Func<Tensor[], Tensor[]> Op, Func<Tensor[], Tensor[]> Reference,
        int[] Poisoned, int[] Parameters, string[] Ops, int[]? Constant = null, bool SaturatingActivation = false);

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void RmsNorm_NonFinite_MatchesTorchPattern(string path, long width, string scenario) => Run(path, scenario, new Case(
        () => [NonFinite.Randn([7, width]), NonFinite.Randn([width]).Plus(1.0)], ["x", "weight"],
        t => [LigerRMSNormFunction.Apply(t[0], t[1])],
        t => [RmsNorm64(t[0]).mul(t[1])],
        Poisoned: [0], Parameters: [1], Ops: ["rms_norm_forward", "rms_norm_backward"]));

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void FusedAddRmsNorm_NonFinite_MatchesTorchPattern(string path, long width, string scenario) => Run(path, scenario, new Case(
        () => [NonFinite.Randn([7, width]), NonFinite.Randn([7, width]), NonFinite.Randn([width]).Plus(1.0)], ["x", "residual", "weight"],
        t =>
        {
            var (y, h) = LigerFusedAddRMSNormFunction.Apply(t[0], t[1], t[2]);
            return [y, h];
        },
        t =>
        {
            var h = t[0].Plus(t[1]);
            return [RmsNorm64(h).mul(t[2]), h];
        },
        Poisoned: [0, 1], Parameters: [2], Ops: ["fused_add_rms_norm_forward", "fused_add_rms_norm_backward"]));

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void LayerNorm_NonFinite_MatchesTorchPattern(string path, long width, string scenario) => Run(path, scenario, new Case(
        () => [NonFinite.Randn([7, width]), NonFinite.Randn([width]).Plus(1.0), NonFinite.Randn([width])], ["x", "weight", "bias"],
        t => [LigerLayerNormFunction.Apply(t[0], t[1], t[2])],
        t => [nn.functional.layer_norm(t[0], [t[0].shape[^1]], t[1], t[2], 1e-5)],
        Poisoned: [0], Parameters: [1, 2], Ops: ["layer_norm_forward", "layer_norm_backward"]));

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void SwiGlu_NonFinite_MatchesTorchPattern(string path, long width, string scenario) => Run(path, scenario, new Case(
        () => [NonFinite.Randn([7, width], 3), NonFinite.Randn([7, width])], ["a", "b"],
        t => [LigerSiLUMulFunction.Apply(t[0], t[1])],
        t => [nn.functional.silu(t[0]).mul(t[1])],
        Poisoned: [0, 1], Parameters: [], Ops: ["silu_mul_forward", "silu_mul_backward"]));

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void GeGlu_NonFinite_MatchesTorchPattern(string path, long width, string scenario) => Run(path, scenario, new Case(
        () => [NonFinite.Randn([7, width], 3), NonFinite.Randn([7, width])], ["a", "b"],
        t => [LigerGELUMulFunction.Apply(t[0], t[1])],
        t => [nn.functional.gelu(t[0], TorchSharp.Modules.GELU.Approximate.tanh).mul(t[1])],
        Poisoned: [0, 1], Parameters: [], Ops: ["gelu_mul_forward", "gelu_mul_backward"], SaturatingActivation: true));

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void SiLUMulLinear_NonFinite_MatchesTorchPattern(string path, long width, string scenario) => Run(path, scenario, new Case(
        () => [NonFinite.Randn([7, width], 3), NonFinite.Randn([7, width]), NonFinite.Randn([5, width], 0.3), NonFinite.Randn([5])],
        ["a", "b", "weight", "bias"],
        t => [LigerSiLUMulLinearFunction.Apply(t[0], t[1], t[2], t[3])],
        t => [nn.functional.linear(nn.functional.silu(t[0]).mul(t[1]), t[2], t[3])],
        Poisoned: [0, 1], Parameters: [2, 3], Ops: []));

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void GELUMulLinear_NonFinite_MatchesTorchPattern(string path, long width, string scenario) => Run(path, scenario, new Case(
        () => [NonFinite.Randn([7, width], 3), NonFinite.Randn([7, width]), NonFinite.Randn([5, width], 0.3)], ["a", "b", "weight"],
        t => [LigerGELUMulLinearFunction.Apply(t[0], t[1], t[2])],
        t => [nn.functional.linear(nn.functional.gelu(t[0], TorchSharp.Modules.GELU.Approximate.tanh).mul(t[1]), t[2])],
        Poisoned: [0, 1], Parameters: [2], Ops: [], SaturatingActivation: true));

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void RmsNormLinears_NonFinite_MatchesTorchPattern(string path, long width, string scenario) => Run(path, scenario, new Case(
        () => [NonFinite.Randn([7, width]), NonFinite.Randn([width]).Plus(1.0), NonFinite.Randn([5, width], 0.3), NonFinite.Randn([3, width], 0.3),
            NonFinite.Randn([5])],
        ["x", "normWeight", "weights[0]", "weights[1]", "biases[0]"],
        t => LigerRMSNormLinearsFunction.Apply(t[0], t[1], [t[2], t[3]], [t[4], null]),
        t =>
        {
            var normed = RmsNorm64(t[0]).mul(t[1]);
            return [nn.functional.linear(normed, t[2], t[4]), nn.functional.linear(normed, t[3])];
        },
        Poisoned: [0], Parameters: [1, 2], Ops: []));

    /// <summary>RoPE: q (2, 3, 5, D) and k (2, 1, 5, D) poisoned, cos and sin (5, D) constant (or poisoned as the parameter).</summary>
    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void Rope_NonFinite_MatchesTorchPattern(string path, long width, string scenario)
    {
        long dim = width - width % 2;
        Run(path, scenario, new Case(
            () => [NonFinite.Randn([2, 3, 5, dim]), NonFinite.Randn([2, 1, 5, dim]), NonFinite.Randn([5, dim]), NonFinite.Randn([5, dim])],
            ["q", "k", "cos", "sin"],
            t =>
            {
                var (q, k) = LigerRotaryPosEmb.Apply(t[0], t[1], t[2], t[3]);
                return [q, k];
            },
            t => [t[0].mul(t[2]).Plus(References.RotateHalf(t[0]).mul(t[3])), t[1].mul(t[2]).Plus(References.RotateHalf(t[1]).mul(t[3]))],
            Poisoned: [0, 1], Parameters: [2], Ops: ["rope_forward", "rope_backward"], Constant: [2, 3]));
    }

    /// <summary>Hugging Face's LlamaRMSNorm without the weight: x · rsqrt(mean(x², -1) + 1e-6).</summary>
    private static Tensor RmsNorm64(Tensor x) => x.mul(rsqrt(x.Squared().mean([-1L], keepdim: true).Plus(1e-6)));

    private static void Run(string path, string scenario, Case c)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var random = new Random((int)seed);
        var inputs = c.Inputs();
        var constant = c.Constant ?? [];
        switch (scenario)
        {
            case "scattered":
                foreach (int i in c.Poisoned)
                    NonFinite.PoisonRandom(inputs[i], random);
                break;
            case "row-nan":
                NonFinite.SetRow(inputs[c.Poisoned[0]], random.NextInt64(Rows(inputs[c.Poisoned[0]])), double.NaN);
                break;
            case "row-inf":
                var target = inputs[c.Poisoned[^1]];
                long first = random.NextInt64(Rows(target));
                NonFinite.SetRow(target, first, double.PositiveInfinity);
                NonFinite.SetRow(target, (first + 1 + random.NextInt64(Rows(target) - 1)) % Rows(target), double.NegativeInfinity);
                break;
            case "parameter":
                foreach (int i in c.Parameters.Length > 0 ? c.Parameters : c.Poisoned)
                {
                    // Two distinct elements: an inf written over the NaN would leave a lone inf, whose row reductions
                    // meet inf − inf in an order-dependent way (the upstream-inf case below).
                    long n = inputs[i].numel(), nan = random.NextInt64(n);
                    NonFinite.Set(inputs[i], nan, double.NaN);
                    NonFinite.Set(inputs[i], (nan + 1 + random.NextInt64(n - 1)) % n, double.PositiveInfinity);
                }
                break;
        }
        var leaves = inputs.Select((t, i) => constant.Contains(i) ? t : t.clone().requires_grad_(true)).ToArray();
        var expected = c.Reference(leaves);
        var upstream = expected.Select(e => NonFinite.Randn(e.shape)).ToArray();
        foreach (var u in upstream)
        {
            if (scenario == "upstream-nan")
                NonFinite.Set(u, random.NextInt64(u.numel()), double.NaN);
            if (scenario == "upstream-inf")
            {
                NonFinite.Set(u, random.NextInt64(u.numel()), double.PositiveInfinity);
                NonFinite.Set(u, random.NextInt64(u.numel()), double.NegativeInfinity);
            }
        }
        autograd.backward(expected, upstream);
        string context = Inputs.Describe(seed, path, scenario, string.Join("x", inputs[0].shape));

        using var p = PathScope.Enter(path);
        var ours = inputs.Select((t, i) => constant.Contains(i) ? p.On(t) : p.On(t).requires_grad_(true)).ToArray();
        var outputs = c.Op(ours);
        autograd.backward(outputs, upstream.Select(p.On).ToArray());
        if (c.Ops.Length > 0)
            p.AssertRan(c.Ops);
        // gelu_tanh(a) and its derivative are exactly 0 or a few ulps above it where fp32 tanh saturates, depending on the
        // tanh implementation: times an inf that is NaN or ±inf, so with an inf in the data only the positions are compared.
        bool kindsMayDiffer = c.SaturatingActivation && scenario is not ("row-nan" or "upstream-nan");
        for (int i = 0; i < outputs.Length; i++)
            if (kindsMayDiffer)
                NonFinite.AssertSameNonFinite(outputs[i], expected[i], $"output {i}", context);
            else
                NonFinite.AssertSame(outputs[i], expected[i], $"output {i}", context);
        for (int i = 0; i < inputs.Length; i++)
            if (!constant.Contains(i) && (scenario == "upstream-inf" || kindsMayDiffer))
                NonFinite.AssertSameNonFinite(ours[i].grad!, leaves[i].grad!, $"{c.Names[i]}'s gradient", context);
            else if (!constant.Contains(i))
                NonFinite.AssertSame(ours[i].grad!, leaves[i].grad!, $"{c.Names[i]}'s gradient", context);
    }

    private static long Rows(Tensor t) => t.numel() / t.shape[^1];
}
