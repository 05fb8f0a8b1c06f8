using BenchmarkDotNet.Attributes;
using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Cpu;

/// <summary>RMSNorm forward + backward on the CPU: Liger's TorchSharp path against eager.</summary>
[WarmupCount(5), IterationCount(40)]
public class RmsNormCpuBenchmarks : CpuOpBenchmark
{
    private Tensor x = null!, weight = null!, dy = null!;

    [Params(2048)] public int Rows;
    [Params(4096)] public int Hidden;

    protected override void CreateInputs()
    {
        x = randn(Rows, Hidden).requires_grad_();
        weight = randn(Hidden).requires_grad_();
        dy = randn(Rows, Hidden);
    }

    protected override void EagerStep()
    {
        var y = x * rsqrt(x.Squared().mean([-1L], keepdim: true).Plus(1e-6)) * weight;
        autograd.grad([y], [x, weight], [dy]);
    }

    protected override void LigerStep() => autograd.grad([LigerRMSNormFunction.Apply(x, weight)], [x, weight], [dy]);
}
