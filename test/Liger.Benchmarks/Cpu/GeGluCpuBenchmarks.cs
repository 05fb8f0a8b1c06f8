using Liger.Kernels.Ops;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Cpu;

/// <summary>gelu_tanh(a) * b forward + backward on the CPU: Liger's TorchSharp path against eager.</summary>
public class GeGluCpuBenchmarks : GatedCpuBenchmark
{
    protected override void EagerStep() => autograd.grad([nn.functional.gelu(a, GELU.Approximate.tanh) * b], [a, b], [dc]);

    protected override void LigerStep() => autograd.grad([LigerGELUMulFunction.Apply(a, b)], [a, b], [dc]);
}
