using BenchmarkDotNet.Attributes;
using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Cpu;

/// <summary>
/// Cross-entropy forward + backward on the CPU (fp32): Liger's fused CPU path against eager
/// cross_entropy. Liger writes the gradient over the logits, so after the first call they hold
/// gradients; the time of either path does not depend on the values.
/// </summary>
[MemoryDiagnoser(false)]
[WarmupCount(5), IterationCount(40)]
public class CrossEntropyCpuBenchmarks
{
    private Tensor logits = null!, target = null!;

    [Params(1024)] public int Rows;
    [Params(32000)] public int Vocab;

    [GlobalSetup]
    public void Setup()
    {
        LigerRuntime.CpuExecution = CpuExecution.Torch;
        CpuThreads.Pin();
        manual_seed(0);
        logits = randn(Rows, Vocab).requires_grad_();
        target = randint(0, Vocab, [Rows], dtype: ScalarType.Int64);
        target[..(Rows / 10)] = tensor(-100L);
    }

    [Benchmark(Baseline = true)]
    public void Eager()
    {
        using var scope = NewDisposeScope();
        autograd.grad([nn.functional.cross_entropy(logits, target)], [logits]);
    }

    [Benchmark]
    public void Liger()
    {
        using var scope = NewDisposeScope();
        autograd.grad([LigerCrossEntropyFunction.Apply(logits, target)], [logits]);
    }
}
