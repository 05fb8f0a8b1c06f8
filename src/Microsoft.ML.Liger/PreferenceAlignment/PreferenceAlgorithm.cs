namespace Microsoft.ML.Liger.PreferenceAlignment;

/// <summary>The preference-alignment objective (each one of Liger's chunked fused-linear losses).</summary>
public enum PreferenceAlgorithm
{
    /// <summary>
    /// ORPO (Hong et al., 2024): the chosen response's NLL plus β times an odds-ratio term between chosen and
    /// rejected; no reference model, no separate SFT stage. Columns: prompt, chosen, rejected.
    /// </summary>
    Orpo,

    /// <summary>
    /// DPO (Rafailov et al., 2023): −log σ(β (Δ_chosen − Δ_rejected)), Δ = log-prob minus the frozen reference
    /// model's (and its variants: see <see cref="PreferenceAlignmentOptions.DpoLossType"/>). Columns: prompt, chosen, rejected.
    /// </summary>
    Dpo,

    /// <summary>CPO (Xu et al., 2024): DPO's sigmoid loss without a reference, plus the chosen NLL. Columns: prompt, chosen, rejected.</summary>
    Cpo,

    /// <summary>
    /// SimPO (Meng et al., 2024): −log σ(β (avg log-prob chosen − avg log-prob rejected) − γ), length-normalised, no
    /// reference. Columns: prompt, chosen, rejected.
    /// </summary>
    SimPo,

    /// <summary>
    /// KTO (Ethayarajh et al., 2024): unpaired; each completion is labelled desirable or undesirable and compared with the
    /// frozen reference model through a KL baseline. Columns: prompt, completion, label (Boolean).
    /// </summary>
    Kto,
}
