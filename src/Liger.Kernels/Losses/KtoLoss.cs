using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Losses;

/// <summary>
/// KTO (Ethayarajh et al., 2024, arXiv:2402.01306), unpaired: a desirable sequence costs w_d (1 − σ(β(Δ − KL))), an
/// undesirable one w_u (1 − σ(β(KL − Δ))), Δ = logp − logp_ref, averaged over the batch's sequences. KL is a detached
/// estimate of KL(policy ‖ reference) (TRL: the mean log-ratio over mismatched prompt/completion pairs, at least 0).
/// Defaults as Liger-Kernel and TRL: β 0.1, summed log-probs, weights 1.
/// </summary>
public sealed record KtoLossOptions : PreferenceLossOptions
{
    /// <summary>w_d: the weight of desirable sequences' losses.</summary>
    public double DesirableWeight { get; init; } = 1.0;

    /// <summary>w_u: the weight of undesirable sequences' losses.</summary>
    public double UndesirableWeight { get; init; } = 1.0;

    internal override bool UsesReference => true;

    internal override void Validate()
    {
        base.Validate();
        if (ComputeNllLoss)
            throw new ArgumentException("KTO has no NLL term (ComputeNllLoss must be false).", nameof(ComputeNllLoss));
        if (!double.IsFinite(DesirableWeight) || DesirableWeight < 0)
            throw new ArgumentOutOfRangeException(nameof(DesirableWeight), DesirableWeight, "DesirableWeight must be finite and non-negative.");
        if (!double.IsFinite(UndesirableWeight) || UndesirableWeight < 0)
            throw new ArgumentOutOfRangeException(nameof(UndesirableWeight), UndesirableWeight, "UndesirableWeight must be finite and non-negative.");
    }
}

/// <summary>Chunked fused-linear KTO; see <see cref="KtoLossOptions"/>.</summary>
public static class LigerFusedLinearKtoLoss
{
    /// <summary>The loss and its metrics.</summary>
    /// <param name="hidden">(N, T, H): the final hidden states of N prompt + completion sequences.</param>
    /// <param name="weight">lm_head's weight (V, H).</param>
    /// <param name="target">(N, T) shifted targets, the ignore index on prompt and padding.</param>
    /// <param name="labels">(N) bool: true for a desirable completion, false for an undesirable one.</param>
    /// <param name="reference">The reference model's hidden states and lm_head, or its log-probs; null: Δ = logp.</param>
    /// <param name="bias">lm_head's bias, or null.</param>
    /// <param name="options">Null: the defaults.</param>
    /// <param name="kl">The KL estimate (a scalar, or one per sequence), detached; null: 0. See <see cref="EstimateKl"/>.</param>
    public static KtoLossResult Apply(Tensor hidden, Tensor weight, Tensor target, Tensor labels, PreferenceReference? reference = null,
        Tensor? bias = null, KtoLossOptions? options = null, Tensor? kl = null)
    {
        options ??= new KtoLossOptions();
        PreferenceChunks.Validate(hidden, weight, target, bias, options, paired: false);
        long n = hidden.shape[0];
        TensorChecks.NotNull(labels, nameof(labels));
        if (labels.dtype != ScalarType.Bool)
            throw new ArgumentException($"'{nameof(labels)}' must be bool (true: desirable); got {labels.dtype}.", nameof(labels));
        TensorChecks.Shape(labels, nameof(labels), n);
        TensorChecks.SameDevice(labels, nameof(labels), hidden, nameof(hidden));
        if (kl is not null)
        {
            TensorChecks.SameDevice(kl, nameof(kl), hidden, nameof(hidden));
            TensorChecks.FloatingPoint(kl, nameof(kl));
            if (kl.numel() != 1 && !kl.shape.SequenceEqual([n]))
                throw new ArgumentException($"'{nameof(kl)}' must be a scalar or one value per sequence [{n}]; got [{string.Join(", ", kl.shape)}].", nameof(kl));
        }
        var referenceLogProbs = LigerFusedLinearPreferenceLoss.ReferenceLogProbs(reference, hidden, target, options);
        using var klValue = kl is null ? zeros(n, dtype: ScalarType.Float64, device: hidden.device)
            : kl.detach().to(ScalarType.Float64).reshape(-1).expand(n).contiguous();
        using var run = LigerFusedLinearPreferenceLoss.Run(hidden, weight, target, bias, options,
            new KtoObjective(n, options, labels, klValue), referenceLogProbs);
        // A scope of our own: Metric moves its results out of the innermost scope, which must be this one.
        using var scope = NewDisposeScope();
        using var perToken = run.Counts.Times(weight.shape[0]);
        return new KtoLossResult(run.Loss, LigerFusedLinearPreferenceLoss.Metric(run.LogProbs), LigerFusedLinearPreferenceLoss.Metric(run.Rewards),
            LigerFusedLinearPreferenceLoss.Metric(run.LogitsSum / perToken),
            LigerFusedLinearPreferenceLoss.Metric(kl is null ? zeros(1, dtype: ScalarType.Float64, device: hidden.device).squeeze() : klValue.mean()));
    }

    /// <summary>
    /// TRL's KL estimate from mismatched pairs (each prompt with another row's completion): the mean of policy minus
    /// reference log-probs over those sequences, clamped at 0, detached.
    /// </summary>
    /// <param name="policyLogProbs">The policy's log-probs of the mismatched sequences (see <see cref="LigerFusedLinearSequenceLogProbs"/>).</param>
    /// <param name="referenceLogProbs">The reference's log-probs of the same sequences.</param>
    public static Tensor EstimateKl(Tensor policyLogProbs, Tensor referenceLogProbs)
    {
        TensorChecks.NotNull(policyLogProbs, nameof(policyLogProbs));
        TensorChecks.SameShape(referenceLogProbs, nameof(referenceLogProbs), policyLogProbs, nameof(policyLogProbs));
        using var difference = policyLogProbs.detach().to(ScalarType.Float32) - referenceLogProbs.detach().to(ScalarType.Float32);
        using var mean = difference.mean();
        return mean.AtLeast(0.0);
    }
}

/// <summary>KTO's per-sequence term and its derivative.</summary>
internal sealed class KtoObjective(long sequences, KtoLossOptions options, Tensor labels, Tensor kl) : SequenceObjective
{
    internal override bool Paired => false;

    internal override Terms Evaluate(Tensor logProbs, Tensor? reference, long first, long count)
    {
        double beta = options.Beta;
        var desirable = labels.narrow(0, first, count);
        var sign = desirable.to(ScalarType.Float64).Times(2).Plus(-1.0);   // +1 desirable, −1 undesirable
        var weight = desirable.to(ScalarType.Float64).Times(options.DesirableWeight - options.UndesirableWeight).Plus(options.UndesirableWeight);
        var ratio = reference is null ? logProbs : logProbs - reference;
        var s = (ratio - kl.narrow(0, first, count)).mul(sign).Times(beta).sigmoid();
        var loss = weight * (s.neg().Plus(1.0));
        // d/dlogp of w (1 − σ(β m (Δ − KL))) = −w σ(1 − σ) β m
        var gradient = (weight * s * s.neg().Plus(1.0) * sign).Times(-beta);
        return new Terms(loss.sum().DividedBy(sequences), gradient.DividedBy(sequences), ratio.Times(beta), new Dictionary<string, Tensor>());
    }
}
