using BenchmarkDotNet.Attributes;
using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Cpu;

/// <summary>lm_head + cross-entropy forward + backward on the CPU (fp32): Liger's chunked path against eager linear + cross_entropy.</summary>
[WarmupCount(3), IterationCount(20)]
public class FusedLinearCrossEntropyCpuBenchmarks : CpuOpBenchmark
{
    private Tensor hidden = null!, weight = null!, target = null!;

    [Params(1024)] public int Tokens;
    [Params(512)] public int Hidden;
    [Params(32000)] public int Vocab;

    protected override void CreateInputs()
    {
        hidden = randn(Tokens, Hidden).requires_grad_();
        weight = (randn(Vocab, Hidden).DividedBy(16)).requires_grad_();
        target = randint(0, Vocab, [Tokens], dtype: ScalarType.Int64);
    }

    protected override void EagerStep() =>
        autograd.grad([nn.functional.cross_entropy(nn.functional.linear(hidden, weight), target)], [hidden, weight]);

    protected override void LigerStep() =>
        autograd.grad([LigerFusedLinearCrossEntropyFunction.Apply(hidden, weight, target)], [hidden, weight]);
}
