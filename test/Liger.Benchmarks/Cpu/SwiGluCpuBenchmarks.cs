using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Cpu;

/// <summary>silu(a) * b forward + backward on the CPU: Liger's TorchSharp path against eager.</summary>
public class SwiGluCpuBenchmarks : GatedCpuBenchmark
{
    protected override void EagerStep() => autograd.grad([nn.functional.silu(a) * b], [a, b], [dc]);

    protected override void LigerStep() => autograd.grad([LigerSiLUMulFunction.Apply(a, b)], [a, b], [dc]);
}
