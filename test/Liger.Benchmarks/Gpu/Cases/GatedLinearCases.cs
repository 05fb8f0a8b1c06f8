using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>Gated product + down_proj (LigerSiLUMulLinearFunction) rows: a Llama MLP after gate_proj and up_proj.</summary>
internal static partial class GpuBenchmark
{
    private static IEnumerable<GpuCase> GatedLinearCases()
    {
        const long BT = 16384;
        // down_proj's matmuls dominate: no bandwidth floor (the % column reads 0). The fusion does not keep the
        // product silu(a)·b for the backward (the backward kernel recomputes it over dc).
        yield return new GpuCase("SwiGLU+down", $"BT={BT} I=8192 H=2048 bf16 (1B)", 0, () => GatedLinearCase(BT, 8192, 2048));
        yield return new GpuCase("SwiGLU+down", $"BT={BT} I=14336 H=4096 bf16 (8B)", 0, () => GatedLinearCase(BT, 14336, 4096));
    }

    private static GpuCaseState GatedLinearCase(long rows, long intermediate, long hidden)
    {
        var a0 = randn(rows, intermediate, dtype: ScalarType.BFloat16, device: CUDA);
        var b0 = randn(rows, intermediate, dtype: ScalarType.BFloat16, device: CUDA);
        var a = a0.clone().requires_grad_();
        var b = b0.clone().requires_grad_();
        var down = (randn(hidden, intermediate, device: CUDA).DividedBy(Math.Sqrt(intermediate))).to(ScalarType.BFloat16).requires_grad_();
        var dy = randn(rows, hidden, dtype: ScalarType.BFloat16, device: CUDA);
        Tensor[] inputs = [a, b, down];
        // Liger's MLP runs the backward in place (da into a, db into b), as the SwiGLU row does; the inputs are
        // restored from copies between runs, outside the timed region.
        return new GpuCaseState(
            eager: () => { using var s = NewDisposeScope(); autograd.grad([nn.functional.linear(nn.functional.silu(a) * b, down)], inputs, [dy]); },
            liger: () => { using var s = NewDisposeScope(); autograd.grad([LigerSiLUMulLinearFunction.Apply(a, b, down, inPlaceBackward: true)], inputs, [dy]); },
            reset: () => { using (no_grad()) { a.copy_(a0); b.copy_(b0); } },
            maxDifference: () =>
            {
                using var s = NewDisposeScope();
                var e = autograd.grad([nn.functional.linear(nn.functional.silu(a) * b, down)], inputs, [dy]);
                var l = autograd.grad([LigerSiLUMulLinearFunction.Apply(a, b, down)], inputs, [dy]);
                return (e[0].to(ScalarType.Float32) - l[0].to(ScalarType.Float32)).abs().max().item<float>();
            });
    }
}
