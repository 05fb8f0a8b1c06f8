using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// Zero-size inputs on every path: rows of no feature (H = 0) and no rows at all give torch's eager
/// result, an empty output and empty (or zero) gradients of the right shapes, not libtorch's reshape error.
/// </summary>
[TestClass]
public sealed class EmptyInputTests
{
    /// <summary>Rows: path, shape of x ("3x0": rows of no feature; "0x7" and "2x0x5": no rows).</summary>
    public static IEnumerable<object[]> Cases() =>
        from path in TestPaths.Names
        from shape in new[] { "3x0", "2x3x0", "0x7", "2x0x5" }
        select new object[] { path, shape };

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void RmsNorm_Empty_MatchesTorch(string path, string shape) => Check(path, shape,
        (x, h) => [NonFinite.Randn([h]).Plus(1.0)],
        t => [LigerRMSNormFunction.Apply(t[0], t[1])],
        t => [t[0].mul(rsqrt(t[0].Squared().mean([-1L], keepdim: true).Plus(1e-6))).mul(t[1])]);

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void FusedAddRmsNorm_Empty_MatchesTorch(string path, string shape) => Check(path, shape,
        (x, h) => [NonFinite.Randn(x.shape), NonFinite.Randn([h]).Plus(1.0)],
        t =>
        {
            var (y, r) = LigerFusedAddRMSNormFunction.Apply(t[0], t[1], t[2]);
            return [y, r];
        },
        t =>
        {
            var r = t[0].Plus(t[1]);
            return [r.mul(rsqrt(r.Squared().mean([-1L], keepdim: true).Plus(1e-6))).mul(t[2]), r];
        });

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void LayerNorm_Empty_MatchesTorch(string path, string shape) => Check(path, shape,
        (x, h) => [NonFinite.Randn([h]), NonFinite.Randn([h])],
        t => [LigerLayerNormFunction.Apply(t[0], t[1], t[2])],
        t => [nn.functional.layer_norm(t[0], [t[0].shape[^1]], t[1], t[2], 1e-5)]);

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void RmsNormLinears_Empty_MatchesTorch(string path, string shape) => Check(path, shape,
        (x, h) => [NonFinite.Randn([h]).Plus(1.0), NonFinite.Randn([4, h]), NonFinite.Randn([4])],
        t => LigerRMSNormLinearsFunction.Apply(t[0], t[1], [t[2]], [t[3]]),
        t => [nn.functional.linear(t[0].mul(rsqrt(t[0].Squared().mean([-1L], keepdim: true).Plus(1e-6))).mul(t[1]), t[2], t[3])]);

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void SwiGlu_Empty_MatchesTorch(string path, string shape) => Check(path, shape,
        (x, h) => [NonFinite.Randn(x.shape)],
        t => [LigerSiLUMulFunction.Apply(t[0], t[1])],
        t => [nn.functional.silu(t[0]).mul(t[1])]);

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void GeGlu_Empty_MatchesTorch(string path, string shape) => Check(path, shape,
        (x, h) => [NonFinite.Randn(x.shape)],
        t => [LigerGELUMulFunction.Apply(t[0], t[1])],
        t => [nn.functional.gelu(t[0], TorchSharp.Modules.GELU.Approximate.tanh).mul(t[1])]);

    /// <summary>Cross-entropy and the fused linear one over no tokens: the sum is 0, None is empty (Mean over
    /// nothing counted is 0 by this library's rule, where torch divides 0 by 0).</summary>
    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void CrossEntropy_NoTokens_MatchesTorch(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        using var p = PathScope.Enter(path);
        foreach (var reduction in new[] { CrossEntropyReduction.Sum, CrossEntropyReduction.None, CrossEntropyReduction.Mean })
        {
            string context = Inputs.Describe(seed, path, reduction);
            var logits = p.On(NonFinite.Randn([0, 9])).requires_grad_(true);
            var target = p.On(empty(0, dtype: ScalarType.Int64));
            var loss = LigerCrossEntropyFunction.Apply(logits, target, new() { Reduction = reduction, InPlaceGradient = false });
            loss.sum().backward();
            var hidden = p.On(NonFinite.Randn([0, 5])).requires_grad_(true);
            var weight = p.On(NonFinite.Randn([9, 5])).requires_grad_(true);
            var fused = LigerFusedLinearCrossEntropyFunction.Apply(hidden, weight, target, null,
                new() { CrossEntropy = new() { Reduction = reduction } });
            fused.sum().backward();

            var eager = nn.functional.cross_entropy(NonFinite.Randn([0, 9]), empty(0, dtype: ScalarType.Int64),
                reduction: reduction == CrossEntropyReduction.None ? nn.Reduction.None : nn.Reduction.Sum);
            foreach (var (ours, name) in new[] { (loss, "loss"), (fused, "fused loss") })
                NonFinite.AssertSame(ours, eager, name, context);
            NonFinite.AssertSame(logits.grad!, zeros(0, 9), "logits' gradient", context);
            NonFinite.AssertSame(hidden.grad!, zeros(0, 5), "hidden's gradient", context);
            NonFinite.AssertSame(weight.grad!, zeros(9, 5), "weight's gradient", context);
        }
    }

    /// <summary>
    /// Runs the op and torch's eager composition on x of <paramref name="shape"/> plus the inputs
    /// <paramref name="more"/> makes (given x and H), backpropagates random upstream gradients through
    /// both, and compares every output and gradient (shape and values).
    /// </summary>
    private static void Check(string path, string shape, Func<Tensor, long, Tensor[]> more, Func<Tensor[], Tensor[]> op,
        Func<Tensor[], Tensor[]> reference)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var x = NonFinite.Randn(Inputs.Shape(shape));
        Tensor[] inputs = [x, .. more(x, x.shape[^1])];
        string context = Inputs.Describe(seed, path, shape);
        var leaves = inputs.Select(t => t.clone().requires_grad_(true)).ToArray();
        var expected = reference(leaves);
        var upstream = expected.Select(e => NonFinite.Randn(e.shape)).ToArray();
        autograd.backward(expected, upstream);

        using var p = PathScope.Enter(path);
        var ours = inputs.Select(t => p.On(t).requires_grad_(true)).ToArray();
        var outputs = op(ours);
        autograd.backward(outputs, upstream.Select(p.On).ToArray());
        Assert.HasCount(expected.Length, outputs, context);
        for (int i = 0; i < outputs.Length; i++)
            NonFinite.AssertSame(outputs[i], expected[i], $"output {i}", context);
        for (int i = 0; i < inputs.Length; i++)
            NonFinite.AssertSame(ours[i].grad!, leaves[i].grad!, $"input {i}'s gradient", context);
    }
}
