namespace Microsoft.ML.Liger.Sweeps;

/// <summary>How a trial ended.</summary>
public enum TrialStatus
{
    /// <summary>Trained for the trial's steps; its metrics are set.</summary>
    Completed,

    /// <summary>
    /// Out of memory (CUDA or host): the point does not fit this machine. Either the trial ran out of memory, or the
    /// cost-aware tuner skipped it because a trial that needs no more memory already had (<see cref="TrialResult.Error"/> says which).
    /// </summary>
    Infeasible,

    /// <summary>Threw something other than out-of-memory; <see cref="TrialResult.Error"/> holds the exception's type and message.</summary>
    Failed,

    /// <summary>Stopped by the sweep's cancellation token while training.</summary>
    Cancelled,
}

/// <summary>One trial of a sweep: the point it tried and what came of it.</summary>
/// <param name="Id">1, 2, ... in the order the sweep recorded the trials.</param>
/// <param name="Parameters">The point: parameter (property) name to value (int, double, bool or string).</param>
/// <param name="Status">How the trial ended.</param>
/// <param name="EvalLoss">The validation loss at the trial's last step (mean per target token); without a validation set,
/// the training loss of the last step. Null unless <see cref="TrialStatus.Completed"/>.</param>
/// <param name="TokensPerSecond">Training throughput: the median over the trial's progress reports of input tokens (padding
/// excluded) per second, leaving out the first report (warm-up) when there are others. Null unless completed.</param>
/// <param name="PeakMemoryBytes">The highest peak memory the trial's reports saw (the CUDA allocator's on a GPU when its
/// statistics shim is loaded, the process's peak resident set on the CPU); null when unknown or not completed.</param>
/// <param name="Duration">Wall clock of the trial: loading data and model, training and evaluation (zero for a skipped point).</param>
/// <param name="Error">Why the trial is infeasible, failed or cancelled; null when completed.</param>
public sealed record TrialResult(int Id, IReadOnlyDictionary<string, object> Parameters, TrialStatus Status,
    double? EvalLoss, double? TokensPerSecond, long? PeakMemoryBytes, TimeSpan Duration, string? Error);
