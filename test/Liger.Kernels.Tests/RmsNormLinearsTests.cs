using Liger.Kernels.Runtime;
using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// LigerRMSNormLinearsFunction (RMSNorm and the projections after it, the normalised x recomputed in the backward):
/// against a float64 eager reference, and bit for bit against the unfused pair (LigerRMSNormFunction, then
/// nn.functional.linear per layer) on the same path: the outputs, the layers' weight and bias gradients (which read
/// the recomputed normalised x), and dx and the norm's weight gradient (the projections' input gradients summed as
/// autograd sums them).
/// </summary>
[TestClass]
public sealed class RmsNormLinearsTests
{
    /// <summary>Rows: path, shape of x, out features of each layer ("5,3,3"), casting mode, dtype.</summary>
    public static IEnumerable<object[]> Cases()
    {
        foreach (var path in TestPaths.Names)
        {
            string[] shapes = TestPaths.IsSlow(path) ? ["1x8", "3x37", "2x3x64"] : ["1x8", "3x37", "2x3x64", "5x7x256"];
            foreach (var shape in shapes)
                foreach (var (layers, mode) in new[] { ("6", RmsNormCastingMode.Llama), ("5,3,3", RmsNormCastingMode.Llama),
                             ("4,4", RmsNormCastingMode.Gemma), ("7,2", RmsNormCastingMode.None) })
                    foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
                        yield return [path, shape, layers, mode, dtype];
        }
    }

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void MatchesFloat64ReferenceAndTheUnfusedPair(string path, string shape, string layers, RmsNormCastingMode mode, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var xShape = Inputs.Shape(shape);
        long features = xShape[^1];
        int[] outs = layers.Split(',').Select(int.Parse).ToArray();
        double offset = mode == RmsNormCastingMode.Gemma ? 1.0 : 0.0;
        const double eps = 1e-6;
        var x = Inputs.Randn(xShape, dtype, 2.0, 0.5);
        var normWeight = Inputs.Randn([features], dtype, 0.5, mode == RmsNormCastingMode.Gemma ? 0.0 : 1.0);
        var weights = outs.Select(o => Inputs.Randn([o, features], dtype, 1.0 / Math.Sqrt(features))).ToArray();
        var dys = outs.Select(o => Inputs.Randn([.. xShape[..^1], o], dtype)).ToArray();
        foreach (bool withBias in new[] { false, true })
        {
            var biases = outs.Select((o, i) => withBias && i != 1 ? Inputs.Randn([o], dtype) : null).ToArray(); // layer 1 never has one
            string context = Inputs.Describe(seed, path, shape, layers, mode, dtype, $"bias {withBias}");
            var fused = Run(path, fusedOp: true, x, normWeight, weights, biases, dys, eps, offset, mode);
            var pair = Run(path, fusedOp: false, x, normWeight, weights, biases, dys, eps, offset, mode);
            for (int i = 0; i < outs.Length; i++)
            {
                TensorAssert.BitwiseEqual(pair.Outputs[i], fused.Outputs[i], $"output {i} vs the unfused pair", context);
                TensorAssert.BitwiseEqual(pair.DWeights[i], fused.DWeights[i], $"dW{i} vs the unfused pair", context);
                if (biases[i] is not null)
                    TensorAssert.BitwiseEqual(pair.DBiases[i]!, fused.DBiases[i]!, $"dbias{i} vs the unfused pair", context);
                else
                    Assert.IsNull(fused.DBiases[i], $"no gradient for a missing bias {i}. {context}");
            }
            TensorAssert.BitwiseEqual(pair.Dx, fused.Dx, "dx vs the unfused pair", context);
            TensorAssert.BitwiseEqual(pair.DNormWeight, fused.DNormWeight, "d norm weight vs the unfused pair", context);

            // float64 eager reference
            var x64 = Leaf64(x);
            var w64 = Leaf64(normWeight);
            var rstd = rsqrt(x64.Squared().mean([-1L], keepdim: true).Plus(eps));
            var normed = x64 * rstd * (w64.Plus(offset));
            var weights64 = weights.Select(Leaf64).ToArray();
            var biases64 = biases.Select(b => b is null ? null : Leaf64(b)).ToArray();
            var outputs64 = weights64.Select((w, i) => nn.functional.linear(normed, w, biases64[i])).ToArray();
            autograd.backward(outputs64, dys.Select(d => d.to(ScalarType.Float64)).ToArray());
            var tolerance = Tolerance.VersusFloat64(dtype);
            var normedAbs = normed.detach().abs().reshape(-1, features);
            for (int i = 0; i < outs.Length; i++)
            {
                var dyAbs = dys[i].to(ScalarType.Float64).abs().reshape(-1, outs[i]);
                TensorAssert.CloseToSums(fused.Outputs[i], outputs64[i], tolerance, $"output {i}", context,
                    normedAbs.matmul(weights64[i].detach().abs().t()).view(outputs64[i].shape));
                TensorAssert.CloseToSums(fused.DWeights[i], weights64[i].grad!, tolerance, $"dW{i}", context, dyAbs.t().matmul(normedAbs));
                if (biases64[i] is { } b64)
                    TensorAssert.CloseToSums(fused.DBiases[i]!, b64.grad!, tolerance, $"dbias{i}", context, dyAbs.sum([0L]));
            }
            // dx and the norm's dW: the sizes of the terms they sum are those of dnormed = Σ dy_i W_i, scaled by rstd
            var dNormedTerms = outs.Select((o, i) => dys[i].to(ScalarType.Float64).abs().reshape(-1, o).matmul(weights64[i].detach().abs()))
                .Aggregate((s, t) => s.Plus(t)).view(xShape);
            TensorAssert.Close(fused.Dx, x64.grad!, tolerance, "dx", context,
                scale: (dNormedTerms * rstd.detach() * (w64.detach().Plus(offset)).abs()));
            TensorAssert.Close(fused.DNormWeight, w64.grad!, tolerance, "d norm weight", context,
                termMagnitude: (dNormedTerms * (x64.detach() * rstd.detach()).abs()).reshape(-1, features).sum([0L]));
        }
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void UnusedOutput_GetsNoGradientAndTheOthersStillDo(string path)
    {
        using var scope = NewDisposeScope();
        using var p = PathScope.Enter(path);
        var x = randn(3, 16, device: p.Device).requires_grad_(true);
        var norm = ones(16, device: p.Device).requires_grad_(true);
        var (w0, w1) = (randn(4, 16, device: p.Device).requires_grad_(true), randn(5, 16, device: p.Device).requires_grad_(true));
        var outputs = LigerRMSNormLinearsFunction.Apply(x, norm, [w0, w1]);
        outputs[1].sum().backward();
        Assert.IsNull(w0.grad, "the unused layer's weight gets no gradient");
        Assert.IsNotNull(w1.grad, "the used layer's weight gets one");
        var expected = nn.functional.linear(LigerRMSNormFunction.Apply(x.detach(), norm.detach()), w1.detach()).sum();
        Assert.AreEqual(expected.item<float>(), outputs[1].sum().item<float>(), 1e-4f, "output 1");
        TensorAssert.AssertFinite(x.grad!, "dx", path);
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void BadInputs_ThrowArgumentExceptionsNamingTheArgument(string path)
    {
        using var scope = NewDisposeScope();
        using var p = PathScope.Enter(path);
        var device = p.Device;
        var x = randn(4, 6, device: device);
        var norm = ones(6, device: device);
        var w = randn(3, 6, device: device);
        RmsNormTests.ExpectArgument<ArgumentException>("weights", () => LigerRMSNormLinearsFunction.Apply(x, norm, []), "no layers");
        RmsNormTests.ExpectArgument<ArgumentException>("weights", () => LigerRMSNormLinearsFunction.Apply(x, norm, [w, randn(3, 7, device: device)]), "second weight of other in-features");
        RmsNormTests.ExpectArgument<ArgumentException>("weights[0]", () => LigerRMSNormLinearsFunction.Apply(x, norm, [w.to(ScalarType.BFloat16)]), "bf16 weight for fp32 x");
        RmsNormTests.ExpectArgument<ArgumentException>("biases", () => LigerRMSNormLinearsFunction.Apply(x, norm, [w], [randn(4, device: device)]), "bias of other length");
        RmsNormTests.ExpectArgument<ArgumentException>("biases", () => LigerRMSNormLinearsFunction.Apply(x, norm, [w], [null, null]), "two biases for one weight");
        RmsNormTests.ExpectArgument<ArgumentException>("weight", () => LigerRMSNormLinearsFunction.Apply(x, ones(5, device: device), [w]), "norm weight of other size");
        RmsNormTests.ExpectArgument<ArgumentException>("x", () => LigerRMSNormLinearsFunction.Apply(randn(6, 4, device: device).t(), norm, [w]), "transposed x");
        if (path == TestPaths.Cuda)
            RmsNormTests.ExpectArgument<ArgumentException>("weights[0]", () => LigerRMSNormLinearsFunction.Apply(x, norm, [w.cpu()]), "weight on the CPU");
        Assert.IsEmpty(p.Events, "no op may run on rejected arguments");
    }

    private sealed record Result(Tensor[] Outputs, Tensor Dx, Tensor DNormWeight, Tensor[] DWeights, Tensor?[] DBiases);

    private static Result Run(string path, bool fusedOp, Tensor x, Tensor normWeight, Tensor[] weights, Tensor?[] biases, Tensor[] dys,
        double eps, double offset, RmsNormCastingMode mode)
    {
        using var p = PathScope.Enter(path);
        var xd = p.On(x).requires_grad_(true);
        var nd = p.On(normWeight).requires_grad_(true);
        var wd = weights.Select(w => p.On(w).requires_grad_(true)).ToArray();
        var bd = biases.Select(b => b is null ? null : p.On(b).requires_grad_(true)).ToArray();
        Tensor[] outputs;
        if (fusedOp)
            outputs = LigerRMSNormLinearsFunction.Apply(xd, nd, wd, bd, eps, offset, mode);
        else
        {
            var normed = LigerRMSNormFunction.Apply(xd, nd, eps, offset, mode);
            outputs = wd.Select((w, i) => nn.functional.linear(normed, w, bd[i])).ToArray();
        }
        autograd.backward(outputs, dys.Select(p.On).ToArray());
        p.AssertRan("rms_norm_forward", "rms_norm_backward");
        return new Result(outputs.Select(o => o.detach().cpu()).ToArray(), xd.grad!.cpu(), nd.grad!.cpu(),
            wd.Select(w => w.grad!.cpu()).ToArray(), bd.Select(b => b?.grad?.cpu()).ToArray());
    }

    private static Tensor Leaf64(Tensor t) => t.detach().cpu().to(ScalarType.Float64).requires_grad_(true);
}
