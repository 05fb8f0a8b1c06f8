using System.Globalization;

namespace Microsoft.ML.Liger.Training;

/// <summary>
/// Training stopped because a step's loss or gradient norm, or the weights, became NaN or infinite. The weights in memory
/// are no longer usable; no checkpoint was written after <see cref="Step"/>, so <see cref="LastCheckpoint"/> (when a
/// folder is set) holds the last good state. Lower the learning rate, or set
/// <see cref="CausalLMTrainingOptions.SkipNonFiniteSteps"/> to skip such steps instead.
/// </summary>
public sealed class TrainingDivergedException : Exception
{
    internal TrainingDivergedException(int step, int totalSteps, string quantity, double value, string? lastCheckpoint)
        : base(Describe(step, totalSteps, quantity, value, lastCheckpoint))
    {
        Step = step;
        Quantity = quantity;
        Value = value;
        LastCheckpoint = lastCheckpoint;
    }

    /// <summary>The optimizer step (1-based, as <see cref="TrainingProgress.Step"/> counts) whose result was not finite.</summary>
    public int Step { get; }

    /// <summary>What was not finite: "loss", "gradient norm" or "weights".</summary>
    public string Quantity { get; }

    /// <summary>The non-finite value (NaN when the weights were checked as a whole).</summary>
    public double Value { get; }

    /// <summary>The newest checkpoint, untouched (written before <see cref="Step"/>), or null when none was written.</summary>
    public string? LastCheckpoint { get; }

    private static string Describe(int step, int totalSteps, string quantity, double value, string? lastCheckpoint)
    {
        string what = quantity == "weights"
            ? $"the weights are no longer finite after step {step} of {totalSteps}"
            : $"the {quantity} of step {step} of {totalSteps} is {value.ToString(CultureInfo.InvariantCulture)}";
        string checkpoint = lastCheckpoint is null ? "No checkpoint was written." : $"The last good checkpoint, '{lastCheckpoint}', is untouched.";
        return $"Training diverged: {what}. {checkpoint} Lower {nameof(CausalLMTrainingOptions.LearningRate)} (or clip harder with a smaller " +
               $"{nameof(CausalLMTrainingOptions.MaxGradientNorm)}), or set {nameof(CausalLMTrainingOptions.SkipNonFiniteSteps)} = true to skip such steps.";
    }
}
