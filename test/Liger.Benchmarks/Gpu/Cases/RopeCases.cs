using Liger.Kernels.Runtime;
using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>RoPE rows: Llama 3 8B attention (GQA) at T = 16K, q and k as transposed projection views.</summary>
internal static partial class GpuBenchmark
{
    private static IEnumerable<GpuCase> RopeCases()
    {
        const long T = 16384, Hq = 32, Hkv = 8, D = 128;
        // q and k are read and written once each way (cos and sin are T·D, negligible next to them).
        long bytes = T * (Hq + Hkv) * D * 2 * 4;
        yield return new GpuCase("RoPE", $"B=1 T={T} Hq={Hq} Hkv={Hkv} D={D} bf16", bytes, () => RopeCase(T, Hq, Hkv, D, inPlace: false));
        yield return new GpuCase("RoPE-inplace", $"B=1 T={T} Hq={Hq} Hkv={Hkv} D={D} bf16", bytes, () => RopeCase(T, Hq, Hkv, D, inPlace: true));
    }

    /// <summary>
    /// "RoPE": q and k are views of leaves (B, T, H·D), so the forward writes new outputs, as eager does.
    /// "RoPE-inplace": q and k are the projections' private outputs, as in an attention layer; both sides
    /// start from a clone of the leaves (the same extra copy in each), and Liger rotates that clone in place.
    /// Both Liger rows rotate the upstream gradients in place; they are restored between runs, untimed.
    /// </summary>
    private static GpuCaseState RopeCase(long seq, long qHeads, long kvHeads, long headDim, bool inPlace)
    {
        const long B = 1;
        var qLeaf = randn(B, seq, qHeads * headDim, dtype: ScalarType.BFloat16, device: CUDA).requires_grad_();
        var kLeaf = randn(B, seq, kvHeads * headDim, dtype: ScalarType.BFloat16, device: CUDA).requires_grad_();
        var (cos, sin) = RotaryEmbedding.CosSin(Ranges.Int64(0, seq, device: CUDA), headDim, 500000.0, ScalarType.BFloat16);
        var (cosHeads, sinHeads) = (cos.unsqueeze(1), sin.unsqueeze(1));
        // Upstream gradients laid out (B, T, H, D), as attention's backward produces them.
        var dq0 = randn(B, seq, qHeads, headDim, dtype: ScalarType.BFloat16, device: CUDA);
        var dk0 = randn(B, seq, kvHeads, headDim, dtype: ScalarType.BFloat16, device: CUDA);
        var (dqBuffer, dkBuffer) = (dq0.clone(), dk0.clone());
        var (dq, dk) = (dqBuffer.transpose(1, 2), dkBuffer.transpose(1, 2));

        Tensor Heads(Tensor leaf, long heads) =>
            (inPlace ? leaf.clone() : leaf).view(B, seq, heads, headDim).transpose(1, 2);
        Tensor RotateHalf(Tensor x)
        {
            long half = x.shape[^1] / 2;
            return cat([-x.narrow(-1, half, half), x.narrow(-1, 0, half)], -1);
        }
        IList<Tensor> Eager(Tensor gq, Tensor gk)
        {
            var (q, k) = (Heads(qLeaf, qHeads), Heads(kLeaf, kvHeads));
            // Hugging Face's apply_rotary_pos_emb, op for op
            var qe = (q * cosHeads).Plus(RotateHalf(q) * sinHeads);
            var ke = (k * cosHeads).Plus(RotateHalf(k) * sinHeads);
            return autograd.grad([qe, ke], [qLeaf, kLeaf], [gq, gk]);
        }
        IList<Tensor> Liger(Tensor gq, Tensor gk, bool inPlaceBackward)
        {
            var (qe, ke) = LigerRotaryPosEmb.Apply(Heads(qLeaf, qHeads), Heads(kLeaf, kvHeads), cos, sin, inPlace, inPlaceBackward);
            return autograd.grad([qe, ke], [qLeaf, kLeaf], [gq, gk]);
        }
        return new GpuCaseState(
            eager: () => { using var s = NewDisposeScope(); Eager(dq, dk); },
            liger: () => { using var s = NewDisposeScope(); Liger(dq, dk, inPlaceBackward: true); },
            reset: () => { using (no_grad()) { dqBuffer.copy_(dq0); dkBuffer.copy_(dk0); } },
            maxDifference: () =>
            {
                using var s = NewDisposeScope();
                var (gq, gk) = (dq0.transpose(1, 2), dk0.transpose(1, 2));
                var e = Eager(gq, gk);
                var l = Liger(gq, gk, inPlaceBackward: false);
                return Math.Max(
                    (e[0].to(ScalarType.Float32) - l[0].to(ScalarType.Float32)).abs().max().item<float>(),
                    (e[1].to(ScalarType.Float32) - l[1].to(ScalarType.Float32)).abs().max().item<float>());
            });
    }
}
