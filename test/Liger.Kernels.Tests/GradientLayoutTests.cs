using Liger.Kernels.Runtime;
using Liger.Kernels.Losses;
using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// Every Liger autograd op takes whatever upstream gradient libtorch hands its backward: stride 0 (from sum() and
/// expand), transposed, sliced (strided, with a storage offset), and another floating dtype (libtorch casts it
/// to the output's). Each op's gradients must be bit for bit those of a backward fed the same values densely;
/// before the fix, fused linear cross-entropy with reduction None aborted the process on a sum().
/// </summary>
[TestClass]
public sealed class GradientLayoutTests
{
    /// <summary>The ops, by name (the inplace variants write dx into the incoming gradient's buffer; bf16 ones take bf16 inputs).</summary>
    public static readonly string[] OpNames =
    [
        "rms_norm", "rms_norm-inplace", "rms_norm-bf16", "fused_add_rms_norm", "layer_norm", "rope", "rope-inplace", "swiglu", "swiglu-inplace",
        "geglu", "silu_mul_linear", "gelu_mul_linear", "rms_norm_linears", "ce-none", "ce-mean", "ce-sum",
        "flce-none", "flce-none-bf16", "flce-mean", "flce-sum", "dpo", "orpo", "cpo", "simpo", "kto",
    ];

    /// <summary>How the upstream gradient is laid out.</summary>
    public static readonly string[] LayoutNames = ["sum", "expanded", "transposed", "sliced", "float64"];

    /// <summary>
    /// Rows: path, op, layout. On the emulator the cross-entropy family (4 to 11 s a case there) runs the stride-0
    /// and the strided-with-offset layouts only: every layout reaches the kernels through the same shared entry.
    /// </summary>
    public static IEnumerable<object[]> Cases() =>
        from path in TestPaths.Names
        from op in OpNames
        from layout in LayoutNames
        where !(TestPaths.IsSlow(path) && CrossEntropyFamily(op) && layout is not ("sum" or "sliced"))
        select new object[] { path, op, layout };

    private static bool CrossEntropyFamily(string op) =>
        op.StartsWith("ce-", StringComparison.Ordinal) || op.StartsWith("flce-", StringComparison.Ordinal) || op is "dpo" or "orpo" or "cpo" or "simpo" or "kto";

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void Backward_TakesAnyUpstreamLayout_AndMatchesADenseGradient(string path, string op, string layout)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        string context = Inputs.Describe(seed, path, op, layout);
        using var p = PathScope.Enter(path);
        var (inputs, forward) = Case(op, p);

        var leaves = Leaves(inputs);
        var outputs = forward(leaves);
        var upstream = outputs.Select(o => Upstream(layout, o)).ToArray();
        if (layout == "sum")
            outputs.Select(o => o.sum()).Aggregate((a, b) => a.Plus(b)).backward();
        else
            autograd.backward(outputs, upstream.Select(u => u.Gradient).ToArray());

        var denseLeaves = Leaves(inputs);
        // A fresh dense copy each: an in-place backward writes into it.
        autograd.backward(forward(denseLeaves), upstream.Select(u => u.Dense.clone()).ToArray());

        for (int i = 0; i < upstream.Length; i++)
            Assert.IsTrue(upstream[i].Unusual(), $"output {i}: the gradient built for '{layout}' must not be dense of the output's dtype. {context}");
        int compared = 0;
        for (int i = 0; i < leaves.Length; i++)
        {
            if (!leaves[i].requires_grad)
                continue;
            Assert.IsNotNull(denseLeaves[i].grad, $"input {i} got no gradient from the dense run. {context}");
            Assert.IsNotNull(leaves[i].grad, $"input {i} got no gradient with the '{layout}' upstream gradient. {context}");
            TensorAssert.BitwiseEqual(denseLeaves[i].grad!, leaves[i].grad!, $"gradient of input {i}", context);
            compared++;
        }
        Assert.IsGreaterThan(0, compared, context);
        p.AssertRan();
    }

    /// <summary>The reported case against float64: FLCE with reduction None, summed, on every path.</summary>
    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void FusedLinearCrossEntropyNone_Summed_MatchesFloat64Reference(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        string context = Inputs.Describe(seed, path);
        long[] tokens = [3, 5];
        var hidden = randn([.. tokens, 8]);
        var weight = randn(13, 8);
        var target = CrossEntropyTests.RandomTargets(tokens, 13, -100, 0.2);
        var ce = new CrossEntropyOptions { Reduction = CrossEntropyReduction.None };
        var expected = References.FusedLinearCrossEntropy(hidden, weight, null, target, ce, ones(tokens));

        using var p = PathScope.Enter(path);
        var x = p.On(hidden).requires_grad_(true);
        var w = p.On(weight).requires_grad_(true);
        var loss = LigerFusedLinearCrossEntropyFunction.Apply(x, w, p.On(target), null, new() { CrossEntropy = ce, ChunkBytes = 4 * 13 * 4 });
        loss.sum().backward();
        p.AssertRan("cross_entropy_forward");

        var tolerance = Tolerance.VersusFloat64(ScalarType.Float32) with { Atol = 1e-5 };
        TensorAssert.Close(x.grad!, expected.GradHidden!, tolerance, "hidden grad", context);
        TensorAssert.Close(w.grad!, expected.GradWeight!, tolerance, "weight grad", context);
    }

    private static Tensor[] Leaves(Tensor[] inputs) =>
        inputs.Select(t => t.detach().clone().requires_grad_(t.requires_grad)).ToArray();

    /// <summary>An upstream gradient in the layout asked for, and the same values dense in the output's dtype.</summary>
    private sealed record UpstreamGradient(Tensor Gradient, Tensor Dense, string Layout, ScalarType OutputDtype)
    {
        /// <summary>Whether the gradient really differs from a dense one (so the case tests something).</summary>
        internal bool Unusual() => Layout switch
        {
            "sum" => true,   // sum()'s backward hands an expanded gradient; its values are Dense
            "float64" => Gradient.dtype != OutputDtype,
            "expanded" when Gradient.dim() > 0 => Gradient.stride().Contains(0L),
            _ => !Gradient.is_contiguous() || Gradient.storage_offset() != 0,
        };
    }

    private static UpstreamGradient Upstream(string layout, Tensor output)
    {
        var shape = output.shape;
        var (dtype, device) = (output.dtype, output.device);
        int rank = shape.Length;
        Tensor gradient = layout switch
        {
            "sum" => ones(shape, dtype: dtype, device: device),
            "float64" => randn(shape, dtype: ScalarType.Float64, device: device),
            // A scalar has no layout: a view at a storage offset is what sets it apart.
            _ when rank == 0 => randn(5, dtype: dtype, device: device)[3],
            "expanded" => randn([.. Enumerable.Repeat(1L, rank - 1), shape[^1]], dtype: dtype, device: device).expand(shape),
            "transposed" when rank == 1 => randn(2 * shape[0], dtype: dtype, device: device).slice(0, 0, 2 * shape[0], 2),
            "transposed" => randn([.. shape.Reverse()], dtype: dtype, device: device).permute([.. Enumerable.Range(0, rank).Reverse().Select(i => (long)i)]),
            "sliced" => randn([.. shape[..^1], 2 * shape[^1] + 1], dtype: dtype, device: device).slice(-1, 1, 2 * shape[^1] + 1, 2),
            _ => throw new ArgumentException($"Unknown layout '{layout}'.", nameof(layout)),
        };
        return new UpstreamGradient(gradient, gradient.to(dtype).contiguous().clone(), layout, dtype);
    }

    /// <summary>The op's inputs (those that require grad get gradients compared) and its forward, by name.</summary>
    private static (Tensor[] Inputs, Func<Tensor[], Tensor[]> Forward) Case(string op, PathScope p)
    {
        var dtype = op.EndsWith("-bf16", StringComparison.Ordinal) ? ScalarType.BFloat16 : ScalarType.Float32;
        op = op.Replace("-bf16", "", StringComparison.Ordinal);
        Tensor R(params long[] shape) => p.On(randn(shape).to(dtype));
        Tensor G(params long[] shape) => R(shape).requires_grad_(true);
        const long vocab = 11;
        switch (op)
        {
            case "rms_norm":
            case "rms_norm-inplace":
                return ([G(2, 3, 16), G(16)], t => [LigerRMSNormFunction.Apply(t[0], t[1], inPlaceBackward: op.EndsWith("inplace"))]);
            case "fused_add_rms_norm":
                return ([G(2, 3, 16), G(2, 3, 16), G(16)], t =>
                {
                    var (y, h) = LigerFusedAddRMSNormFunction.Apply(t[0], t[1], t[2]);
                    return [y, h];
                });
            case "layer_norm":
                return ([G(5, 13), G(13), G(13)], t => [LigerLayerNormFunction.Apply(t[0], t[1], t[2])]);
            case "rope":
            case "rope-inplace":
            {
                var (cos, sin) = RotaryEmbedding.CosSin(p.On(Ranges.Int64(0, 5).unsqueeze(0)), 8, 10000.0, ScalarType.Float32);
                return ([G(1, 2, 5, 8), G(1, 1, 5, 8), cos, sin], t =>
                {
                    var (q, k) = LigerRotaryPosEmb.Apply(t[0], t[1], t[2], t[3], inPlaceBackward: op.EndsWith("inplace"));
                    return [q, k];
                });
            }
            case "swiglu":
            case "swiglu-inplace":
                return ([G(2, 3, 24), G(2, 3, 24)], t => [LigerSiLUMulFunction.Apply(t[0], t[1], inPlaceBackward: op.EndsWith("inplace"))]);
            case "geglu":
                return ([G(7, 9), G(7, 9)], t => [LigerGELUMulFunction.Apply(t[0], t[1])]);
            case "silu_mul_linear":
                return ([G(2, 3, 12), G(2, 3, 12), G(7, 12), G(7)], t => [LigerSiLUMulLinearFunction.Apply(t[0], t[1], t[2], t[3])]);
            case "gelu_mul_linear":
                return ([G(5, 12), G(5, 12), G(7, 12)], t => [LigerGELUMulLinearFunction.Apply(t[0], t[1], t[2])]);
            case "rms_norm_linears":
                return ([G(2, 3, 16), G(16), G(7, 16), G(5, 16), G(5)], t => LigerRMSNormLinearsFunction.Apply(t[0], t[1], [t[2], t[3]], [null, t[4]]));
            case "ce-none" or "ce-mean" or "ce-sum":
            {
                var target = p.On(CrossEntropyTests.RandomTargets([3, 4], vocab, -100, 0.2));
                var options = new CrossEntropyOptions { Reduction = Reduction(op) };
                return ([G(3, 4, vocab), target], t => [LigerCrossEntropyFunction.Apply(t[0], t[1], options)]);
            }
            case "flce-none" or "flce-mean" or "flce-sum":
            {
                var target = p.On(CrossEntropyTests.RandomTargets([3, 4], vocab, -100, 0.2));
                // Chunks of 5 tokens: 5, 5 and 2.
                var options = new FusedLinearCrossEntropyOptions { CrossEntropy = new() { Reduction = Reduction(op) }, ChunkBytes = 5 * vocab * 4 };
                return ([G(3, 4, 8), G(vocab, 8), target, G(vocab)], t => [LigerFusedLinearCrossEntropyFunction.Apply(t[0], t[1], t[2], t[3], options)]);
            }
            case "kto":
            {
                var target = p.On(PreferenceLossTests.Targets(3, 5, vocab));
                var labels = p.On(tensor(new[] { true, false, true }));
                var reference = PreferenceReference.FromModel(R(3, 5, 8), R(vocab, 8));
                return ([G(3, 5, 8), G(vocab, 8), target, labels], t => [LigerFusedLinearKtoLoss.Apply(t[0], t[1], t[2], t[3], reference).Loss]);
            }
            default:
            {
                var target = p.On(PreferenceLossTests.Targets(4, 5, vocab));
                PreferenceLossOptions options = op switch
                {
                    "orpo" => new OrpoLossOptions { ComputeNllLoss = true },
                    "cpo" => new CpoLossOptions(),
                    "simpo" => new SimPoLossOptions(),
                    "dpo" => new DpoLossOptions(),
                    _ => throw new ArgumentException($"Unknown op '{op}'.", nameof(op)),
                };
                var reference = op == "dpo" ? PreferenceReference.FromModel(R(4, 5, 8), R(vocab, 8)) : null;
                return ([G(4, 5, 8), G(vocab, 8), target, G(vocab)], t => [LigerFusedLinearPreferenceLoss.Apply(t[0], t[1], t[2], options, t[3], reference).Loss]);
            }
        }
    }

    private static CrossEntropyReduction Reduction(string op) => op.Split('-')[1] switch
    {
        "none" => CrossEntropyReduction.None,
        "sum" => CrossEntropyReduction.Sum,
        _ => CrossEntropyReduction.Mean,
    };
}
