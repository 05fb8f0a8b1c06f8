using Liger.Kernels.Losses;

namespace Microsoft.ML.Liger.PreferenceAlignment;

/// <summary>
/// How a model was preference-aligned, as <see cref="CausalLMModelInfo.Alignment"/> records it in liger_model.json: the
/// algorithm, the loss settings in force (defaults resolved), the reference model and the columns. Settings that the
/// algorithm does not use are null.
/// </summary>
public sealed record PreferenceAlignmentInfo
{
    /// <summary>The objective.</summary>
    public PreferenceAlgorithm Algorithm { get; init; }
    /// <summary>β.</summary>
    public double Beta { get; init; }
    /// <summary>Whether sequence log-probs were averaged over their tokens (else summed).</summary>
    public bool AverageLogProb { get; init; }
    /// <summary>Whether the chosen NLL term was in the loss.</summary>
    public bool NllLoss { get; init; }
    /// <summary>α, the NLL term's weight.</summary>
    public double? Alpha { get; init; }
    /// <summary>ε (CPO, SimPO, DPO).</summary>
    public double? LabelSmoothing { get; init; }
    /// <summary>γ (SimPO).</summary>
    public double? Gamma { get; init; }
    /// <summary>DPO's variant.</summary>
    public DpoLossType? DpoLossType { get; init; }
    /// <summary>KTO's desirable weight.</summary>
    public double? DesirableWeight { get; init; }
    /// <summary>KTO's undesirable weight.</summary>
    public double? UndesirableWeight { get; init; }
    /// <summary>Whether KTO estimated its KL baseline.</summary>
    public bool? EstimateKl { get; init; }
    /// <summary>The reference model ("starting weights" or a folder), for DPO and KTO.</summary>
    public string? Reference { get; init; }
    /// <summary>Whether the reference log-probs were computed once before training.</summary>
    public bool? PrecomputedReference { get; init; }
    /// <summary>Chosen column (paired algorithms).</summary>
    public string? ChosenColumnName { get; init; }
    /// <summary>Rejected column (paired algorithms).</summary>
    public string? RejectedColumnName { get; init; }
    /// <summary>Completion column (KTO).</summary>
    public string? CompletionColumnName { get; init; }
    /// <summary>Label column (KTO).</summary>
    public string? LabelColumnName { get; init; }
    /// <summary>The prompt length limit, if any.</summary>
    public int? MaxPromptLength { get; init; }
    /// <summary>The metrics of the last training report (TRL's names: "rewards/accuracies", "rewards/margins", ...).</summary>
    public IReadOnlyDictionary<string, double>? FinalMetrics { get; init; }
}
