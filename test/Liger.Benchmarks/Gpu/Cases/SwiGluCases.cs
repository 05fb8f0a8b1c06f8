using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>SwiGLU rows.</summary>
internal static partial class GpuBenchmark
{
    private static IEnumerable<GpuCase> SwiGluCases()
    {
        const long BT = 16384, I = 14336;
        yield return new GpuCase("SwiGLU", $"BT={BT} I={I} bf16", BT * I * 2 * 8, () => SwiGluCase(BT, I));
    }

    private static GpuCaseState SwiGluCase(long rows, long intermediate)
    {
        var a0 = randn(rows, intermediate, dtype: ScalarType.BFloat16, device: CUDA);
        var b0 = randn(rows, intermediate, dtype: ScalarType.BFloat16, device: CUDA);
        var a = a0.clone().requires_grad_();
        var b = b0.clone().requires_grad_();
        var dc = randn(rows, intermediate, dtype: ScalarType.BFloat16, device: CUDA);
        // Liger's module runs the backward in place (da into a, db into b), as the reference does; the
        // inputs are restored from copies between runs, outside the timed region.
        return new GpuCaseState(
            eager: () => { using var s = NewDisposeScope(); autograd.grad([nn.functional.silu(a) * b], [a, b], [dc]); },
            liger: () => { using var s = NewDisposeScope(); autograd.grad([LigerSiLUMulFunction.Apply(a, b, inPlaceBackward: true)], [a, b], [dc]); },
            reset: () => { using (no_grad()) { a.copy_(a0); b.copy_(b0); } },
            maxDifference: () =>
            {
                using var s = NewDisposeScope();
                var e = autograd.grad([nn.functional.silu(a) * b], [a, b], [dc]);
                var l = autograd.grad([LigerSiLUMulFunction.Apply(a, b)], [a, b], [dc]);
                return (e[0].to(ScalarType.Float32) - l[0].to(ScalarType.Float32)).abs().max().item<float>();
            });
    }
}
