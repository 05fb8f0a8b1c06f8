using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>What the eager preference-loss reference computes (float64, CPU).</summary>
public sealed record PreferenceExpected(Tensor Loss, Tensor LogProbs, Tensor Rewards, Tensor ChosenLogitsMean, Tensor RejectedLogitsMean,
    Tensor SequenceLogitsMean, Tensor Nll, Dictionary<string, Tensor> Extras, Tensor GradHidden, Tensor GradWeight, Tensor? GradBias, Tensor Kl);

/// <summary>Which loss the reference computes, and its hyper-parameters (as the papers and Liger-Kernel define them).</summary>
public sealed record PreferenceCase(string Loss, double Beta = 0.1, bool Average = false, bool Nll = false, double Alpha = 1.0,
    double LabelSmoothing = 0, double Gamma = 0, string DpoType = "sigmoid", double DesirableWeight = 1, double UndesirableWeight = 1,
    double? Softcap = null);

public static partial class References
{
    /// <summary>
    /// A preference loss by autograd through the full logits, in float64: logits = h·Wᵀ + b (soft-capped when asked),
    /// log_softmax, the targets' log-probs summed (or averaged) per sequence, the loss's formula written out as in
    /// its paper, plus α · the chosen tokens' mean NLL. Paired losses read [chosen; rejected] rows.
    /// </summary>
    public static PreferenceExpected Preference(PreferenceCase c, Tensor hidden, Tensor weight, Tensor? bias, Tensor target,
        Tensor? referenceHidden, Tensor? referenceWeight, Tensor? labels, Tensor? kl, Tensor gradOutput, long ignoreIndex = -100)
    {
        var h = Leaf64(hidden);
        var w = Leaf64(weight);
        var b = bias is null ? null : Leaf64(bias);
        var y = target.cpu();
        long n = y.shape[0], vocab = weight.shape[0], pairs = n / 2;
        var mask = y.NotEqualTo(ignoreIndex);
        var counts = mask.sum(1).to(ScalarType.Float64);

        Tensor Logits(Tensor x, Tensor weights, Tensor? biases)
        {
            var logits = matmul(x, weights.t());
            if (biases is not null) logits = logits.Plus(biases);
            return c.Softcap is double cap ? (logits.DividedBy(cap)).tanh().Times(cap) : logits;
        }
        (Tensor Sequence, Tensor Tokens) LogProbs(Tensor logits)
        {
            var tokens = logits.log_softmax(-1).gather(-1, where(mask, y, zeros_like(y)).unsqueeze(-1)).squeeze(-1) * mask;
            var sums = tokens.sum(1);
            return (c.Average ? sums / counts : sums, tokens);
        }
        var raw = matmul(h, w.t()).Plus((b is null ? zeros(1, dtype: ScalarType.Float64) : b));
        var (logps, tokenLogps) = LogProbs(Logits(h, w, b));
        Tensor? reference = null;
        if (referenceHidden is not null)
            using (no_grad())
                reference = LogProbs(Logits(referenceHidden.cpu().to(ScalarType.Float64), referenceWeight!.cpu().to(ScalarType.Float64), null)).Sequence;

        var extras = new Dictionary<string, Tensor>();
        Tensor loss, rewards, klUsed = zeros(1, dtype: ScalarType.Float64).squeeze();
        if (c.Loss == "kto")
        {
            var ratio = reference is null ? logps : logps - reference;
            if (kl is not null) klUsed = kl.cpu().to(ScalarType.Float64).mean();
            var good = labels!.cpu();
            var desirable = (((ratio - klUsed).Times(c.Beta)).sigmoid().SubtractedFrom(1)).Times(c.DesirableWeight);
            var undesirable = (((klUsed - ratio).Times(c.Beta)).sigmoid().SubtractedFrom(1)).Times(c.UndesirableWeight);
            loss = where(good, desirable, undesirable).sum().DividedBy(n);
            rewards = ratio.Times(c.Beta);
        }
        else
        {
            var (chosen, rejected) = (logps[..(int)pairs], logps[(int)pairs..]);
            Tensor perPair;
            switch (c.Loss)
            {
                case "orpo":
                {
                    var logOdds = (chosen - rejected) - (log1p(-exp(chosen)) - log1p(-exp(rejected)));
                    perPair = nn.functional.logsigmoid(logOdds).Times(-c.Beta);
                    extras["log_odds_ratio"] = nn.functional.logsigmoid(logOdds).mean();
                    extras["log_odds_chosen"] = logOdds.mean();
                    rewards = logps.Times(c.Beta);
                    break;
                }
                case "cpo" or "simpo":
                {
                    var z = (chosen - rejected).Times(c.Beta).Minus(c.Gamma);
                    perPair = nn.functional.logsigmoid(z).Times(-(1 - c.LabelSmoothing)) - nn.functional.logsigmoid(-z).Times(c.LabelSmoothing);
                    rewards = logps.Times(c.Beta);
                    break;
                }
                case "dpo":
                {
                    var ratio = reference is null ? logps : logps - reference;
                    var (u, v) = (ratio[..(int)pairs], ratio[(int)pairs..]);
                    var z = (u - v).Times(c.Beta);
                    double e = c.LabelSmoothing;
                    perPair = c.DpoType switch
                    {
                        "sigmoid" => -nn.functional.logsigmoid(z),
                        "hinge" => nn.functional.relu(z.SubtractedFrom(1)),
                        "ipo" => (u - v).Minus(1 / (2 * c.Beta)).Squared(),
                        "robust" => (nn.functional.logsigmoid(z).Times(-(1 - e)).Plus(nn.functional.logsigmoid(-z).Times(e))).DividedBy(1 - 2 * e),
                        "apo_zero" => (u.Times(c.Beta)).sigmoid().SubtractedFrom(1).Plus((v.Times(c.Beta)).sigmoid()),
                        "apo_down" => (u.Times(c.Beta)).sigmoid().Plus(1) - z.sigmoid(),
                        _ => throw new ArgumentException(c.DpoType),
                    };
                    rewards = ratio.Times(c.Beta);
                    break;
                }
                default: throw new ArgumentException(c.Loss);
            }
            loss = perPair.sum().DividedBy(pairs);
        }
        var chosenMask = mask[..(int)pairs];
        var nll = -tokenLogps[..(int)pairs].sum() / chosenMask.sum();
        if (c.Nll)
            loss = loss.Plus(nll.Times(c.Alpha));
        loss.backward([gradOutput.cpu().to(ScalarType.Float64)]);
        Tensor LogitsMean(Tensor rows, Tensor rowMask) => (rows * rowMask.unsqueeze(-1)).sum() / (rowMask.sum().Times(vocab));
        using var _ = no_grad();
        return new PreferenceExpected(loss.detach(), logps.detach(), rewards.detach(),
            LogitsMean(raw[..(int)pairs].detach(), chosenMask), LogitsMean(raw[(int)pairs..].detach(), mask[(int)pairs..]),
            (raw.detach() * mask.unsqueeze(-1)).sum([1, 2]) / (counts.Times(vocab)), nll.detach(),
            extras.ToDictionary(e => e.Key, e => e.Value.detach()), h.grad!, w.grad!, b?.grad, klUsed);
    }
}
