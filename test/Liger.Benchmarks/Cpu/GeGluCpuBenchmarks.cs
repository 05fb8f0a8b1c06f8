using BenchmarkDotNet.Attributes;
using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Cpu;

/// <summary>gelu_tanh(a) * b forward + backward on the CPU: Liger's TorchSharp path against eager.</summary>
[MemoryDiagnoser(false)]
[WarmupCount(5), IterationCount(40)]
public class GeGluCpuBenchmarks
{
    private Tensor a = null!, b = null!, dc = null!;

    [Params(2048)] public int Rows;
    [Params(4096)] public int Intermediate;

    [GlobalSetup]
    public void Setup()
    {
        LigerRuntime.CpuExecution = CpuExecution.Torch;
        CpuThreads.Pin();
        manual_seed(0);
        a = randn(Rows, Intermediate).requires_grad_();
        b = randn(Rows, Intermediate).requires_grad_();
        dc = randn(Rows, Intermediate);
    }

    [Benchmark(Baseline = true)]
    public void Eager()
    {
        using var scope = NewDisposeScope();
        var c = nn.functional.gelu(a, GELU.Approximate.tanh) * b;
        autograd.grad([c], [a, b], [dc]);
    }

    [Benchmark]
    public void Liger()
    {
        using var scope = NewDisposeScope();
        var c = LigerGELUMulFunction.Apply(a, b);
        autograd.grad([c], [a, b], [dc]);
    }
}
