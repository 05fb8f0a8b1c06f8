namespace Microsoft.ML.Liger.Training;

/// <summary>What a training run did.</summary>
/// <param name="Steps">Optimizer steps done in all (including those before a resume).</param>
/// <param name="StepLosses">Training loss of every optimizer step (mean per target token over the step's micro-batches; non-finite for a skipped step).</param>
/// <param name="EvalLosses">Validation losses per target token, by step.</param>
/// <param name="TokensSeen">Real (non-padding) input tokens trained on.</param>
/// <param name="Elapsed">Wall clock of this call (not of the steps before a resume).</param>
/// <param name="LastCheckpoint">Path of the last checkpoint written, or null.</param>
public sealed record TrainingResult(int Steps, IReadOnlyList<double> StepLosses, IReadOnlyList<(int Step, double Loss)> EvalLosses,
    long TokensSeen, TimeSpan Elapsed, string? LastCheckpoint)
{
    /// <summary>
    /// Optimizer steps (1-based) skipped for a non-finite loss or gradient norm (<see cref="CausalLMTrainingOptions.SkipNonFiniteSteps"/>);
    /// their entries in <see cref="StepLosses"/> hold the non-finite loss.
    /// </summary>
    public IReadOnlyList<int> SkippedSteps { get; init; } = [];
}
