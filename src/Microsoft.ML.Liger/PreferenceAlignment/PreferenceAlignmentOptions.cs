using Liger.Kernels.Losses;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Training;

namespace Microsoft.ML.Liger.PreferenceAlignment;

/// <summary>
/// Options of <see cref="LigerCatalog.PreferenceAlignment"/> and <see cref="LigerCatalog.Orpo"/>: the algorithm and its
/// loss hyper-parameters, which model (and reference model) and tokenizer, which columns, and the training loop's options
/// (inherited: batch size in pairs, learning rate, schedule, precision, checkpoints, ...).
/// </summary>
/// <remarks>
/// <para>Paired algorithms (ORPO, DPO, CPO, SimPO) read a prompt, a chosen and a rejected response per row; KTO reads a
/// prompt, a completion and a Boolean label (true: desirable). <see cref="CausalLMTrainingOptions.BatchSize"/> counts
/// rows: pairs for the paired algorithms (each pair is two sequences), completions for KTO.</para>
/// <para>Loss hyper-parameters left null take the algorithm's default (Liger-Kernel's and TRL's: β 0.1, and per
/// algorithm whether log-probs are averaged and whether the NLL term is on). Setting one that the algorithm does not
/// use is an error that names it, so a setting never silently does nothing.</para>
/// </remarks>
public sealed class PreferenceAlignmentOptions : CausalLMEstimatorOptions
{
    /// <summary>Sets the defaults that differ from the loop's: learning rate 1e-6 (TRL's DPO, ORPO and KTO configs).</summary>
    public PreferenceAlignmentOptions() => LearningRate = 1e-6;

    /// <summary>The objective; null: ORPO (the one that needs neither a reference model nor a prior SFT stage).</summary>
    public PreferenceAlgorithm? Algorithm { get; set; }

    // ---- Loss hyper-parameters -------------------------------------------------------------------------------

    /// <summary>β, the temperature of the preference term (ORPO's weight of the odds-ratio term). Null: 0.1 for every algorithm.</summary>
    public double? Beta { get; set; }

    /// <summary>
    /// Add α · (mean NLL of the chosen tokens) to the loss. Null: on for ORPO and CPO, off for DPO and SimPO (TRL's
    /// rpo_alpha); KTO has no NLL term.
    /// </summary>
    public bool? ComputeNllLoss { get; set; }

    /// <summary>α, the weight of the NLL term; only with the NLL term on. Null: 1.</summary>
    public double? Alpha { get; set; }

    /// <summary>
    /// Sequence log-probs as the mean over the response's tokens (true) or their sum (false). Null: averaged for ORPO and
    /// SimPO (and DPO's IPO variant), summed for DPO, CPO and KTO.
    /// </summary>
    public bool? AverageLogProb { get; set; }

    /// <summary>ε, the assumed fraction of flipped labels: CPO and SimPO (in [0, 0.5]), DPO's Robust variant (in [0, 0.5)). Null: 0.</summary>
    public double? LabelSmoothing { get; set; }

    /// <summary>γ, SimPO's target reward margin. Null: 0.5.</summary>
    public double? Gamma { get; set; }

    /// <summary>DPO's variant (sigmoid, hinge, IPO, robust, APO-zero, APO-down). Null: <see cref="global::Liger.Kernels.Losses.DpoLossType.Sigmoid"/>.</summary>
    public DpoLossType? DpoLossType { get; set; }

    /// <summary>KTO's weight of desirable completions' losses. Null: 1.</summary>
    public double? DesirableWeight { get; set; }

    /// <summary>KTO's weight of undesirable completions' losses. Null: 1.</summary>
    public double? UndesirableWeight { get; set; }

    /// <summary>
    /// KTO's KL baseline: per micro-batch, the mean of policy minus reference log-probs of mismatched sequences (each
    /// row's prompt with the previous row's completion, in the data's order, as TRL pairs them), detached and clamped at
    /// 0. Costs one more forward of the policy and the reference (without gradients) per micro-batch. Null: on.
    /// </summary>
    public bool? EstimateKl { get; set; }

    // ---- Reference model (DPO, KTO) --------------------------------------------------------------------------

    /// <summary>
    /// DPO and KTO: a Hugging Face checkpoint folder of the frozen reference model (same vocabulary). Null: the starting
    /// weights (a frozen copy made before training; on resume, the starting weights again, never the checkpoint's).
    /// </summary>
    public string? ReferenceModelPath { get; set; }

    /// <summary>
    /// DPO and KTO: compute the reference log-probs of every training (and validation) sequence once, before training,
    /// then free the reference model: its memory and its forward per step are saved. Default false.
    /// </summary>
    public bool PrecomputeReferenceLogProbs { get; set; }

    // ---- Data ------------------------------------------------------------------------------------------------

    /// <summary>The prompt column (text). Default "Prompt".</summary>
    public string PromptColumnName { get; set; } = "Prompt";

    /// <summary>Paired algorithms: the preferred response column (text). Default "Chosen".</summary>
    public string ChosenColumnName { get; set; } = "Chosen";

    /// <summary>Paired algorithms: the dispreferred response column (text). Default "Rejected".</summary>
    public string RejectedColumnName { get; set; } = "Rejected";

    /// <summary>KTO: the completion column (text). Default "Completion".</summary>
    public string CompletionColumnName { get; set; } = "Completion";

    /// <summary>KTO: the label column (Boolean; true: the completion is desirable). Default "Label".</summary>
    public string LabelColumnName { get; set; } = "Label";

    /// <summary>
    /// Longest prompt in tokens; longer prompts keep their end (the part next to the response; a leading BOS stays).
    /// Whatever this says, a prompt is cut so that at least one response token fits in
    /// <see cref="CausalLMTrainingOptions.MaxContextLength"/>; responses keep their start. Null: no limit of its own.
    /// </summary>
    public int? MaxPromptLength { get; set; }

    /// <summary>
    /// Name of the transformer's generated-completion column (added when the input has the prompt column). Default
    /// "Generated" ("Completion" is KTO's input column).
    /// </summary>
    public string GeneratedColumnName { get; set; } = "Generated";

    /// <summary>Throws naming the first option that is out of range or does not apply to the algorithm (null: ORPO).</summary>
    public override void Validate() => Validate(Algorithm ?? PreferenceAlgorithm.Orpo);

    internal void Validate(PreferenceAlgorithm algorithm)
    {
        ValidateModelAndColumns(algorithm == PreferenceAlgorithm.Kto
            ? [(nameof(PromptColumnName), PromptColumnName), (nameof(CompletionColumnName), CompletionColumnName),
               (nameof(LabelColumnName), LabelColumnName), (nameof(GeneratedColumnName), GeneratedColumnName)]
            : [(nameof(PromptColumnName), PromptColumnName), (nameof(ChosenColumnName), ChosenColumnName),
               (nameof(RejectedColumnName), RejectedColumnName), (nameof(GeneratedColumnName), GeneratedColumnName)]);
        if (Packing)
            throw new ArgumentException($"Option '{nameof(Packing)}' does not apply to preference alignment: each sequence's log-prob needs its own row.", nameof(Packing));
        if (MaxPromptLength is int prompt && prompt < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxPromptLength), prompt, $"Option '{nameof(MaxPromptLength)}' must be ≥ 1 (or null); got {prompt}.");
        PreferenceLossSettings.From(this, algorithm, softcap: null); // the loss options' own checks, named
    }
}
