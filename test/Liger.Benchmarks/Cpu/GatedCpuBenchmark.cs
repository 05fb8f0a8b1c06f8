using BenchmarkDotNet.Attributes;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Cpu;

/// <summary>The inputs of a gated product f(a) * b benchmark (SwiGLU, GeGLU): a, b and the upstream gradient dc.</summary>
[WarmupCount(5), IterationCount(40)]
public abstract class GatedCpuBenchmark : CpuOpBenchmark
{
    protected Tensor a = null!, b = null!, dc = null!;

    [Params(2048)] public int Rows;
    [Params(4096)] public int Intermediate;

    protected override void CreateInputs()
    {
        a = randn(Rows, Intermediate).requires_grad_();
        b = randn(Rows, Intermediate).requires_grad_();
        dc = randn(Rows, Intermediate);
    }
}
