using System.Globalization;
using Liger.Kernels.Losses;

namespace Microsoft.ML.Liger.PreferenceAlignment;

/// <summary>
/// The algorithm's loss options, built from <see cref="PreferenceAlignmentOptions"/>: each null hyper-parameter takes the
/// loss's own default (Liger-Kernel's), each one set for an algorithm that does not use it is an error naming it.
/// </summary>
internal sealed class PreferenceLossSettings
{
    private PreferenceLossSettings(PreferenceAlgorithm algorithm, PreferenceLossOptions loss, bool estimateKl, string? referenceModelPath, bool precompute)
    {
        Algorithm = algorithm;
        Loss = loss;
        EstimateKl = estimateKl;
        ReferenceModelPath = referenceModelPath;
        PrecomputeReference = precompute;
    }

    public PreferenceAlgorithm Algorithm { get; }

    /// <summary>The loss's options: <see cref="KtoLossOptions"/> for KTO, the paired loss's otherwise.</summary>
    public PreferenceLossOptions Loss { get; }

    public bool Paired => Algorithm != PreferenceAlgorithm.Kto;

    /// <summary>DPO and KTO compare with a frozen reference model.</summary>
    public bool UsesReference => Algorithm is PreferenceAlgorithm.Dpo or PreferenceAlgorithm.Kto;

    public bool EstimateKl { get; }

    public string? ReferenceModelPath { get; }

    public bool PrecomputeReference { get; }

    /// <param name="options">The options.</param>
    /// <param name="algorithm">The algorithm in force (Orpo() forces ORPO).</param>
    /// <param name="softcap">The model's final logit soft cap (Gemma 2), which the loss applies to its logits; null: none.</param>
    public static PreferenceLossSettings From(PreferenceAlignmentOptions options, PreferenceAlgorithm algorithm, double? softcap)
    {
        if (!Enum.IsDefined(algorithm))
            throw new ArgumentOutOfRangeException(nameof(options.Algorithm), algorithm, "Unknown preference algorithm.");
        void NotFor(string option, object? value, string usedBy)
        {
            if (value is not null)
                throw new ArgumentException($"Option '{option}' applies to {usedBy} only; the algorithm is {algorithm}. Leave it null.", option);
        }
        bool kto = algorithm == PreferenceAlgorithm.Kto, dpo = algorithm == PreferenceAlgorithm.Dpo, simpo = algorithm == PreferenceAlgorithm.SimPo;
        NotFor(nameof(options.Gamma), simpo ? null : options.Gamma, "SimPo");
        NotFor(nameof(options.DpoLossType), dpo ? null : options.DpoLossType, "Dpo");
        NotFor(nameof(options.DesirableWeight), kto ? null : options.DesirableWeight, "Kto");
        NotFor(nameof(options.UndesirableWeight), kto ? null : options.UndesirableWeight, "Kto");
        NotFor(nameof(options.EstimateKl), kto ? null : options.EstimateKl, "Kto");
        NotFor(nameof(options.LabelSmoothing), algorithm is PreferenceAlgorithm.Cpo or PreferenceAlgorithm.SimPo or PreferenceAlgorithm.Dpo ? null : options.LabelSmoothing,
            "Cpo, SimPo and Dpo's Robust variant");
        NotFor(nameof(options.ReferenceModelPath), dpo || kto ? null : options.ReferenceModelPath, "Dpo and Kto (the algorithms with a reference model)");
        if (options.PrecomputeReferenceLogProbs && !(dpo || kto))
            throw new ArgumentException($"Option '{nameof(options.PrecomputeReferenceLogProbs)}' applies to Dpo and Kto only (the algorithms with a reference model); the algorithm is {algorithm}.",
                nameof(options.PrecomputeReferenceLogProbs));
        if (kto && options.ComputeNllLoss == true)
            throw new ArgumentException($"Option '{nameof(options.ComputeNllLoss)}' cannot be true for Kto: KTO has no NLL term.", nameof(options.ComputeNllLoss));

        PreferenceLossOptions loss = algorithm switch
        {
            PreferenceAlgorithm.Orpo => new OrpoLossOptions(),
            PreferenceAlgorithm.Dpo => new DpoLossOptions { LossType = options.DpoLossType ?? global::Liger.Kernels.Losses.DpoLossType.Sigmoid, LabelSmoothing = options.LabelSmoothing ?? 0 },
            PreferenceAlgorithm.Cpo => new CpoLossOptions { LabelSmoothing = options.LabelSmoothing ?? 0 },
            PreferenceAlgorithm.SimPo => new SimPoLossOptions { LabelSmoothing = options.LabelSmoothing ?? 0, Gamma = options.Gamma ?? 0.5 },
            _ => new KtoLossOptions { DesirableWeight = options.DesirableWeight ?? 1.0, UndesirableWeight = options.UndesirableWeight ?? 1.0 },
        };
        bool ipo = loss is DpoLossOptions { LossType: global::Liger.Kernels.Losses.DpoLossType.Ipo };
        if (ipo && options.AverageLogProb == false)
            throw new ArgumentException($"Option '{nameof(options.AverageLogProb)}' cannot be false for DPO's IPO variant: IPO's log-probs are averaged (as TRL's).", nameof(options.AverageLogProb));
        bool nll = options.ComputeNllLoss ?? loss.ComputeNllLoss;
        if (!nll && options.Alpha is not null)
            throw new ArgumentException($"Option '{nameof(options.Alpha)}' weighs the NLL term, which is off for {algorithm} (set {nameof(options.ComputeNllLoss)} = true to use it).", nameof(options.Alpha));
        loss = loss with
        {
            Beta = options.Beta ?? loss.Beta,
            ComputeNllLoss = nll,
            Alpha = options.Alpha ?? loss.Alpha,
            AverageLogProb = ipo || (options.AverageLogProb ?? loss.AverageLogProb),
            Softcap = softcap,
        };
        loss.Validate(); // Beta, Alpha, LabelSmoothing, Gamma, weights: each message names its option
        return new PreferenceLossSettings(algorithm, loss, kto && (options.EstimateKl ?? true),
            dpo || kto ? options.ReferenceModelPath : null, options.PrecomputeReferenceLogProbs);
    }

    /// <summary>Where the reference comes from, in words (null without one).</summary>
    public string? ReferenceDescription => !UsesReference ? null : ReferenceModelPath ?? "starting weights";

    /// <summary>The settings that fix the trajectory, for the run-shape check of a resume.</summary>
    public Dictionary<string, string> RunShape(int? maxPromptLength)
    {
        var shape = new Dictionary<string, string>
        {
            ["algorithm"] = Algorithm.ToString(),
            ["beta"] = Number(Loss.Beta),
            ["average_log_prob"] = Loss.AverageLogProb.ToString(),
            ["nll_loss"] = Loss.ComputeNllLoss ? Number(Loss.Alpha) : "off",
            ["max_prompt_length"] = maxPromptLength?.ToString(CultureInfo.InvariantCulture) ?? "none",
        };
        switch (Loss)
        {
            case DpoLossOptions d:
                shape["dpo_loss_type"] = d.LossType.ToString();
                shape["label_smoothing"] = Number(d.LabelSmoothing);
                break;
            case CpoLossOptions c:
                shape["label_smoothing"] = Number(c.LabelSmoothing);
                break;
            case SimPoLossOptions s:
                shape["label_smoothing"] = Number(s.LabelSmoothing);
                shape["gamma"] = Number(s.Gamma);
                break;
            case KtoLossOptions k:
                shape["desirable_weight"] = Number(k.DesirableWeight);
                shape["undesirable_weight"] = Number(k.UndesirableWeight);
                shape["kl"] = EstimateKl.ToString();
                break;
        }
        if (UsesReference)
        {
            shape["reference"] = ReferenceDescription!;
            shape["precomputed_reference"] = PrecomputeReference.ToString();
        }
        return shape;
    }

    /// <summary>What liger_model.json records of the alignment.</summary>
    public PreferenceAlignmentInfo Info(PreferenceAlignmentOptions options) => new()
    {
        Algorithm = Algorithm,
        Beta = Loss.Beta,
        AverageLogProb = Loss.AverageLogProb,
        NllLoss = Loss.ComputeNllLoss,
        Alpha = Loss.ComputeNllLoss ? Loss.Alpha : null,
        LabelSmoothing = Loss switch { DpoLossOptions d => d.LabelSmoothing, CpoLossOptions c => c.LabelSmoothing, SimPoLossOptions s => s.LabelSmoothing, _ => null },
        Gamma = (Loss as SimPoLossOptions)?.Gamma,
        DpoLossType = (Loss as DpoLossOptions)?.LossType,
        DesirableWeight = (Loss as KtoLossOptions)?.DesirableWeight,
        UndesirableWeight = (Loss as KtoLossOptions)?.UndesirableWeight,
        EstimateKl = Paired ? null : EstimateKl,
        Reference = ReferenceDescription,
        PrecomputedReference = UsesReference ? PrecomputeReference : null,
        ChosenColumnName = Paired ? options.ChosenColumnName : null,
        RejectedColumnName = Paired ? options.RejectedColumnName : null,
        CompletionColumnName = Paired ? null : options.CompletionColumnName,
        LabelColumnName = Paired ? null : options.LabelColumnName,
        MaxPromptLength = options.MaxPromptLength,
    };

    private static string Number(double value) => value.ToString("R", CultureInfo.InvariantCulture);
}
