using static TorchSharp.torch;

namespace Liger.Kernels.Losses;

/// <summary>
/// What every chunked preference loss shares. Each loss's options record sets the defaults Liger-Kernel gives
/// that loss (whether sequence log-probs are averaged over their tokens, whether the chosen NLL term is added).
/// </summary>
public abstract record PreferenceLossOptions
{
    /// <summary>Target value that marks a position with nothing to predict (prompt, padding).</summary>
    public long IgnoreIndex { get; init; } = -100;

    /// <summary>β: the temperature of the preference term (0.1 in Liger-Kernel and TRL).</summary>
    public double Beta { get; init; } = 0.1;

    /// <summary>
    /// A sequence's log-probability is the mean of its tokens' log-probs (true) or their sum (false).
    /// Defaults per loss: ORPO and SimPO average; DPO, CPO and KTO sum.
    /// </summary>
    public bool AverageLogProb { get; init; }

    /// <summary>Add α · (mean NLL of the chosen tokens over the whole batch). Defaults per loss: ORPO and CPO on.</summary>
    public bool ComputeNllLoss { get; init; }

    /// <summary>α: the weight of the NLL term when <see cref="ComputeNllLoss"/>.</summary>
    public double Alpha { get; init; } = 1.0;

    /// <summary>Gemma-style final logit soft cap (cap · tanh(logits / cap)) applied before the softmax; null: none.</summary>
    public double? Softcap { get; init; }

    /// <summary>
    /// Most bytes one chunk's logits may take (null: 1 GiB, as fused linear cross-entropy). A chunk holds whole
    /// sequences (whole pairs for paired losses), at least one; the chunk's logits, turned into their gradient in
    /// place, are the only vocabulary-sized memory the loss needs.
    /// </summary>
    public long? ChunkBytes { get; init; }

    /// <summary>Accumulate the weight's and bias's gradients over chunks in float32 (then cast to their dtype).</summary>
    public bool AccumulateInFloat32 { get; init; }

    /// <summary>Whether the loss needs a reference model's log-probs (DPO, KTO).</summary>
    internal virtual bool UsesReference => false;

    internal virtual void Validate()
    {
        if (!double.IsFinite(Beta) || Beta <= 0)
            throw new ArgumentOutOfRangeException(nameof(Beta), Beta, "Beta must be finite and positive.");
        if (!double.IsFinite(Alpha) || Alpha < 0)
            throw new ArgumentOutOfRangeException(nameof(Alpha), Alpha, "Alpha must be finite and non-negative.");
        if (Softcap is { } cap && (!double.IsFinite(cap) || cap <= 0))
            throw new ArgumentOutOfRangeException(nameof(Softcap), cap, "Softcap must be finite and positive (or null for none).");
        if (ChunkBytes is { } bytes && bytes < 1)
            throw new ArgumentOutOfRangeException(nameof(ChunkBytes), bytes, "ChunkBytes must be positive (or null for the default).");
    }
}

/// <summary>
/// The reference model's side of DPO and KTO: either its final hidden states and lm_head (the log-probs are then
/// computed chunk by chunk without gradients, never holding its logits), or its per-sequence log-probs computed
/// beforehand (same order and averaging as the policy's rows).
/// </summary>
public sealed record PreferenceReference
{
    /// <summary>The reference model's final hidden states, shaped like the policy's.</summary>
    public Tensor? Hidden { get; init; }

    /// <summary>The reference model's lm_head weight (V, H).</summary>
    public Tensor? Weight { get; init; }

    /// <summary>The reference model's lm_head bias (V), or null.</summary>
    public Tensor? Bias { get; init; }

    /// <summary>Per-sequence log-probs, float32 (N), instead of <see cref="Hidden"/> and <see cref="Weight"/>.</summary>
    public Tensor? LogProbs { get; init; }

    /// <summary>A reference given by its hidden states and lm_head.</summary>
    public static PreferenceReference FromModel(Tensor hidden, Tensor weight, Tensor? bias = null) =>
        new() { Hidden = hidden, Weight = weight, Bias = bias };

    /// <summary>A reference given by its per-sequence log-probs.</summary>
    public static PreferenceReference FromLogProbs(Tensor logProbs) => new() { LogProbs = logProbs };
}

/// <summary>
/// A paired preference loss and what TRL-style trainers log, all float32 and detached (no host synchronisation).
/// </summary>
/// <param name="Loss">The loss (scalar): preference term averaged over pairs, plus α · NLL when asked.</param>
/// <param name="ChosenLogProbs">Policy log-prob of each chosen sequence (P).</param>
/// <param name="RejectedLogProbs">Policy log-prob of each rejected sequence (P).</param>
/// <param name="ChosenRewards">The loss's implicit reward of each chosen sequence (P): β · log-prob, minus the reference's where there is one.</param>
/// <param name="RejectedRewards">The same for each rejected sequence (P).</param>
/// <param name="ChosenLogitsMean">Mean raw logit over the chosen sequences' positions and vocabulary.</param>
/// <param name="RejectedLogitsMean">Mean raw logit over the rejected sequences' positions and vocabulary.</param>
/// <param name="NllLoss">Mean NLL of the chosen tokens (before α); zero when the NLL term is off.</param>
/// <param name="Extras">Loss-specific means over pairs (ORPO: "log_odds_ratio", "log_odds_chosen").</param>
public sealed record PreferenceLossResult(Tensor Loss, Tensor ChosenLogProbs, Tensor RejectedLogProbs, Tensor ChosenRewards,
    Tensor RejectedRewards, Tensor ChosenLogitsMean, Tensor RejectedLogitsMean, Tensor NllLoss, IReadOnlyDictionary<string, Tensor> Extras)
{
    /// <summary>Fraction of pairs whose chosen reward beats the rejected one (scalar, on the device).</summary>
    public Tensor RewardAccuracy() => ChosenRewards.gt(RejectedRewards).to(ScalarType.Float32).mean();

    /// <summary>Mean of chosen minus rejected reward (scalar, on the device).</summary>
    public Tensor RewardMargin() => (ChosenRewards - RejectedRewards).mean();
}

/// <summary>KTO's loss and metrics, all float32 and detached.</summary>
/// <param name="Loss">The loss (scalar), averaged over the batch's sequences.</param>
/// <param name="LogProbs">Policy log-prob of each sequence (N).</param>
/// <param name="Rewards">β · (log-prob − reference log-prob) of each sequence (N).</param>
/// <param name="LogitsMean">Mean raw logit of each sequence over its positions and vocabulary (N).</param>
/// <param name="Kl">The KL estimate the loss used (scalar; zero when none was given).</param>
public sealed record KtoLossResult(Tensor Loss, Tensor LogProbs, Tensor Rewards, Tensor LogitsMean, Tensor Kl);
