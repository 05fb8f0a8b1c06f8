using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>RMSNorm + the projections that read it (LigerRMSNormLinearsFunction) rows: a decoder layer's q/k/v.</summary>
internal static partial class GpuBenchmark
{
    private static IEnumerable<GpuCase> RmsNormLinearsCases()
    {
        const long BT = 16384;
        // The projections' matmuls dominate, so there is no bandwidth floor to compare with (the % column reads 0).
        // What the fusion changes is memory: the normalised x is not kept for the backward (recomputed there).
        yield return new GpuCase("RMSNorm+QKV", $"BT={BT} H=2048 q=2048 kv=512 bf16 (1B)", 0, () => RmsNormLinearsCase(BT, 2048, 512));
        yield return new GpuCase("RMSNorm+QKV", $"BT={BT} H=4096 q=4096 kv=1024 bf16 (8B)", 0, () => RmsNormLinearsCase(BT, 4096, 1024));
    }

    private static GpuCaseState RmsNormLinearsCase(long rows, long hidden, long kvWidth)
    {
        var x = randn(rows, hidden, dtype: ScalarType.BFloat16, device: CUDA).requires_grad_();
        var w = (randn(hidden, device: CUDA).Times(0.1).Plus(1)).to(ScalarType.BFloat16).requires_grad_();
        long[] widths = [hidden, kvWidth, kvWidth];
        Tensor[] projections = [.. widths.Select(n =>
            (randn(n, hidden, device: CUDA).DividedBy(Math.Sqrt(hidden))).to(ScalarType.BFloat16).requires_grad_())];
        Tensor[] upstream = [.. widths.Select(n => randn(rows, n, dtype: ScalarType.BFloat16, device: CUDA))];
        Tensor[] inputs = [x, w, .. projections];
        Tensor[] Eager()
        {
            // Hugging Face's LlamaRMSNorm, op for op, then q_proj, k_proj, v_proj
            var xf = x.to(ScalarType.Float32);
            var normed = w * (xf * rsqrt(xf.Squared().mean([-1L], keepdim: true).Plus(1e-6))).to(ScalarType.BFloat16);
            return [.. projections.Select(p => nn.functional.linear(normed, p))];
        }
        Tensor[] Liger() => LigerRMSNormLinearsFunction.Apply(x, w, projections);
        return new GpuCaseState(
            eager: () => { using var s = NewDisposeScope(); autograd.grad(Eager(), inputs, upstream); },
            liger: () => { using var s = NewDisposeScope(); autograd.grad(Liger(), inputs, upstream); },
            maxDifference: () =>
            {
                using var s = NewDisposeScope();
                var e = autograd.grad(Eager(), inputs, upstream);
                var l = autograd.grad(Liger(), inputs, upstream);
                return (e[0].to(ScalarType.Float32) - l[0].to(ScalarType.Float32)).abs().max().item<float>();
            });
    }
}
