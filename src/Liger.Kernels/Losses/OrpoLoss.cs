using Liger.Kernels.Runtime;
using static TorchSharp.torch;

namespace Liger.Kernels.Losses;

/// <summary>
/// ORPO (Hong et al., 2024, arXiv:2403.07691): NLL of the chosen tokens plus β · −log σ(log odds(chosen) − log odds(rejected)),
/// odds(y) = p(y) / (1 − p(y)) with p the per-token average probability. No reference model. Defaults as Liger-Kernel:
/// β 0.1, averaged log-probs, NLL term on with α 1.
/// </summary>
public sealed record OrpoLossOptions : PreferenceLossOptions
{
    /// <summary>ORPO's defaults: averaged log-probs, NLL term on.</summary>
    public OrpoLossOptions()
    {
        AverageLogProb = true;
        ComputeNllLoss = true;
    }
}

/// <summary>Chunked fused-linear ORPO; see <see cref="OrpoLossOptions"/> and <see cref="LigerFusedLinearPreferenceLoss"/>.</summary>
public static class LigerFusedLinearOrpoLoss
{
    /// <summary>The loss and its metrics (extras "log_odds_ratio" = mean log σ(log odds), "log_odds_chosen" = mean log odds).</summary>
    public static PreferenceLossResult Apply(Tensor hidden, Tensor weight, Tensor target, Tensor? bias = null, OrpoLossOptions? options = null) =>
        LigerFusedLinearPreferenceLoss.Apply(hidden, weight, target, options ?? new OrpoLossOptions(), bias);
}

/// <summary>ORPO's odds-ratio term and its derivatives.</summary>
internal sealed class OrpoObjective(long pairs, OrpoLossOptions options) : PairedObjective(pairs)
{
    internal override PairTerms Pair(Tensor chosen, Tensor rejected, Tensor? referenceChosen, Tensor? referenceRejected)
    {
        double beta = options.Beta;
        // log odds(y) = logp − log(1 − e^logp); d/dlogp = 1 / (1 − e^logp) = 1 / −expm1(logp).
        var oneMinusChosen = chosen.expm1().neg();
        var oneMinusRejected = rejected.expm1().neg();
        var logOdds = chosen - rejected - (oneMinusChosen.log() - oneMinusRejected.log());
        var ratio = LogSigmoid(logOdds);
        // loss = −β log σ(z): dloss/dz = −β σ(−z)
        var byLogOdds = Sigmoid(logOdds.neg()).Times(-beta);
        return new PairTerms(ratio.Times(-beta), byLogOdds / oneMinusChosen, byLogOdds.neg() / oneMinusRejected,
            chosen.Times(beta), rejected.Times(beta),
            new Dictionary<string, Tensor> { ["log_odds_ratio"] = ratio, ["log_odds_chosen"] = logOdds });
    }
}
