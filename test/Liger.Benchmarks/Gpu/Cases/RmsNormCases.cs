using Liger.Kernels.Runtime;
using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>RMSNorm rows, and the breakdown of where its time goes.</summary>
internal static partial class GpuBenchmark
{
    private static IEnumerable<GpuCase> RmsNormCases()
    {
        const long BT = 16384, H = 4096;
        yield return new GpuCase("RMSNorm", $"BT={BT} H={H} bf16", BT * H * 2 * 5, () => RmsNormCase(BT, H));
        // Breakdown rows: where RMSNorm's time goes (autograd wrapper vs host functions vs kernels), and
        // a 64-row step whose GPU work is negligible, so its time is the host cost of one call.
        yield return new GpuCase("RMSNorm-host", $"BT=64 H={H} bf16", 64 * H * 2 * 5, () => RmsNormCase(64, H));
        yield return new GpuCase("RMSNorm-ops", $"BT={BT} H={H} bf16", BT * H * 2 * 5, () => RmsNormOpsCase(BT, H, backward: true));
        yield return new GpuCase("RMSNorm-fwd", $"BT={BT} H={H} bf16", BT * H * 2 * 2, () => RmsNormOpsCase(BT, H, backward: false));
    }

    private static GpuCaseState RmsNormCase(long rows, long hidden)
    {
        var x = randn(rows, hidden, dtype: ScalarType.BFloat16, device: CUDA).requires_grad_();
        var w = (randn(hidden, device: CUDA).Times(0.1).Plus(1)).to(ScalarType.BFloat16).requires_grad_();
        var dy = randn(rows, hidden, dtype: ScalarType.BFloat16, device: CUDA);
        Tensor EagerForward()
        {
            // Hugging Face's LlamaRMSNorm, op for op
            var xf = x.to(ScalarType.Float32);
            var variance = xf.Squared().mean([-1L], keepdim: true);
            return w * (xf * rsqrt(variance.Plus(1e-6))).to(ScalarType.BFloat16);
        }
        return new GpuCaseState(
            eager: () => { using var s = NewDisposeScope(); autograd.grad([EagerForward()], [x, w], [dy]); },
            liger: () => { using var s = NewDisposeScope(); autograd.grad([LigerRMSNormFunction.Apply(x, w)], [x, w], [dy]); },
            maxDifference: () =>
            {
                using var s = NewDisposeScope();
                var e = autograd.grad([EagerForward()], [x, w], [dy]);
                var l = autograd.grad([LigerRMSNormFunction.Apply(x, w)], [x, w], [dy]);
                return (e[0].to(ScalarType.Float32) - l[0].to(ScalarType.Float32)).abs().max().item<float>();
            });
    }

    /// <summary>The host functions without the autograd node; "eager" here is the same forward in torch ops.</summary>
    private static GpuCaseState RmsNormOpsCase(long rows, long hidden, bool backward)
    {
        var x = randn(rows, hidden, dtype: ScalarType.BFloat16, device: CUDA);
        var w = (randn(hidden, device: CUDA).Times(0.1).Plus(1)).to(ScalarType.BFloat16);
        var dy = randn(rows, hidden, dtype: ScalarType.BFloat16, device: CUDA);
        return new GpuCaseState(
            eager: () =>
            {
                using var s = NewDisposeScope();
                var xf = x.to(ScalarType.Float32);
                var y = w * (xf * rsqrt(xf.Squared().mean([-1L], keepdim: true).Plus(1e-6))).to(ScalarType.BFloat16);
            },
            liger: () =>
            {
                using var s = NewDisposeScope();
                var (y, rstd) = RmsNormOp.Forward(x, w, 1e-6, 0, RmsNormCastingMode.Llama);
                if (backward)
                    RmsNormOp.Backward(dy, x, w, rstd, 0, RmsNormCastingMode.Llama, inPlace: false);
            });
    }
}
