using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Microsoft.ML.Liger.Training;

/// <summary>
/// trainer_state.json of a checkpoint: where the run is, the per-step losses so far, and what must not change
/// for a resume to continue the same trajectory (checked on resume, each mismatch named).
/// </summary>
internal sealed record TrainerState
{
    public const string FileName = "trainer_state.json";
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals, // a skipped step's loss is not finite
    };

    public int Step { get; init; }
    public int TotalSteps { get; init; }
    public long TokensSeen { get; init; }
    public List<double> StepLosses { get; init; } = [];
    public List<EvalRecord> EvalLosses { get; init; } = [];
    public List<int> SkippedSteps { get; init; } = [];
    public Dictionary<string, string> RunShape { get; init; } = [];

    public void Save(string folder)
    {
        string path = Path.Combine(folder, FileName);
        File.WriteAllText(path, JsonSerializer.Serialize(this, Json));
    }

    public static TrainerState Load(string folder)
    {
        string path = Path.Combine(folder, FileName);
        if (!File.Exists(path))
            throw new FileNotFoundException($"Checkpoint '{folder}' has no {FileName}: it is not a training checkpoint.", path);
        const string expected = "a JSON object with Step, TotalSteps, TokensSeen, StepLosses, EvalLosses and RunShape, as Liger writes it";
        TrainerState? state;
        try
        {
            state = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(path), Json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not a valid {FileName} (expected {expected}): {e.Message}", e);
        }
        if (state is null)
            throw new InvalidDataException($"'{path}' holds null; expected {expected}.");
        string? wrong = state.TotalSteps < 1 ? $"TotalSteps is {state.TotalSteps} (expected ≥ 1)"
            : state.Step < 0 || state.Step > state.TotalSteps ? $"Step is {state.Step} (expected 0 to TotalSteps = {state.TotalSteps})"
            : state.StepLosses is null || state.StepLosses.Count != state.Step ? $"StepLosses has {state.StepLosses?.Count.ToString() ?? "no"} entries (expected one per step: {state.Step})"
            : state.TokensSeen < 0 ? $"TokensSeen is {state.TokensSeen} (expected ≥ 0)"
            : state.RunShape is null || state.RunShape.Count == 0 ? "RunShape is missing (expected the options that fix the run)"
            : state.EvalLosses is null ? "EvalLosses is null (expected a list)"
            : state.SkippedSteps is null || state.SkippedSteps.Any(s => s < 1 || s > state.Step) ? $"SkippedSteps holds steps outside 1 to Step = {state.Step}"
            : null;
        if (wrong is not null)
            throw new InvalidDataException($"'{path}' is not a consistent {FileName}: {wrong}.");
        return state;
    }

    /// <summary>The options and data that fix the trajectory, as strings (see <see cref="Differences"/> for what may change on resume).</summary>
    public static Dictionary<string, string> ShapeOf(CausalLMTrainingOptions o, string precision, string dataFingerprint, int totalSteps) => new()
    {
        ["seed"] = o.Seed.ToString(CultureInfo.InvariantCulture),
        ["batch_size"] = o.BatchSize.ToString(CultureInfo.InvariantCulture),
        ["gradient_accumulation_steps"] = o.GradientAccumulationSteps.ToString(CultureInfo.InvariantCulture),
        ["max_context_length"] = o.MaxContextLength.ToString(CultureInfo.InvariantCulture),
        ["packing"] = o.Packing.ToString(),
        ["precision"] = precision,
        ["total_steps"] = totalSteps.ToString(CultureInfo.InvariantCulture),
        ["data"] = dataFingerprint,
        // Checkpoints written before the order was made process-independent lack this key, so a resume from one is refused.
        ["data_order"] = EpochOrder.Version,
        ["learning_rate"] = Number(o.LearningRate),
        ["beta1"] = Number(o.Beta1),
        ["beta2"] = Number(o.Beta2),
        ["adam_epsilon"] = Number(o.AdamEpsilon),
        ["weight_decay"] = Number(o.WeightDecay),
        ["schedule"] = o.Schedule.ToString(),
        ["warmup_steps"] = o.WarmupSteps.ToString(CultureInfo.InvariantCulture),
        ["warmup_ratio"] = Number(o.WarmupRatio),
        ["min_learning_rate_ratio"] = Number(o.MinLearningRateRatio),
        ["max_gradient_norm"] = Number(o.MaxGradientNorm),
    };

    /// <summary>
    /// Each run-shape entry that differs between the checkpoint's (<paramref name="stored"/>) and this run's
    /// (<paramref name="now"/>), named by its option, with both values. The one change allowed: the total steps (Epochs or
    /// MaxSteps), when the learning rate of every step does not depend on the total (a constant schedule with the warm-up
    /// in steps, or none), so the resumed run is exactly an uninterrupted run of the new length.
    /// </summary>
    public static List<string> Differences(IReadOnlyDictionary<string, string> stored, IReadOnlyDictionary<string, string> now,
        CausalLMTrainingOptions options, int checkpointStep, int totalSteps)
    {
        bool scheduleIgnoresTotal = options.Schedule == LearningRateSchedule.Constant && (options.WarmupSteps > 0 || options.WarmupRatio == 0);
        var differences = new List<string>();
        foreach (var key in stored.Keys.Union(now.Keys))
        {
            string? before = stored.GetValueOrDefault(key), after = now.GetValueOrDefault(key);
            if (before == after)
                continue;
            if (key == "total_steps" && scheduleIgnoresTotal && checkpointStep <= totalSteps && before is not null)
                continue;
            string why = key == "total_steps"
                ? checkpointStep > totalSteps
                    ? $" (the checkpoint is at step {checkpointStep}, past this run's end)"
                    : $" (the learning rate of each step depends on the total unless {nameof(options.Schedule)} is Constant with the warm-up in {nameof(options.WarmupSteps)})"
                : "";
            differences.Add($"{OptionOf(key)}: checkpoint {before ?? "(not recorded)"}, now {after ?? "(not set)"}{why}");
        }
        return differences;
    }

    /// <summary>The option a run-shape key stands for, as users set it.</summary>
    private static string OptionOf(string key) => key switch
    {
        "seed" => "Seed",
        "batch_size" => "BatchSize",
        "gradient_accumulation_steps" => "GradientAccumulationSteps",
        "max_context_length" => "MaxContextLength",
        "packing" => "Packing",
        "precision" => "Precision",
        "total_steps" => "total steps (Epochs or MaxSteps)",
        "data" => "the training data (its tokens' fingerprint)",
        "data_order" => "the data order's version",
        "learning_rate" => "LearningRate",
        "beta1" => "Beta1",
        "beta2" => "Beta2",
        "adam_epsilon" => "AdamEpsilon",
        "weight_decay" => "WeightDecay",
        "schedule" => "Schedule",
        "warmup_steps" => "WarmupSteps",
        "warmup_ratio" => "WarmupRatio",
        "min_learning_rate_ratio" => "MinLearningRateRatio",
        "max_gradient_norm" => "MaxGradientNorm",
        "world_size" => "Distributed.WorldSize",
        "zero_stage" => "Distributed.ZeroStage",
        "algorithm" => "Algorithm",
        "beta" => "Beta",
        "average_log_prob" => "AverageLogProb",
        "nll_loss" => "ComputeNllLoss / Alpha",
        "max_prompt_length" => "MaxPromptLength",
        "dpo_loss_type" => "DpoLossType",
        "label_smoothing" => "LabelSmoothing",
        "gamma" => "Gamma",
        "desirable_weight" => "DesirableWeight",
        "undesirable_weight" => "UndesirableWeight",
        "kl" => "EstimateKl",
        "reference" => "ReferenceModelPath",
        "precomputed_reference" => "PrecomputeReferenceLogProbs",
        _ => key,
    };

    private static string Number(double value) => value.ToString("R", CultureInfo.InvariantCulture);
}

/// <summary>A validation loss at a step.</summary>
internal sealed record EvalRecord(int Step, double Loss);
