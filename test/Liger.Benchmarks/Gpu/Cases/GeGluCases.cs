using Liger.Kernels.Ops;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>GeGLU rows.</summary>
internal static partial class GpuBenchmark
{
    private static IEnumerable<GpuCase> GeGluCases()
    {
        const long BT = 16384, I = 14336;
        yield return new GpuCase("GeGLU", $"BT={BT} I={I} bf16", BT * I * 2 * 8, () => GeGluCase(BT, I));
    }

    private static GpuCaseState GeGluCase(long rows, long intermediate)
    {
        var a0 = randn(rows, intermediate, dtype: ScalarType.BFloat16, device: CUDA);
        var b0 = randn(rows, intermediate, dtype: ScalarType.BFloat16, device: CUDA);
        var a = a0.clone().requires_grad_();
        var b = b0.clone().requires_grad_();
        var dc = randn(rows, intermediate, dtype: ScalarType.BFloat16, device: CUDA);
        static Tensor Eager(Tensor a, Tensor b) => nn.functional.gelu(a, GELU.Approximate.tanh) * b;
        // As SwiGLU: Liger's module runs the backward in place, the inputs are restored between runs.
        return new GpuCaseState(
            eager: () => { using var s = NewDisposeScope(); autograd.grad([Eager(a, b)], [a, b], [dc]); },
            liger: () => { using var s = NewDisposeScope(); autograd.grad([LigerGELUMulFunction.Apply(a, b, inPlaceBackward: true)], [a, b], [dc]); },
            reset: () => { using (no_grad()) { a.copy_(a0); b.copy_(b0); } },
            maxDifference: () =>
            {
                using var s = NewDisposeScope();
                var e = autograd.grad([Eager(a, b)], [a, b], [dc]);
                var l = autograd.grad([LigerGELUMulFunction.Apply(a, b)], [a, b], [dc]);
                return (e[0].to(ScalarType.Float32) - l[0].to(ScalarType.Float32)).abs().max().item<float>();
            });
    }
}
