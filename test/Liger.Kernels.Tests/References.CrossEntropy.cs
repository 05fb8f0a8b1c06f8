using Liger.Kernels.Runtime;
using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>Cross-entropy's exact results: the reduced loss, its z-loss part, and the logits' gradient.</summary>
/// <param name="LossTermScale">The size of the terms the loss is computed from, reduced like the loss
/// ((|lse| + max|logit|) per token, weighted): a token's loss is lse − x_y, which cancels when the target
/// dominates its row, so rounding error is relative to these terms, not to the (possibly tiny) loss.</param>
/// <param name="GradTermScale">The same for the gradient, elementwise: its target entry is p_y − 1, which
/// cancels in the same case, so the scale is (p + onehot)·w_y plus the smoothing and z-loss terms, times the
/// token's share of the reduction (an upper bound: the soft cap's derivative, at most 1, is left out).</param>
public sealed record CrossEntropyReference(Tensor Loss, Tensor ZLoss, Tensor Grad, Tensor Predicted, Tensor LossTermScale, Tensor GradTermScale);

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
        var counted = y.NotEqualTo(options.IgnoreIndex);
        var safeY = where(counted, y, zeros_like(y));
        var capped = options.Softcap is { } c ? tanh(rows.DividedBy(c)).Times(c) : rows;
        var logp = nn.functional.log_softmax(capped, 1);
        var lse = capped.logsumexp(1);
        var w = options.Weight?.detach().cpu().to(ScalarType.Float64) ?? ones(vocab, dtype: ScalarType.Float64);
        var wy = w.index_select(0, safeY);
        var nll = -logp.gather(1, safeY.unsqueeze(1)).squeeze(1) * wy;
        var smooth = (-(logp * w).sum(dim: 1)).DividedBy(vocab);
        double s = options.LabelSmoothing;
        var mask = counted.to(ScalarType.Float64);
        var perToken = (nll.Times(1 - s).Plus(smooth.Times(s))) * mask;
        var z = lse.Squared().Times(options.LseSquareScale) * mask;
        var terms = ((lse.abs().Plus(capped.abs().amax(1))) * (wy.Times(1 - s).Plus(w.mean().Times(s))) * mask).detach();
        var g = gradOutput.detach().cpu().to(ScalarType.Float64);
        var gradTerms = GradientTerms(logp.detach().exp(), safeY, lse.detach(), w, wy.detach(), mask, options);
        Tensor loss, zLoss, termScale, gradScale;
        switch (options.Reduction)
        {
            case CrossEntropyReduction.Mean:
                var denominator = (wy * mask).sum();
                var count = mask.sum();
                loss = where(denominator.NotEqualTo(0), perToken.sum() / denominator, zeros_like(denominator)).Plus(where(count.NotEqualTo(0), z.sum() / count, zeros_like(count)));
                zLoss = where(count.NotEqualTo(0), z.sum() / count, zeros_like(count));
                termScale = where(denominator.NotEqualTo(0), terms.sum() / denominator, zeros_like(denominator)).Plus(zLoss.detach());
                gradScale = g.abs() * (where(denominator.NotEqualTo(0), gradTerms.Loss / denominator, zeros_like(gradTerms.Loss)).Plus(where(count.NotEqualTo(0), gradTerms.Z / count, zeros_like(gradTerms.Z))));
                break;
            case CrossEntropyReduction.Sum:
                loss = perToken.sum().Plus(z.sum());
                zLoss = z.sum();
                termScale = terms.sum().Plus(zLoss.detach());
                gradScale = g.abs() * (gradTerms.Loss.Plus(gradTerms.Z));
                break;
            default:
                loss = (perToken.Plus(z)).reshape(target.shape);
                zLoss = z.reshape(target.shape);
                termScale = (terms.Plus(z.detach())).reshape(target.shape);
                gradScale = g.abs().reshape(-1, 1) * (gradTerms.Loss.Plus(gradTerms.Z));
                break;
        }
        loss.backward([gradOutput.detach().cpu().to(ScalarType.Float64)]);
        var predicted = where(counted, capped.argmax(1), ScalarArithmetic.FullLike(y, -1L)).reshape(target.shape);
        return new CrossEntropyReference(loss.detach().MoveToOuterDisposeScope(), zLoss.detach().MoveToOuterDisposeScope(),
            x.grad!.detach().MoveToOuterDisposeScope(), predicted.MoveToOuterDisposeScope(), termScale.MoveToOuterDisposeScope(),
            gradScale.reshape(logits.shape).MoveToOuterDisposeScope());
    }

    /// <summary>Per element, the magnitudes of the terms of d(per-token loss)/d(logit), before the reduction's
    /// scaling: the loss part (1 − s)·w_y·(p + onehot) + s/V·(Σw·p + w) and the z-loss part 2·|z·lse|·p.</summary>
    private static (Tensor Loss, Tensor Z) GradientTerms(Tensor p, Tensor safeY, Tensor lse, Tensor w, Tensor wy, Tensor mask,
        CrossEntropyOptions options)
    {
        long vocab = p.shape[1];
        double s = options.LabelSmoothing;
        var onehot = nn.functional.one_hot(safeY, vocab).to(ScalarType.Float64);
        var rowMask = mask.unsqueeze(1);
        var loss = ((wy.unsqueeze(1).Times(1 - s) * (p.Plus(onehot))).Plus(((w.sum() * p).Plus(w)).Times(s / vocab))) * rowMask;
        var z = lse.abs().unsqueeze(1).Times(2 * Math.Abs(options.LseSquareScale)) * p * rowMask;
        return (loss, z);
    }
}
