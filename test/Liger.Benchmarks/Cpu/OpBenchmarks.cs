using BenchmarkDotNet.Attributes;
using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Cpu;

/// <summary>
/// A fixed intra-op thread count (4, or fewer cores): on a shared many-core VM, libtorch's default of
/// one thread per core made run-to-run spread larger than the differences being measured.
/// </summary>
internal static class CpuThreads
{
    internal static void Pin() => set_num_threads(Math.Min(4, Environment.ProcessorCount));
}

/// <summary>
/// Forward + backward on the CPU: Liger's TorchSharp path against the eager composite it replaces.
/// The claim under test: no Liger op is slower than eager on the CPU.
/// </summary>
[MemoryDiagnoser(false)]
[WarmupCount(5), IterationCount(40)]
public class RmsNormCpuBenchmarks
{
    private Tensor x = null!, weight = null!, dy = null!;

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
        dy = randn(Rows, Hidden);
    }

    [Benchmark(Baseline = true)]
    public void Eager()
    {
        using var scope = NewDisposeScope();
        var y = x * rsqrt(x.Squared().mean([-1L], keepdim: true).Plus(1e-6)) * weight;
        autograd.grad([y], [x, weight], [dy]);
    }

    [Benchmark]
    public void Liger()
    {
        using var scope = NewDisposeScope();
        var y = LigerRMSNormFunction.Apply(x, weight);
        autograd.grad([y], [x, weight], [dy]);
    }
}

/// <summary>silu(a) * b forward + backward on the CPU: Liger's TorchSharp path against eager.</summary>
[MemoryDiagnoser(false)]
[WarmupCount(5), IterationCount(40)]
public class SwiGluCpuBenchmarks
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
        var c = nn.functional.silu(a) * b;
        autograd.grad([c], [a, b], [dc]);
    }

    [Benchmark]
    public void Liger()
    {
        using var scope = NewDisposeScope();
        var c = LigerSiLUMulFunction.Apply(a, b);
        autograd.grad([c], [a, b], [dc]);
    }
}
