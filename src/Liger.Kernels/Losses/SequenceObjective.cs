using Liger.Kernels.Runtime;
using static TorchSharp.torch;

namespace Liger.Kernels.Losses;

/// <summary>
/// A preference loss as a function of per-sequence log-probs, with its gradient derived by hand. Works on a
/// chunk's sequences in float64 (a few numbers a chunk); <see cref="PreferenceChunks"/> turns the gradient
/// into per-row factors.
/// </summary>
internal abstract class SequenceObjective
{
    /// <summary>True: sequences come as pairs (a chunk is k chosen then their k rejected).</summary>
    internal abstract bool Paired { get; }

    /// <summary>What a chunk contributes.</summary>
    /// <param name="Loss">Its share of the loss (already divided by the batch's pair or sequence count).</param>
    /// <param name="Gradient">d loss / d logp of each of the chunk's sequences (same normalisation).</param>
    /// <param name="Rewards">Each sequence's implicit reward.</param>
    /// <param name="ExtraSums">Loss-specific metrics summed over the chunk (means once divided by the batch's count).</param>
    internal sealed record Terms(Tensor Loss, Tensor Gradient, Tensor Rewards, IReadOnlyDictionary<string, Tensor> ExtraSums);

    /// <param name="logProbs">The chunk's sequence log-probs, float64 (chosen then rejected when paired).</param>
    /// <param name="reference">The reference model's log-probs of the same sequences, or null.</param>
    /// <param name="first">Index of the chunk's first pair (paired) or sequence.</param>
    /// <param name="count">Pairs (paired) or sequences in the chunk.</param>
    internal abstract Terms Evaluate(Tensor logProbs, Tensor? reference, long first, long count);
}

/// <summary>A paired loss: a formula per pair of (chosen, rejected) log-probs, averaged over the batch's pairs.</summary>
internal abstract class PairedObjective(long pairs) : SequenceObjective
{
    internal override bool Paired => true;

    /// <summary>Per pair: the loss, its derivatives by the chosen and the rejected log-prob, the two rewards, extras.</summary>
    internal sealed record PairTerms(Tensor Loss, Tensor ByChosen, Tensor ByRejected, Tensor ChosenReward, Tensor RejectedReward,
        IReadOnlyDictionary<string, Tensor>? Extras = null);

    /// <param name="chosen">Chosen log-probs (k), float64.</param>
    /// <param name="rejected">Rejected log-probs (k).</param>
    /// <param name="referenceChosen">The reference's chosen log-probs, or null.</param>
    /// <param name="referenceRejected">The reference's rejected log-probs, or null.</param>
    internal abstract PairTerms Pair(Tensor chosen, Tensor rejected, Tensor? referenceChosen, Tensor? referenceRejected);

    internal override Terms Evaluate(Tensor logProbs, Tensor? reference, long first, long count)
    {
        var terms = Pair(logProbs.narrow(0, 0, count), logProbs.narrow(0, count, count),
            reference?.narrow(0, 0, count), reference?.narrow(0, count, count));
        var extras = (terms.Extras ?? new Dictionary<string, Tensor>()).ToDictionary(e => e.Key, e => e.Value.sum().DividedBy(pairs));
        return new Terms(terms.Loss.sum().DividedBy(pairs), cat([terms.ByChosen, terms.ByRejected], 0).DividedBy(pairs),
            cat([terms.ChosenReward, terms.RejectedReward], 0), extras);
    }

    /// <summary>σ(x).</summary>
    protected static Tensor Sigmoid(Tensor x) => x.sigmoid();

    /// <summary>log σ(x), stable for large |x|.</summary>
    protected static Tensor LogSigmoid(Tensor x) => TorchSharp.torch.nn.functional.logsigmoid(x);

    /// <summary>1 − x.</summary>
    protected static Tensor OneMinus(Tensor x) => x.neg().Plus(1.0);
}
