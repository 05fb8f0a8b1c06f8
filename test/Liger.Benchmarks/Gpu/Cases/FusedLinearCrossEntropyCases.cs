using Liger.Kernels.Runtime;
using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>FusedLinearCrossEntropy rows.</summary>
internal static partial class GpuBenchmark
{
    private static IEnumerable<GpuCase> FusedLinearCrossEntropyCases()
    {
        const long BT = 8192, H = 4096, V = 128256;
        // Matmul-bound: the byte floor (hidden, weight and their gradients once) is far below the time.
        yield return new GpuCase("FusedLinearCE", $"BT={BT} H={H} V={V} bf16", (BT * H + V * H) * 2 * 2,
            () => FusedLinearCrossEntropyCase(BT, H, V));
    }

    private static GpuCaseState FusedLinearCrossEntropyCase(long tokens, long size, long vocab)
    {
        var hidden = (randn(tokens, size, dtype: ScalarType.BFloat16, device: CUDA).DividedBy(4)).requires_grad_();
        var weight = (randn(vocab, size, dtype: ScalarType.BFloat16, device: CUDA).DividedBy(64)).requires_grad_();
        var target = randint(0, vocab, [tokens], dtype: ScalarType.Int64, device: CUDA);
        target.FillWhereInPlace(rand(tokens, device: CUDA).LessThan(0.1), -100);
        // Eager as Hugging Face's causal LMs compute the loss (and as the anchor measured it): bf16 logits,
        // upcast to float32 for the cross-entropy.
        Tensor[] Eager()
        {
            var logits = nn.functional.linear(hidden, weight).to(ScalarType.Float32);
            return autograd.grad([nn.functional.cross_entropy(logits, target)], [hidden, weight]).ToArray();
        }
        Tensor[] Liger() =>
            autograd.grad([LigerFusedLinearCrossEntropyFunction.Apply(hidden, weight, target)], [hidden, weight]).ToArray();
        return new GpuCaseState(
            eager: () => { using var s = NewDisposeScope(); Eager(); },
            liger: () => { using var s = NewDisposeScope(); Liger(); },
            maxDifference: () =>
            {
                using var s = NewDisposeScope();
                var e = Eager();
                var l = Liger();
                // relative to the gradient's scale: the weight's gradient is tiny in absolute terms
                return Math.Max(Relative(e[0], l[0]), Relative(e[1], l[1]));
            });
    }

    private static double Relative(Tensor expected, Tensor actual)
    {
        using var s = NewDisposeScope();
        var e = expected.to(ScalarType.Float32);
        return ((e - actual.to(ScalarType.Float32)).abs().max() / e.abs().max()).item<float>();
    }
}
