using BenchmarkDotNet.Attributes;
using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Cpu;

/// <summary>LayerNorm forward + backward on the CPU: Liger's CPU path against eager's (ATen's fused) layer_norm.</summary>
[MemoryDiagnoser(false)]
[WarmupCount(5), IterationCount(40)]
public class LayerNormCpuBenchmarks
{
    private Tensor x = null!, weight = null!, bias = null!, dy = null!;

    [Params(2048)] public int Rows;
    [Params(4096)] public int Hidden;

    [GlobalSetup]
    public void Setup()
    {
        LigerRuntime.CpuExecution = CpuExecution.Torch;
        CpuThreads.Pin();
        manual_seed(0);
        x = randn(Rows, Hidden).requires_grad_();
        weight = randn(Hidden).requires_grad_();
        bias = randn(Hidden).requires_grad_();
        dy = randn(Rows, Hidden);
    }

    [Benchmark(Baseline = true)]
    public void Eager()
    {
        using var scope = NewDisposeScope();
        var y = nn.functional.layer_norm(x, [Hidden], weight, bias, 1e-5);
        autograd.grad([y], [x, weight, bias], [dy]);
    }

    [Benchmark]
    public void Liger()
    {
        using var scope = NewDisposeScope();
        var y = LigerLayerNormFunction.Apply(x, weight, bias, 1e-5);
        autograd.grad([y], [x, weight, bias], [dy]);
    }
}
