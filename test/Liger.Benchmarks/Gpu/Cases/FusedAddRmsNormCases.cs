using Liger.Kernels.Runtime;
using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>Fused residual add + RMSNorm rows.</summary>
internal static partial class GpuBenchmark
{
    private static IEnumerable<GpuCase> FusedAddRmsNormCases()
    {
        const long BT = 16384, H = 4096;
        // Bytes moved at least: x, residual, y, h forward; dy, dh, h, dx backward.
        yield return new GpuCase("FusedAddRMSNorm", $"BT={BT} H={H} bf16", BT * H * 2 * 8, () => FusedAddRmsNormCase(BT, H));
    }

    private static GpuCaseState FusedAddRmsNormCase(long rows, long hidden)
    {
        var x = randn(rows, hidden, dtype: ScalarType.BFloat16, device: CUDA).requires_grad_();
        var residual = randn(rows, hidden, dtype: ScalarType.BFloat16, device: CUDA).requires_grad_();
        var w = (randn(hidden, device: CUDA).Times(0.1).Plus(1)).to(ScalarType.BFloat16).requires_grad_();
        var dy = randn(rows, hidden, dtype: ScalarType.BFloat16, device: CUDA);
        var dh = randn(rows, hidden, dtype: ScalarType.BFloat16, device: CUDA);
        (Tensor Y, Tensor H) Eager()
        {
            // a decoder layer's residual add, then Hugging Face's LlamaRMSNorm, op for op
            var h = residual.Plus(x);
            var hf = h.to(ScalarType.Float32);
            return (w * (hf * rsqrt(hf.Squared().mean([-1L], keepdim: true).Plus(1e-6))).to(ScalarType.BFloat16), h);
        }
        (Tensor Y, Tensor H) Liger() => LigerFusedAddRMSNormFunction.Apply(x, residual, w, 1e-6);
        // Both outputs get a gradient, as in a decoder stack (h feeds the next layer's residual).
        Tensor[] Grads((Tensor Y, Tensor H) outputs) => [.. autograd.grad([outputs.Y, outputs.H], [x, residual, w], [dy, dh])];
        return new GpuCaseState(
            eager: () => { using var s = NewDisposeScope(); Grads(Eager()); },
            liger: () => { using var s = NewDisposeScope(); Grads(Liger()); },
            maxDifference: () =>
            {
                using var s = NewDisposeScope();
                var e = Grads(Eager());
                var l = Grads(Liger());
                return (e[0].to(ScalarType.Float32) - l[0].to(ScalarType.Float32)).abs().max().item<float>();
            });
    }
}
