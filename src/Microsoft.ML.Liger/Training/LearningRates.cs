namespace Microsoft.ML.Liger.Training;

/// <summary>The learning rate of each optimizer step: linear warm-up, then the schedule's decay.</summary>
public static class LearningRates
{
    /// <summary>Warm-up steps for a run of <paramref name="totalSteps"/>: WarmupSteps, else ceil(WarmupRatio × total).</summary>
    public static int WarmupSteps(CausalLMTrainingOptions options, int totalSteps) =>
        options.WarmupSteps > 0 ? options.WarmupSteps : (int)Math.Ceiling(options.WarmupRatio * totalSteps);

    /// <summary>
    /// The learning rate used by optimizer step <paramref name="step"/> (0-based) of <paramref name="totalSteps"/>,
    /// as transformers' schedulers compute it: step/warmup × peak while warming up (so the first step's rate is 0),
    /// then linear, half-cosine or constant from the peak down to MinLearningRateRatio × peak at the last step.
    /// </summary>
    public static double At(int step, int totalSteps, CausalLMTrainingOptions options)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(totalSteps);
        double peak = options.LearningRate, floor = options.MinLearningRateRatio;
        int warmup = WarmupSteps(options, totalSteps);
        if (step < warmup)
            return peak * step / warmup;
        if (options.Schedule == LearningRateSchedule.Constant)
            return peak;
        double progress = Math.Min(1.0, (double)(step - warmup) / Math.Max(1, totalSteps - warmup));
        double factor = options.Schedule == LearningRateSchedule.Cosine
            ? 0.5 * (1 + Math.Cos(Math.PI * progress))
            : 1 - progress;
        return peak * (floor + (1 - floor) * factor);
    }
}
