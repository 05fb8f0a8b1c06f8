using BenchmarkDotNet.Attributes;
using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Cpu;

/// <summary>
/// Cross-entropy forward + backward on the CPU (fp32): Liger's fused CPU path against eager
/// cross_entropy. Liger writes the gradient over the logits, so after the first call they hold
/// gradients; the time of either path does not depend on the values.
/// </summary>
[WarmupCount(5), IterationCount(40)]
public class CrossEntropyCpuBenchmarks : CpuOpBenchmark
{
    private Tensor logits = null!, target = null!;

    [Params(1024)] public int Rows;
    [Params(32000)] public int Vocab;

    protected override void CreateInputs()
    {
        logits = randn(Rows, Vocab).requires_grad_();
        target = randint(0, Vocab, [Rows], dtype: ScalarType.Int64);
        target[..(Rows / 10)] = tensor(-100L);
    }

    protected override void EagerStep() => autograd.grad([nn.functional.cross_entropy(logits, target)], [logits]);

    protected override void LigerStep() => autograd.grad([LigerCrossEntropyFunction.Apply(logits, target)], [logits]);
}
