using BenchmarkDotNet.Attributes;
using Liger.Kernels.Ops;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Cpu;

/// <summary>LayerNorm forward + backward on the CPU: Liger's CPU path against eager's (ATen's fused) layer_norm.</summary>
[WarmupCount(5), IterationCount(40)]
public class LayerNormCpuBenchmarks : CpuOpBenchmark
{
    private Tensor x = null!, weight = null!, bias = null!, dy = null!;

    [Params(2048)] public int Rows;
    [Params(4096)] public int Hidden;

    protected override void CreateInputs()
    {
        x = randn(Rows, Hidden).requires_grad_();
        weight = randn(Hidden).requires_grad_();
        bias = randn(Hidden).requires_grad_();
        dy = randn(Rows, Hidden);
    }

    protected override void EagerStep() =>
        autograd.grad([nn.functional.layer_norm(x, [Hidden], weight, bias, 1e-5)], [x, weight, bias], [dy]);

    protected override void LigerStep() =>
        autograd.grad([LigerLayerNormFunction.Apply(x, weight, bias, 1e-5)], [x, weight, bias], [dy]);
}
