using BenchmarkDotNet.Attributes;
using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Cpu;

/// <summary>
/// RMSNorm and the q/k/v projections that read it, forward + backward on the CPU (fp32, Llama-3.2-1B's
/// attention widths: H 2048, 32 query and 8 key/value heads of 64): Liger's function, which keeps x and rstd
/// and recomputes the normalised x in the backward, against eager RMSNorm then three linears. Every output
/// gets a gradient, as in attention.
/// </summary>
[WarmupCount(3), IterationCount(20)]
public class RmsNormLinearsCpuBenchmarks : CpuOpBenchmark
{
    private Tensor x = null!, normWeight = null!;
    private Tensor[] weights = null!, upstream = null!;

    [Params(256)] public int Tokens;
    [Params(2048)] public int Hidden;
    [Params(512)] public int KvWidth;

    protected override void CreateInputs()
    {
        x = randn(Tokens, Hidden).requires_grad_();
        normWeight = randn(Hidden).requires_grad_();
        long[] widths = [Hidden, KvWidth, KvWidth];
        weights = [.. widths.Select(w => (randn(w, Hidden).DividedBy(Math.Sqrt(Hidden))).requires_grad_())];
        upstream = [.. widths.Select(w => randn(Tokens, w))];
    }

    protected override void EagerStep()
    {
        var normed = x * rsqrt(x.Squared().mean([-1L], keepdim: true).Plus(1e-6)) * normWeight;
        var outputs = weights.Select(w => nn.functional.linear(normed, w)).ToArray();
        autograd.grad(outputs, [x, normWeight, .. weights], upstream);
    }

    protected override void LigerStep() =>
        autograd.grad(LigerRMSNormLinearsFunction.Apply(x, normWeight, weights), [x, normWeight, .. weights], upstream);
}
