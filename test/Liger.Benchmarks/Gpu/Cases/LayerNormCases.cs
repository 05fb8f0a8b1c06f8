using Liger.Kernels.Runtime;
using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>LayerNorm rows.</summary>
internal static partial class GpuBenchmark
{
    private static IEnumerable<GpuCase> LayerNormCases()
    {
        const long BT = 16384, H = 4096;
        // Bytes moved at least: x and y forward; dy, x, dx backward (weight, bias and statistics are noise).
        yield return new GpuCase("LayerNorm", $"BT={BT} H={H} bf16", BT * H * 2 * 5, () => LayerNormCase(BT, H));
    }

    private static GpuCaseState LayerNormCase(long rows, long hidden)
    {
        var x = randn(rows, hidden, dtype: ScalarType.BFloat16, device: CUDA).requires_grad_();
        var w = (randn(hidden, device: CUDA).Times(0.1).Plus(1)).to(ScalarType.BFloat16).requires_grad_();
        var b = (randn(hidden, device: CUDA).Times(0.1)).to(ScalarType.BFloat16).requires_grad_();
        var dy = randn(rows, hidden, dtype: ScalarType.BFloat16, device: CUDA);
        Tensor Eager() => nn.functional.layer_norm(x, [hidden], w, b, 1e-5);
        Tensor Liger() => LigerLayerNormFunction.Apply(x, w, b, 1e-5);
        return new GpuCaseState(
            eager: () => { using var s = NewDisposeScope(); autograd.grad([Eager()], [x, w, b], [dy]); },
            liger: () => { using var s = NewDisposeScope(); autograd.grad([Liger()], [x, w, b], [dy]); },
            maxDifference: () =>
            {
                using var s = NewDisposeScope();
                var e = autograd.grad([Eager()], [x, w, b], [dy]);
                var l = autograd.grad([Liger()], [x, w, b], [dy]);
                return (e[0].to(ScalarType.Float32) - l[0].to(ScalarType.Float32)).abs().max().item<float>();
            });
    }
}
