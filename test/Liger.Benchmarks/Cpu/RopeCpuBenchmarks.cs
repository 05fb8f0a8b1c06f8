using BenchmarkDotNet.Attributes;
using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Cpu;

/// <summary>
/// RoPE forward + backward on the CPU (float32, GQA, q and k as transposed projection views): Liger's CPU
/// path against Hugging Face's eager apply_rotary_pos_emb.
/// </summary>
[WarmupCount(5), IterationCount(40)]
public class RopeCpuBenchmarks : CpuOpBenchmark
{
    private const int Batch = 1;
    private Tensor qLeaf = null!, kLeaf = null!, cos = null!, sin = null!, dq = null!, dk = null!;

    [Params(1024)] public int Seq;
    [Params(32)] public int QHeads;
    [Params(8)] public int KvHeads;
    [Params(128)] public int HeadDim;

    protected override void CreateInputs()
    {
        qLeaf = randn(Batch, Seq, QHeads * HeadDim).requires_grad_();
        kLeaf = randn(Batch, Seq, KvHeads * HeadDim).requires_grad_();
        (cos, sin) = RotaryEmbedding.CosSin(Ranges.Int64(0, Seq), HeadDim, 500000.0);
        // (B, T, H, D) in memory, as attention's backward leaves them
        dq = randn(Batch, Seq, QHeads, HeadDim).transpose(1, 2);
        dk = randn(Batch, Seq, KvHeads, HeadDim).transpose(1, 2);
    }

    private Tensor Q => qLeaf.view(Batch, Seq, QHeads, HeadDim).transpose(1, 2);
    private Tensor K => kLeaf.view(Batch, Seq, KvHeads, HeadDim).transpose(1, 2);

    protected override void EagerStep()
    {
        var (c, s) = (cos.unsqueeze(1), sin.unsqueeze(1));
        var (q, k) = (Q, K);
        var qe = (q * c).Plus(RotateHalf(q) * s);
        var ke = (k * c).Plus(RotateHalf(k) * s);
        autograd.grad([qe, ke], [qLeaf, kLeaf], [dq, dk]);
    }

    protected override void LigerStep()
    {
        var (qe, ke) = LigerRotaryPosEmb.Apply(Q, K, cos, sin);
        autograd.grad([qe, ke], [qLeaf, kLeaf], [dq, dk]);
    }

    private static Tensor RotateHalf(Tensor x)
    {
        long half = x.shape[^1] / 2;
        return cat([-x.narrow(-1, half, half), x.narrow(-1, 0, half)], -1);
    }
}
