using Microsoft.ML.Liger.Models;

namespace Microsoft.ML.Liger.Sweeps;

/// <summary>
/// The default parameters of a fine-tuning sweep: the options that decide whether a run fits in memory, how fast it
/// goes and how well it learns. Narrow it with <see cref="SearchSpace{T}.WithChoice"/>, for example
/// <c>new SearchSpace&lt;FineTuneCausalLMSearchSpace&gt;().WithChoice(nameof(FineTuneCausalLMSearchSpace.MaxContextLength), 512, 1024, 2048)</c>;
/// fix a parameter with a single choice. The defaults of the properties are <see cref="FineTuning.FineTuneCausalLMOptions"/>'s.
/// </summary>
public sealed class FineTuneCausalLMSearchSpace
{
    /// <summary><see cref="Training.CausalLMTrainingOptions.MaxContextLength"/>: 256 to 4096 tokens. Default 512.</summary>
    [Choice(256, 512, 1024, 2048, 4096)]
    public int MaxContextLength { get; set; } = 512;

    /// <summary><see cref="Training.CausalLMTrainingOptions.BatchSize"/>: 1, 2, 4 or 8 sequences per micro-batch. Default 8.</summary>
    [Choice(1, 2, 4, 8)]
    public int BatchSize { get; set; } = 8;

    /// <summary><see cref="Training.CausalLMTrainingOptions.GradientAccumulationSteps"/>: 1, 2 or 4. Default 1.</summary>
    [Choice(1, 2, 4)]
    public int GradientAccumulationSteps { get; set; } = 1;

    /// <summary><see cref="Training.CausalLMTrainingOptions.LearningRate"/>: 1e-5 to 1e-2 on a log scale. Default 5e-5.</summary>
    [Range(1e-5, 1e-2, logBase: true)]
    public double LearningRate { get; set; } = 5e-5;

    /// <summary><see cref="Training.CausalLMTrainingOptions.GradientCheckpointing"/>: off or on. Default off.</summary>
    [Choice(false, true)]
    public bool GradientCheckpointing { get; set; }

    /// <summary>
    /// Liger's kernels on (the base options' <see cref="Training.CausalLMTrainingOptions.Kernels"/>, or all of them when the
    /// base options turn every kernel off) or off (<see cref="LigerKernelOptions.None"/>: everything eager). Default on.
    /// </summary>
    [Choice(true, false)]
    public bool Liger { get; set; } = true;

    /// <summary>Writes this point into a trial's copy of the options.</summary>
    internal static void Apply(FineTuneCausalLMSearchSpace point, Training.CausalLMTrainingOptions options, LigerKernelOptions baseKernels)
    {
        options.MaxContextLength = point.MaxContextLength;
        options.BatchSize = point.BatchSize;
        options.GradientAccumulationSteps = point.GradientAccumulationSteps;
        options.LearningRate = point.LearningRate;
        options.GradientCheckpointing = point.GradientCheckpointing;
        options.Kernels = !point.Liger ? LigerKernelOptions.None : baseKernels == LigerKernelOptions.None ? new LigerKernelOptions() : baseKernels;
    }
}
