using Microsoft.ML.Liger.Models;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Training;

/// <summary>
/// The training loop for a <see cref="CausalLM"/> on language modelling or supervised fine-tuning: AdamW with warm-up
/// and decay, gradient accumulation with the loss normalised over the whole step's target tokens (so accumulation
/// equals one bigger batch), global-norm clipping, fp32 master weights for bf16 models, periodic evaluation, atomic
/// checkpoints and exact resume. The only host synchronisations in a step are at reports (losses are gathered on
/// the device until then). Deterministic for a seed on the CPU. The loop itself is shared with preference alignment.
/// </summary>
public sealed class CausalLMTrainer
{
    private readonly CausalLM model;
    private readonly CausalLMTrainingOptions options;
    private readonly int padTokenId, eosTokenId;

    /// <param name="model">The model, on its training device and in its training dtype: fp32, or bf16 (trained with fp32 master weights).</param>
    /// <param name="options">Loop options (validated here).</param>
    /// <param name="padTokenId">Id that fills padding (never trained on).</param>
    /// <param name="eosTokenId">Id between packed examples.</param>
    public CausalLMTrainer(CausalLM model, CausalLMTrainingOptions options, int padTokenId, int eosTokenId)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _ = new TrainingLoop(model, options); // checks the model's dtype now, not at Train
        this.model = model;
        this.options = options;
        this.padTokenId = padTokenId;
        this.eosTokenId = eosTokenId;
    }

    /// <summary>Messages for a log (ML.NET's channel in the estimator).</summary>
    public Action<string>? Log { get; init; }

    /// <summary>Called with every report, before <see cref="CausalLMTrainingOptions.OnProgress"/> (the estimator's progress channel).</summary>
    public Action<TrainingProgress>? OnReport { get; init; }

    /// <summary>
    /// Writes files that belong in every checkpoint besides the model and trainer state (the tokenizer, metadata),
    /// given the staging folder and the run so far.
    /// </summary>
    public Action<string, TrainingResult>? WriteCheckpointExtras { get; init; }

    /// <summary>
    /// Trains on <paramref name="train"/>, evaluating on <paramref name="validation"/> when given. Throws
    /// <see cref="OperationCanceledException"/> on cancellation, after writing a checkpoint when a folder is set.
    /// </summary>
    public TrainingResult Train(IReadOnlyList<TokenizedExample> train, IReadOnlyList<TokenizedExample>? validation = null)
    {
        ArgumentNullException.ThrowIfNull(train);
        RequireTargets(train, nameof(train));
        if (validation is { Count: > 0 })
            RequireTargets(validation, nameof(validation));
        var plan = new BatchPlan(train, options, padTokenId, eosTokenId);
        var loop = new TrainingLoop(model, options) { Log = Log, OnReport = OnReport, WriteCheckpointExtras = WriteCheckpointExtras };
        return loop.Run(plan, new LanguageModelObjective(model, options, padTokenId, validation), DataFingerprint.Of(train));
    }

    /// <summary>Refuses examples of which none has a target token within MaxContextLength (training on them would fit nothing, at loss 0).</summary>
    private void RequireTargets(IReadOnlyList<TokenizedExample> examples, string name)
    {
        if (examples.Count == 0)
            throw new ArgumentException($"'{name}' has no examples.", name);
        // As the batch plan counts them: tokens past the prompt and past each row's first token, within the context (packing cuts nothing).
        int usable = examples.Count(e => options.Packing
            ? e.TargetCount > 0
            : Math.Min(e.Tokens.Length, options.MaxContextLength) - Math.Max(1, e.PromptLength) > 0);
        if (usable == 0)
            throw new ArgumentException(
                $"No example of '{name}' has a target token within MaxContextLength = {options.MaxContextLength}: of {examples.Count} examples, " +
                $"{examples.Count(e => e.TargetCount <= 0)} have none at all (PromptLength covers every token) and the rest lose theirs to truncation.", name);
    }

    /// <summary>Mean loss per target token of <paramref name="data"/> (padded batches in order, no gradients).</summary>
    public double Evaluate(IReadOnlyList<TokenizedExample> data)
    {
        ArgumentNullException.ThrowIfNull(data);
        return new LanguageModelObjective(model, options, padTokenId, null).Loss(data);
    }
}
