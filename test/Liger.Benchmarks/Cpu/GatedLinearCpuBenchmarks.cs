using BenchmarkDotNet.Attributes;
using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Cpu;

/// <summary>
/// A gated MLP's product and down_proj, linear(silu(a) * b, W), forward + backward on the CPU (fp32,
/// Llama-3.2-1B's MLP: intermediate 8192, hidden 2048): Liger's function, which does not keep the product and
/// recomputes it in the backward kernel, against eager silu(a) * b then linear.
/// </summary>
[WarmupCount(3), IterationCount(20)]
public class GatedLinearCpuBenchmarks : CpuOpBenchmark
{
    private Tensor a = null!, b = null!, weight = null!, dy = null!;

    [Params(256)] public int Tokens;
    [Params(8192)] public int Intermediate;
    [Params(2048)] public int Hidden;

    protected override void CreateInputs()
    {
        a = randn(Tokens, Intermediate).requires_grad_();
        b = randn(Tokens, Intermediate).requires_grad_();
        weight = (randn(Hidden, Intermediate).DividedBy(Math.Sqrt(Intermediate))).requires_grad_();
        dy = randn(Tokens, Hidden);
    }

    protected override void EagerStep() =>
        autograd.grad([nn.functional.linear(nn.functional.silu(a) * b, weight)], [a, b, weight], [dy]);

    protected override void LigerStep() =>
        autograd.grad([LigerSiLUMulLinearFunction.Apply(a, b, weight)], [a, b, weight], [dy]);
}
