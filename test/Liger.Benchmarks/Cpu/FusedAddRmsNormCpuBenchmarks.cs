using BenchmarkDotNet.Attributes;
using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Cpu;

/// <summary>
/// Residual add + RMSNorm forward + backward on the CPU, both outputs receiving a gradient (as in a
/// decoder stack): Liger's CPU path against the eager composite it replaces.
/// </summary>
[WarmupCount(5), IterationCount(40)]
public class FusedAddRmsNormCpuBenchmarks : CpuOpBenchmark
{
    private Tensor x = null!, residual = null!, weight = null!, dy = null!, dh = null!;

    [Params(2048)] public int Rows;
    [Params(4096)] public int Hidden;

    protected override void CreateInputs()
    {
        x = randn(Rows, Hidden).requires_grad_();
        residual = randn(Rows, Hidden).requires_grad_();
        weight = randn(Hidden).requires_grad_();
        dy = randn(Rows, Hidden);
        dh = randn(Rows, Hidden);
    }

    protected override void EagerStep()
    {
        var h = residual.Plus(x);
        var y = h * rsqrt(h.Squared().mean([-1L], keepdim: true).Plus(1e-6)) * weight;
        autograd.grad([y, h], [x, residual, weight], [dy, dh]);
    }

    protected override void LigerStep()
    {
        var (y, h) = LigerFusedAddRMSNormFunction.Apply(x, residual, weight);
        autograd.grad([y, h], [x, residual, weight], [dy, dh]);
    }
}
