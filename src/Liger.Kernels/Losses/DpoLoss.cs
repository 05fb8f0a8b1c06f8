using Liger.Kernels.Runtime;
using static TorchSharp.torch;

namespace Liger.Kernels.Losses;

/// <summary>DPO's loss variants, named as in TRL and Liger-Kernel.</summary>
public enum DpoLossType
{
    /// <summary>−log σ(β(Δ_c − Δ_r)), Δ = logp − logp_ref (Rafailov et al., 2023).</summary>
    Sigmoid,
    /// <summary>max(0, 1 − β(Δ_c − Δ_r)) (SLiC's hinge).</summary>
    Hinge,
    /// <summary>(Δ_c − Δ_r − 1/(2β))² (Azar et al., 2023). Log-probs are always averaged over tokens, as in TRL.</summary>
    Ipo,
    /// <summary>cDPO / robust DPO: ((1 − ε)(−log σ(z)) + ε log σ(−z)) / (1 − 2ε), z = β(Δ_c − Δ_r).</summary>
    Robust,
    /// <summary>APO-zero: 1 − σ(βΔ_c) + σ(βΔ_r) (D'Oosterlinck et al., 2024).</summary>
    ApoZero,
    /// <summary>APO-down: σ(βΔ_c) + 1 − σ(β(Δ_c − Δ_r)).</summary>
    ApoDown,
}

/// <summary>
/// DPO against a frozen reference model. Defaults as Liger-Kernel: β 0.1, summed log-probs, sigmoid loss, NLL off.
/// Rewards are β · (logp − logp_ref).
/// </summary>
public sealed record DpoLossOptions : PreferenceLossOptions
{
    /// <summary>The variant.</summary>
    public DpoLossType LossType { get; init; } = DpoLossType.Sigmoid;

    /// <summary>ε of <see cref="DpoLossType.Robust"/>, in [0, 0.5).</summary>
    public double LabelSmoothing { get; init; }

    internal override bool UsesReference => true;

    internal override void Validate()
    {
        base.Validate();
        if (!Enum.IsDefined(LossType))
            throw new ArgumentOutOfRangeException(nameof(LossType), LossType, "Unknown DPO loss type.");
        if (LossType == DpoLossType.Robust ? !(LabelSmoothing >= 0 && LabelSmoothing < 0.5) : LabelSmoothing != 0)
            throw new ArgumentOutOfRangeException(nameof(LabelSmoothing), LabelSmoothing,
                "LabelSmoothing applies to the Robust loss only, and must be in [0, 0.5) there.");
    }
}

/// <summary>Chunked fused-linear DPO; see <see cref="DpoLossOptions"/>.</summary>
public static class LigerFusedLinearDpoLoss
{
    /// <summary>The loss and its metrics.</summary>
    /// <param name="hidden">(2P, T, H): chosen then rejected.</param>
    /// <param name="weight">lm_head's weight (V, H).</param>
    /// <param name="target">(2P, T) shifted targets.</param>
    /// <param name="reference">The reference model's hidden states and lm_head, or its log-probs; null: reference-free (Δ = logp).</param>
    /// <param name="bias">lm_head's bias, or null.</param>
    /// <param name="options">Null: the defaults.</param>
    public static PreferenceLossResult Apply(Tensor hidden, Tensor weight, Tensor target, PreferenceReference? reference,
        Tensor? bias = null, DpoLossOptions? options = null) =>
        LigerFusedLinearPreferenceLoss.Apply(hidden, weight, target, options ?? new DpoLossOptions(), bias, reference);
}

/// <summary>DPO's variants and their derivatives by the chosen and rejected log-probs.</summary>
internal sealed class DpoObjective(long pairs, DpoLossOptions options) : PairedObjective(pairs)
{
    internal override PairTerms Pair(Tensor chosen, Tensor rejected, Tensor? referenceChosen, Tensor? referenceRejected)
    {
        double beta = options.Beta, eps = options.LabelSmoothing;
        var chosenRatio = referenceChosen is null ? chosen : chosen - referenceChosen;
        var rejectedRatio = referenceRejected is null ? rejected : rejected - referenceRejected;
        var z = (chosenRatio - rejectedRatio).Times(beta);
        Tensor loss, byChosen, byRejected;
        switch (options.LossType)
        {
            case DpoLossType.Ipo:
            {
                var gap = (chosenRatio - rejectedRatio).Plus(-1 / (2 * beta));
                loss = gap * gap;
                byChosen = gap.Times(2);
                byRejected = byChosen.neg();
                break;
            }
            case DpoLossType.ApoZero:
            {
                var c = Sigmoid(chosenRatio.Times(beta));
                var r = Sigmoid(rejectedRatio.Times(beta));
                loss = OneMinus(c).Plus(r);
                byChosen = (c * OneMinus(c)).Times(-beta);
                byRejected = (r * OneMinus(r)).Times(beta);
                break;
            }
            case DpoLossType.ApoDown:
            {
                var c = Sigmoid(chosenRatio.Times(beta));
                var s = Sigmoid(z);
                loss = c.Plus(OneMinus(s));
                var bySigmoidZ = (s * OneMinus(s)).Times(beta);
                byChosen = (c * OneMinus(c)).Times(beta) - bySigmoidZ;
                byRejected = bySigmoidZ;
                break;
            }
            default:
            {
                Tensor byZ;
                if (options.LossType == DpoLossType.Hinge)
                {
                    var margin = OneMinus(z);
                    loss = margin.relu();
                    byZ = margin.relu().sign().neg();   // −1 where the margin is positive; relu'(0) = 0, as torch
                }
                else if (options.LossType == DpoLossType.Robust)
                {
                    loss = LogSigmoid(z).Times(-(1 - eps)).Plus(LogSigmoid(z.neg()).Times(eps)).DividedBy(1 - 2 * eps);
                    byZ = (Sigmoid(z.neg()).Times(-(1 - eps)) - Sigmoid(z).Times(eps)).DividedBy(1 - 2 * eps);
                }
                else
                {
                    loss = LogSigmoid(z).neg();
                    byZ = Sigmoid(z.neg()).neg();
                }
                byChosen = byZ.Times(beta);
                byRejected = byZ.Times(-beta);
                break;
            }
        }
        return new PairTerms(loss, byChosen, byRejected, chosenRatio.Times(beta), rejectedRatio.Times(beta));
    }
}
