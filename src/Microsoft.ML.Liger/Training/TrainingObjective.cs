using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Training;

/// <summary>
/// The order of training: which micro-batches make each optimizer step. Any step must be rebuilt from its number
/// alone, so that a resumed run sees exactly the batches an uninterrupted one would have.
/// </summary>
internal interface ITrainingPlan<TBatch>
{
    /// <summary>Optimizer steps in one pass over the data.</summary>
    int StepsPerEpoch { get; }

    /// <summary>Optimizer steps the run makes.</summary>
    int TotalSteps { get; }

    /// <summary>The micro-batches of optimizer step <paramref name="step"/> (0-based).</summary>
    IReadOnlyList<TBatch> Step(int step);

    /// <summary>Fractional epoch after <paramref name="stepsDone"/> steps.</summary>
    double EpochAt(int stepsDone);
}

/// <summary>
/// What a run optimises, one micro-batch at a time: language modelling (<see cref="LanguageModelObjective"/>) or
/// a preference loss. <see cref="TrainingLoop"/> owns everything else (optimizer, schedule, clipping,
/// accumulation, master weights, reports, checkpoints, resume, cancellation).
/// </summary>
internal interface ITrainingObjective<TBatch>
{
    /// <summary>
    /// Runs the forward and backward of <paramref name="batch"/>, with its loss scaled to its share of the optimizer
    /// step (<paramref name="step"/> holds all the step's micro-batches), so that accumulating the shares equals one
    /// batch of the whole step. Returns that share, detached, as a float32 scalar on the device (no host sync).
    /// Called inside a dispose scope that ends after the share is read.
    /// </summary>
    Tensor Backward(TBatch batch, IReadOnlyList<TBatch> step);

    /// <summary>Real (non-padding) input tokens of <paramref name="batch"/> that train the model.</summary>
    long InputTokens(TBatch batch);

    /// <summary>
    /// The metrics gathered on the device since the last call, as means over the interval, moved to the host in
    /// one synchronisation (called at reports only); null when the objective has none.
    /// </summary>
    IReadOnlyDictionary<string, double>? TakeMetrics();

    /// <summary>Whether there is a validation set to <see cref="Evaluate"/>.</summary>
    bool HasValidation { get; }

    /// <summary>The validation loss and metrics, without gradients, in eval mode (restoring the mode after).</summary>
    (double Loss, IReadOnlyDictionary<string, double>? Metrics) Evaluate();
}
