using Liger.Kernels.Runtime;
using Liger.Kernels.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>A loss (scalar, float32, differentiable) and each sequence's policy log-prob (N, float32, row order).</summary>
internal sealed record PreferenceOutput(Tensor Loss, Tensor LogProbs);

/// <summary>
/// The preference losses as a trainer computes them without Liger (TRL, and the "torch" side of Liger-Kernel's loss
/// benchmarks), written from the papers' formulas: the full logits hidden · Wᵀ (+ b) in the input dtype, upcast to float32,
/// log_softmax, the targets' log-probs gathered and summed (or averaged) over each sequence's unmasked positions, the loss
/// formula over those sequence log-probs, and the chosen NLL as a cross-entropy over the chosen rows' logits. Reference
/// log-probs come from the reference model's full logits under no_grad, first. Autograd differentiates all of it.
/// Intermediates are released as soon as the composite stops using them (the bf16 product once upcast, the float32 logits
/// once reduced), as reference counting releases them in PyTorch, rather than at the end of the step's dispose scope:
/// autograd keeps what its backward needs either way, so the memory measured is the composite's, not the scope's.
/// </summary>
internal static class PreferenceEager
{
    internal static PreferenceOutput Orpo(PreferenceInputs x, OrpoLossOptions o) => Paired(x, o, (c, r, _, _) =>
    {
        // log odds(y) = log p − log(1 − p), p the length-normalised sequence probability.
        var logOdds = c - r - ((-c.exp()).log1p() - (-r.exp()).log1p());
        return nn.functional.logsigmoid(logOdds).Times(-o.Beta);
    });

    internal static PreferenceOutput Dpo(PreferenceInputs x, DpoLossOptions o) =>
        Paired(x, o.LossType == DpoLossType.Ipo ? o with { AverageLogProb = true } : o, (c, r, rc, rr) =>
        {
            var margin = c - rc! - (r - rr!);
            return o.LossType switch
            {
                DpoLossType.Sigmoid => -nn.functional.logsigmoid(margin.Times(o.Beta)),
                DpoLossType.Hinge => (margin.Times(o.Beta).SubtractedFrom(1)).relu(),
                DpoLossType.Ipo => (margin.Minus(1 / (2 * o.Beta))).Squared(),
                _ => throw new NotSupportedException($"The eager DPO covers sigmoid, hinge and ipo; got {o.LossType}."),
            };
        });

    internal static PreferenceOutput Cpo(PreferenceInputs x, CpoLossOptions o) =>
        Paired(x, o, (c, r, _, _) => SmoothedSigmoid((c - r).Times(o.Beta), o.LabelSmoothing));

    internal static PreferenceOutput SimPo(PreferenceInputs x, SimPoLossOptions o) =>
        Paired(x, o, (c, r, _, _) => SmoothedSigmoid((c - r).Times(o.Beta).Minus(o.Gamma), o.LabelSmoothing));

    /// <summary>KTO over the batch's sequences: w_d (1 − σ(β(Δ − KL))) if desirable, w_u (1 − σ(β(KL − Δ))) if not; the mean.</summary>
    internal static PreferenceOutput Kto(PreferenceInputs x, KtoLossOptions o)
    {
        var reference = ReferenceLogProbs(x, o.AverageLogProb);
        using var logits = Logits(x.Hidden, x.Weight, x.Bias);
        var logProbs = SequenceLogProbs(logits, x.Target, o.AverageLogProb);
        var ratio = logProbs - reference;
        var kl = x.Kl!;
        var desirable = (((ratio - kl).Times(o.Beta)).sigmoid().SubtractedFrom(1)).Times(o.DesirableWeight);
        var undesirable = (((kl - ratio).Times(o.Beta)).sigmoid().SubtractedFrom(1)).Times(o.UndesirableWeight);
        var loss = where(x.Labels!, desirable, undesirable).mean();
        // What a trainer logs (TRL): the mean logit, here over the whole batch.
        logits.detach().mean().Dispose();
        return new PreferenceOutput(loss, logProbs.detach());
    }

    /// <summary>−(1 − ε) log σ(z) − ε log σ(−z): CPO's and SimPO's term with label smoothing ε.</summary>
    private static Tensor SmoothedSigmoid(Tensor z, double smoothing) =>
        nn.functional.logsigmoid(z).Times(-(1 - smoothing)) - nn.functional.logsigmoid(-z).Times(smoothing);

    /// <summary>
    /// A paired loss: the per-pair term (chosen, rejected, reference chosen, reference rejected → P losses) averaged over
    /// the pairs, plus α · the chosen rows' mean NLL when the options ask for it.
    /// </summary>
    private static PreferenceOutput Paired(PreferenceInputs x, PreferenceLossOptions o, Func<Tensor, Tensor, Tensor?, Tensor?, Tensor> term)
    {
        long pairs = x.Shape.Rows / 2;
        var reference = x.ReferenceHidden is null ? null : ReferenceLogProbs(x, o.AverageLogProb);
        using var logits = Logits(x.Hidden, x.Weight, x.Bias);
        var logProbs = SequenceLogProbs(logits, x.Target, o.AverageLogProb);
        var loss = term(logProbs[..(int)pairs], logProbs[(int)pairs..], reference?[..(int)pairs], reference?[(int)pairs..]).mean();
        if (o.ComputeNllLoss)
        {
            var chosen = logits[..(int)pairs];
            var nll = nn.functional.cross_entropy(chosen.reshape(-1, x.Shape.Vocab), x.Target[..(int)pairs].reshape(-1),
                ignore_index: PreferenceInputs.IgnoreIndex);
            loss = loss.Plus(nll.Times(o.Alpha));
        }
        // What a trainer logs (TRL): the mean logit of the chosen and of the rejected rows.
        logits[..(int)pairs].detach().mean().Dispose();
        logits[(int)pairs..].detach().mean().Dispose();
        return new PreferenceOutput(loss, logProbs.detach());
    }

    /// <summary>The full logits, computed in the input dtype and upcast to float32 for the softmax.</summary>
    private static Tensor Logits(Tensor hidden, Tensor weight, Tensor? bias)
    {
        var product = nn.functional.linear(hidden, weight, bias);
        if (product.dtype == ScalarType.Float32)
            return product;
        using (product)
            return product.to(ScalarType.Float32);
    }

    /// <summary>Σ (or mean) over each row's unmasked positions of log softmax(logits)[target].</summary>
    private static Tensor SequenceLogProbs(Tensor logits, Tensor target, bool average)
    {
        using var scope = NewDisposeScope();
        var predicted = target.NotEqualTo(PreferenceInputs.IgnoreIndex);
        var safeTarget = target.FilledWhere(predicted.logical_not(), 0);
        Tensor tokens;
        // Autograd keeps the log-softmax for its backward; without gradients it goes here.
        using (var logSoftmax = logits.log_softmax(-1))
            tokens = logSoftmax.gather(-1, safeTarget.unsqueeze(-1)).squeeze(-1) * predicted;
        var sums = tokens.sum(-1L);
        return (average ? sums / predicted.sum(-1L) : sums).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The reference model's sequence log-probs from its own full logits, without gradients. Computed before the policy's
    /// forward, as TRL's trainers do, so its logits are gone before the policy's exist (Liger-Kernel's test composite
    /// computes them after, while the policy's are held, which would raise eager's peak).
    /// </summary>
    private static Tensor ReferenceLogProbs(PreferenceInputs x, bool average)
    {
        using var _ = no_grad();
        using var logits = Logits(x.ReferenceHidden!, x.ReferenceWeight!, x.ReferenceBias);
        return SequenceLogProbs(logits, x.Target, average);
    }
}
