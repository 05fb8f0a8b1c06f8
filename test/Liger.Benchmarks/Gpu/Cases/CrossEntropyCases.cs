using Liger.Kernels.Runtime;
using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>CrossEntropy rows.</summary>
internal static partial class GpuBenchmark
{
    private static IEnumerable<GpuCase> CrossEntropyCases()
    {
        const long BT = 8192, V = 128256;
        // The floor: one read of the bf16 logits and one in-place write of the gradient over them.
        yield return new GpuCase("CrossEntropy", $"BT={BT} V={V} bf16", BT * V * 2 * 2, () => CrossEntropyCase(BT, V));
    }

    private static GpuCaseState CrossEntropyCase(long rows, long vocab)
    {
        var logits0 = randn(rows, vocab, dtype: ScalarType.BFloat16, device: CUDA);
        var logits = logits0.clone().requires_grad_();
        // A tenth of the tokens ignored, as padding and prompt tokens are in fine-tuning.
        var target = randint(0, vocab, [rows], dtype: ScalarType.Int64, device: CUDA);
        target.FillWhereInPlace(rand(rows, device: CUDA).LessThan(0.1), -100);
        // Liger writes the gradient over the logits (as the reference does); they are restored between
        // runs, outside the timed region.
        return new GpuCaseState(
            eager: () => { using var s = NewDisposeScope(); autograd.grad([nn.functional.cross_entropy(logits, target)], [logits]); },
            liger: () => { using var s = NewDisposeScope(); autograd.grad([LigerCrossEntropyFunction.Apply(logits, target)], [logits]); },
            reset: () => { using (no_grad()) logits.copy_(logits0); },
            maxDifference: () =>
            {
                using var s = NewDisposeScope();
                using (no_grad()) logits.copy_(logits0);
                var e = autograd.grad([nn.functional.cross_entropy(logits, target)], [logits])[0].to(ScalarType.Float32);
                var l = autograd.grad([LigerCrossEntropyFunction.Apply(logits, target)], [logits])[0].to(ScalarType.Float32);
                using (no_grad()) logits.copy_(logits0);
                return (e - l).abs().max().item<float>();
            });
    }
}
