using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>Cross-entropy's exact results: the reduced loss, its z-loss part, and the logits' gradient.</summary>
public sealed record CrossEntropyReference(Tensor Loss, Tensor ZLoss, Tensor Grad, Tensor Predicted);

public static partial class References
{
    /// <summary>
    /// Cross-entropy from its definition in float64 torch ops (log_softmax and gather, no fused loss):
    /// per token (1 − s)·w_y·(−log p_y) + s/V·Σ_c w_c·(−log p_c) + z·lse², over soft-capped logits,
    /// reduced as <paramref name="options"/> say (mean divides by Σ w_y of counted tokens, z-loss by
    /// their count; nothing counted gives 0), backpropagated from <paramref name="gradOutput"/>.
    /// </summary>
    public static CrossEntropyReference CrossEntropy(Tensor logits, Tensor target, CrossEntropyOptions options, Tensor gradOutput)
    {
        using var scope = NewDisposeScope();
        long vocab = logits.shape[^1];
        var x = Leaf64(logits);
        var rows = x.reshape(-1, vocab);
        var y = target.detach().cpu().reshape(-1);
        var counted = y.ne(options.IgnoreIndex);
        var safeY = where(counted, y, zeros_like(y));
        var capped = options.Softcap is { } c ? c * tanh(rows / c) : rows;
        var logp = nn.functional.log_softmax(capped, 1);
        var lse = capped.logsumexp(1);
        var w = options.Weight?.detach().cpu().to(ScalarType.Float64) ?? ones(vocab, dtype: ScalarType.Float64);
        var wy = w.index_select(0, safeY);
        var nll = -logp.gather(1, safeY.unsqueeze(1)).squeeze(1) * wy;
        var smooth = -(logp * w).sum(dim: 1) / vocab;
        double s = options.LabelSmoothing;
        var mask = counted.to(ScalarType.Float64);
        var perToken = ((1 - s) * nll + s * smooth) * mask;
        var z = options.LseSquareScale * lse.square() * mask;
        Tensor loss, zLoss;
        switch (options.Reduction)
        {
            case CrossEntropyReduction.Mean:
                var denominator = (wy * mask).sum();
                var count = mask.sum();
                loss = where(denominator.ne(0), perToken.sum() / denominator, zeros_like(denominator))
                       + where(count.ne(0), z.sum() / count, zeros_like(count));
                zLoss = where(count.ne(0), z.sum() / count, zeros_like(count));
                break;
            case CrossEntropyReduction.Sum:
                loss = perToken.sum() + z.sum();
                zLoss = z.sum();
                break;
            default:
                loss = (perToken + z).reshape(target.shape);
                zLoss = z.reshape(target.shape);
                break;
        }
        loss.backward([gradOutput.detach().cpu().to(ScalarType.Float64)]);
        var predicted = where(counted, capped.argmax(1), full_like(y, -1)).reshape(target.shape);
        return new CrossEntropyReference(loss.detach().MoveToOuterDisposeScope(), zLoss.detach().MoveToOuterDisposeScope(),
            x.grad!.detach().MoveToOuterDisposeScope(), predicted.MoveToOuterDisposeScope());
    }
}
