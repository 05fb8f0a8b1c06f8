using Liger.Kernels.Runtime;
using static TorchSharp.torch;

namespace Liger.Kernels.Losses;

/// <summary>
/// CPO (Xu et al., 2024, arXiv:2401.08417): −(1 − ε) log σ(β(logp_c − logp_r)) − ε log σ(−β(logp_c − logp_r)), plus the
/// chosen NLL. No reference model. Defaults as Liger-Kernel: β 0.1, summed log-probs, NLL on with α 1, ε 0.
/// </summary>
public sealed record CpoLossOptions : PreferenceLossOptions
{
    /// <summary>CPO's defaults: summed log-probs, NLL term on.</summary>
    public CpoLossOptions() => ComputeNllLoss = true;

    /// <summary>ε: the assumed fraction of flipped preference labels (0 gives the plain sigmoid loss); in [0, 0.5].</summary>
    public double LabelSmoothing { get; init; }

    internal override void Validate()
    {
        base.Validate();
        PreferenceChecks.LabelSmoothing(LabelSmoothing);
    }
}

/// <summary>
/// SimPO (Meng et al., 2024, arXiv:2405.14734): −log σ(β(avg logp_c − avg logp_r) − γ), with CPO's label smoothing. No
/// reference model. Defaults as Liger-Kernel: β 0.1, γ 0.5, averaged log-probs, NLL term off.
/// </summary>
public sealed record SimPoLossOptions : PreferenceLossOptions
{
    /// <summary>SimPO's defaults: averaged (length-normalised) log-probs, NLL term off.</summary>
    public SimPoLossOptions() => AverageLogProb = true;

    /// <summary>γ: the target reward margin.</summary>
    public double Gamma { get; init; } = 0.5;

    /// <summary>ε, as <see cref="CpoLossOptions.LabelSmoothing"/>.</summary>
    public double LabelSmoothing { get; init; }

    internal override void Validate()
    {
        base.Validate();
        PreferenceChecks.LabelSmoothing(LabelSmoothing);
        if (!double.IsFinite(Gamma))
            throw new ArgumentOutOfRangeException(nameof(Gamma), Gamma, "Gamma must be finite.");
    }
}

/// <summary>Chunked fused-linear CPO; see <see cref="CpoLossOptions"/>.</summary>
public static class LigerFusedLinearCpoLoss
{
    /// <summary>The loss and its metrics.</summary>
    public static PreferenceLossResult Apply(Tensor hidden, Tensor weight, Tensor target, Tensor? bias = null, CpoLossOptions? options = null) =>
        LigerFusedLinearPreferenceLoss.Apply(hidden, weight, target, options ?? new CpoLossOptions(), bias);
}

/// <summary>Chunked fused-linear SimPO; see <see cref="SimPoLossOptions"/>.</summary>
public static class LigerFusedLinearSimPoLoss
{
    /// <summary>The loss and its metrics.</summary>
    public static PreferenceLossResult Apply(Tensor hidden, Tensor weight, Tensor target, Tensor? bias = null, SimPoLossOptions? options = null) =>
        LigerFusedLinearPreferenceLoss.Apply(hidden, weight, target, options ?? new SimPoLossOptions(), bias);
}

/// <summary>CPO's and SimPO's term (SimPO is CPO with a margin γ and averaged log-probs) and its derivatives.</summary>
internal sealed class CpoObjective(long pairs, double beta, double smoothing, double gamma) : PairedObjective(pairs)
{
    internal override PairTerms Pair(Tensor chosen, Tensor rejected, Tensor? referenceChosen, Tensor? referenceRejected)
    {
        var z = (chosen - rejected).Times(beta).Plus(-gamma);
        var loss = LogSigmoid(z).Times(-(1 - smoothing)) - LogSigmoid(z.neg()).Times(smoothing);
        // dloss/dz = −(1 − ε) σ(−z) + ε σ(z)
        var byZ = Sigmoid(z.neg()).Times(-(1 - smoothing)).Plus(Sigmoid(z).Times(smoothing));
        return new PairTerms(loss, byZ.Times(beta), byZ.Times(-beta), chosen.Times(beta), rejected.Times(beta));
    }
}

/// <summary>Range checks shared by the losses' options.</summary>
internal static class PreferenceChecks
{
    internal static void LabelSmoothing(double value)
    {
        if (!(value >= 0 && value <= 0.5))
            throw new ArgumentOutOfRangeException(nameof(LabelSmoothing), value, "LabelSmoothing must be in [0, 0.5].");
    }
}
