using Microsoft.ML.Liger.Distributed;
using Microsoft.ML.Liger.Models;

namespace Microsoft.ML.Liger.Training;

/// <summary>How the learning rate moves after warm-up.</summary>
public enum LearningRateSchedule
{
    /// <summary>Linear decay to <see cref="CausalLMTrainingOptions.MinLearningRateRatio"/> of the peak (transformers' default).</summary>
    Linear,

    /// <summary>Half a cosine down to <see cref="CausalLMTrainingOptions.MinLearningRateRatio"/> of the peak.</summary>
    Cosine,

    /// <summary>The peak learning rate throughout (after warm-up).</summary>
    Constant,
}

/// <summary>The dtype training runs in.</summary>
public enum TrainingPrecision
{
    /// <summary>bf16 on a GPU, fp32 on the CPU.</summary>
    Auto,

    /// <summary>Weights, activations, gradients and optimizer state in fp32.</summary>
    Float32,

    /// <summary>
    /// Mixed precision: the model's weights and activations in bf16, with fp32 master weights that the
    /// optimizer updates (and fp32 optimizer state), copied back to the bf16 weights after each step.
    /// </summary>
    BFloat16,
}

/// <summary>
/// The training loop's options, shared by every Liger trainer (fine-tuning and preference alignment).
/// Defaults follow transformers' <c>TrainingArguments</c> where it has one.
/// </summary>
public class CausalLMTrainingOptions
{
    /// <summary>Longest sequence in tokens; longer examples are truncated (the response keeps its start). Default 512.</summary>
    public int MaxContextLength { get; set; } = 512;

    /// <summary>
    /// Pack examples end to end (separated by EOS) into rows of exactly <see cref="MaxContextLength"/> tokens
    /// instead of padding each to the batch's longest: no compute on padding. Packed examples attend to the
    /// ones before them in the row, as in classic causal-LM pre-training. Default false.
    /// </summary>
    public bool Packing { get; set; }

    /// <summary>Sequences per micro-batch. Default 8.</summary>
    public int BatchSize { get; set; } = 8;

    /// <summary>Micro-batches whose gradients are summed before each optimizer step. Default 1.</summary>
    public int GradientAccumulationSteps { get; set; } = 1;

    /// <summary>Passes over the training data. Default 1. Ignored when <see cref="MaxSteps"/> is set.</summary>
    public int Epochs { get; set; } = 1;

    /// <summary>Optimizer steps to run (the data repeats as needed); null: <see cref="Epochs"/> decide.</summary>
    public int? MaxSteps { get; set; }

    /// <summary>Peak learning rate of AdamW. Default 5e-5 (transformers'; from-scratch models want about 1e-3).</summary>
    public double LearningRate { get; set; } = 5e-5;

    /// <summary>AdamW's β1. Default 0.9.</summary>
    public double Beta1 { get; set; } = 0.9;

    /// <summary>AdamW's β2. Default 0.999.</summary>
    public double Beta2 { get; set; } = 0.999;

    /// <summary>AdamW's ε. Default 1e-8.</summary>
    public double AdamEpsilon { get; set; } = 1e-8;

    /// <summary>Decoupled weight decay, applied to matrices only (not to norms or biases, as transformers' Trainer does). Default 0.</summary>
    public double WeightDecay { get; set; }

    /// <summary>Schedule after warm-up. Default <see cref="LearningRateSchedule.Linear"/>.</summary>
    public LearningRateSchedule Schedule { get; set; } = LearningRateSchedule.Linear;

    /// <summary>Optimizer steps of linear warm-up from 0 to the peak. Default 0; wins over <see cref="WarmupRatio"/>.</summary>
    public int WarmupSteps { get; set; }

    /// <summary>Warm-up as a fraction of all optimizer steps, used when <see cref="WarmupSteps"/> is 0. Default 0.</summary>
    public double WarmupRatio { get; set; }

    /// <summary>Where the decay ends, as a fraction of the peak learning rate. Default 0.</summary>
    public double MinLearningRateRatio { get; set; }

    /// <summary>Clip the global gradient norm to this before each step; 0 turns clipping off. Default 1.</summary>
    public double MaxGradientNorm { get; set; } = 1.0;

    /// <summary>Training dtype. Default <see cref="TrainingPrecision.Auto"/>: bf16 mixed precision on a GPU, fp32 on the CPU.</summary>
    public TrainingPrecision Precision { get; set; } = TrainingPrecision.Auto;

    /// <summary>Gradient checkpointing (transformers' name): recompute each decoder layer's activations in the backward instead of keeping them. Default false.</summary>
    public bool GradientCheckpointing { get; set; }

    /// <summary>Which layers run on Liger's kernels. Default: all the family can use, with the fused linear cross-entropy.</summary>
    public LigerKernelOptions Kernels { get; set; } = new();

    /// <summary>Seed of the weights' initialisation (for random-init models) and of the data order. Default 42.</summary>
    public int Seed { get; set; } = 42;

    /// <summary>Evaluate on the validation set every this many optimizer steps; 0: only at the end of each epoch and of training. Default 0.</summary>
    public int EvalInterval { get; set; }

    /// <summary>Cap on the validation batches per evaluation; null: all of them.</summary>
    public int? MaxEvalBatches { get; set; }

    /// <summary>Report progress every this many optimizer steps. Default 10.</summary>
    public int LoggingInterval { get; set; } = 10;

    /// <summary>
    /// Folder for training checkpoints (checkpoint-NNNNNNN subfolders: the model in Hugging Face's format plus
    /// optimizer and trainer state). Each is written to a staging folder and renamed into place, so a crash or
    /// a cancellation never leaves the last checkpoint missing or half written. Null: no checkpoints.
    /// </summary>
    public string? CheckpointFolder { get; set; }

    /// <summary>Write a checkpoint every this many optimizer steps (and always at the end); 0: only at the end and on cancellation. Default 0.</summary>
    public int CheckpointInterval { get; set; }

    /// <summary>How many checkpoints to keep (the oldest are deleted after a new one is in place). Default 2.</summary>
    public int CheckpointsToKeep { get; set; } = 2;

    /// <summary>
    /// Continue from the latest checkpoint in <see cref="CheckpointFolder"/>, to the same loss trajectory as an
    /// uninterrupted run. When false, a folder that already holds checkpoints is an error (nothing is overwritten).
    /// Default false.
    /// </summary>
    public bool ResumeFromCheckpoint { get; set; }

    /// <summary>
    /// What happens when a step's loss or gradient norm is NaN or infinite. False (default): training stops with a
    /// <see cref="TrainingDivergedException"/> naming the step, at the next report, evaluation or checkpoint (where the
    /// losses reach the host anyway: no extra synchronisation), and no checkpoint is written after that step. True: such a
    /// step is skipped (no update: weights and optimizer state stay as they were), as transformers' Trainer does with fp16
    /// loss scaling, and counted in <see cref="TrainingProgress.SkippedSteps"/> and <see cref="TrainingResult.SkippedSteps"/>;
    /// deciding before the update costs one host synchronisation per step (a flag read, as torch's GradScaler does).
    /// Either way, weights that are no longer finite at a checkpoint or at the end stop training with that exception.
    /// </summary>
    public bool SkipNonFiniteSteps { get; set; }

    /// <summary>Called on the training thread at every report (each <see cref="LoggingInterval"/> steps and each evaluation).</summary>
    public Action<TrainingProgress>? OnProgress { get; set; }

    /// <summary>
    /// Stops training between optimizer steps; a checkpoint is written first when <see cref="CheckpointFolder"/> is set. In a
    /// data-parallel run any rank's token stops every rank, at the next multiple of <see cref="LoggingInterval"/> steps.
    /// </summary>
    public CancellationToken CancellationToken { get; set; }

    /// <summary>
    /// Data-parallel training over several processes (one per GPU, or CPU processes under mpirun); null: this process
    /// trains alone. <see cref="DistributedOptions.FromEnvironment"/> reads what the launcher set. <see cref="BatchSize"/>
    /// stays per process: the optimizer steps on <see cref="DistributedOptions.WorldSize"/> × <see cref="BatchSize"/>
    /// rows per micro-batch, exactly as one process with that batch size would.
    /// </summary>
    public DistributedOptions? Distributed { get; set; }

    /// <summary>Rows per micro-batch over all the processes (what the batch plans cut the data into).</summary>
    internal int GlobalBatchSize => BatchSize * (Distributed?.WorldSize ?? 1);

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first option that is out of range.</summary>
    public virtual void Validate()
    {
        Positive(MaxContextLength, nameof(MaxContextLength));
        Positive(BatchSize, nameof(BatchSize));
        Positive(GradientAccumulationSteps, nameof(GradientAccumulationSteps));
        Positive(Epochs, nameof(Epochs));
        if (MaxSteps is int steps) Positive(steps, nameof(MaxSteps));
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate)) Out(nameof(LearningRate), LearningRate, "a positive finite number");
        if (!(Beta1 >= 0 && Beta1 < 1)) Out(nameof(Beta1), Beta1, "in [0, 1)");
        if (!(Beta2 >= 0 && Beta2 < 1)) Out(nameof(Beta2), Beta2, "in [0, 1)");
        // ε = 0 is torch's lower bound, but a parameter whose gradient is 0 (an embedding row no batch reaches) then steps by 0 / 0.
        if (!(AdamEpsilon > 0) || double.IsInfinity(AdamEpsilon)) Out(nameof(AdamEpsilon), AdamEpsilon, "a positive finite number");
        if (!(WeightDecay >= 0) || double.IsInfinity(WeightDecay)) Out(nameof(WeightDecay), WeightDecay, "a finite number ≥ 0");
        // Decoupled decay multiplies each matrix by (1 − lr·wd) every step: at lr·wd ≥ 1 that zeroes or flips every weight.
        if (LearningRate * WeightDecay >= 1)
            Out(nameof(WeightDecay), WeightDecay, $"below 1 / {nameof(LearningRate)} = {1 / LearningRate:G4} (each step multiplies the weights by 1 − {nameof(LearningRate)}·{nameof(WeightDecay)})");
        if (WarmupSteps < 0) Out(nameof(WarmupSteps), WarmupSteps, "≥ 0");
        if (!(WarmupRatio >= 0 && WarmupRatio < 1)) Out(nameof(WarmupRatio), WarmupRatio, "in [0, 1)");
        if (!(MinLearningRateRatio >= 0 && MinLearningRateRatio <= 1)) Out(nameof(MinLearningRateRatio), MinLearningRateRatio, "in [0, 1]");
        if (!(MaxGradientNorm >= 0) || double.IsInfinity(MaxGradientNorm)) Out(nameof(MaxGradientNorm), MaxGradientNorm, "a finite number ≥ 0 (0 turns clipping off)");
        if (EvalInterval < 0) Out(nameof(EvalInterval), EvalInterval, "≥ 0");
        if (MaxEvalBatches is int e) Positive(e, nameof(MaxEvalBatches));
        Positive(LoggingInterval, nameof(LoggingInterval));
        if (CheckpointInterval < 0) Out(nameof(CheckpointInterval), CheckpointInterval, "≥ 0");
        Positive(CheckpointsToKeep, nameof(CheckpointsToKeep));
        ArgumentNullException.ThrowIfNull(Kernels, nameof(Kernels));
        Kernels.Validate();
        Distributed?.Validate();
        if (ResumeFromCheckpoint && CheckpointFolder is null)
            throw new ArgumentException($"{nameof(ResumeFromCheckpoint)} needs a {nameof(CheckpointFolder)} to resume from.", nameof(CheckpointFolder));
    }

    /// <summary>
    /// Checks <see cref="CheckpointFolder"/> before any work: not a file, no file on its path, and creatable and writable
    /// (it is created, and a probe file written and deleted), so that a bad folder fails now rather than at the first checkpoint.
    /// </summary>
    internal void CheckFolders()
    {
        if (CheckpointFolder is { } folder)
            WritableFolder.Check(folder, nameof(CheckpointFolder));
    }

    private static void Positive(int value, string name)
    {
        if (value <= 0) Out(name, value, "≥ 1");
    }

    private static void Out(string name, object value, string expected) =>
        throw new ArgumentOutOfRangeException(name, value, $"Option '{name}' must be {expected}; got {value}.");
}
