using static TorchSharp.torch;

namespace Liger.Kernels.Losses;

/// <summary>
/// Per-sequence log-probs of targets under a linear head, chunk by chunk, never holding more than one chunk of
/// logits and keeping no gradient: what a frozen reference model contributes to DPO and KTO, and what KTO's KL
/// estimate and evaluation read.
/// </summary>
public static class LigerFusedLinearSequenceLogProbs
{
    /// <summary>float32 (N): Σ (or mean, when <paramref name="average"/>) over each sequence's targets of log p(target).</summary>
    /// <param name="hidden">(N, T, H) final hidden states.</param>
    /// <param name="weight">lm_head's weight (V, H).</param>
    /// <param name="target">(N, T) int64 shifted targets; <paramref name="ignoreIndex"/> where nothing is predicted.</param>
    /// <param name="bias">lm_head's bias (V), or null.</param>
    /// <param name="average">Mean over the sequence's targets instead of the sum.</param>
    /// <param name="ignoreIndex">The target value that marks a position without a target.</param>
    /// <param name="softcap">Final logit soft cap, or null.</param>
    /// <param name="chunkBytes">Most bytes of logits a chunk may take (null: 1 GiB).</param>
    public static Tensor Apply(Tensor hidden, Tensor weight, Tensor target, Tensor? bias = null, bool average = false,
        long ignoreIndex = -100, double? softcap = null, long? chunkBytes = null)
    {
        var options = new LogProbsOptions { AverageLogProb = average, IgnoreIndex = ignoreIndex, Softcap = softcap, ChunkBytes = chunkBytes };
        PreferenceChunks.Validate(hidden, weight, target, bias, options, paired: false);
        using var logProbs = LigerFusedLinearPreferenceLoss.ReferenceLogProbs(PreferenceReference.FromModel(hidden, weight, bias), hidden, target, options)!;
        return logProbs.to(ScalarType.Float32);
    }

    /// <summary>The loop's options for a log-prob pass (no loss).</summary>
    private sealed record LogProbsOptions : PreferenceLossOptions;
}
