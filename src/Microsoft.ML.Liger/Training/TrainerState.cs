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
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    public int Step { get; init; }
    public int TotalSteps { get; init; }
    public long TokensSeen { get; init; }
    public List<double> StepLosses { get; init; } = [];
    public List<EvalRecord> EvalLosses { get; init; } = [];
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
        return JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(path), Json)
            ?? throw new InvalidDataException($"'{path}' is empty.");
    }

    /// <summary>The options and data that fix the trajectory, as strings.</summary>
    public static Dictionary<string, string> ShapeOf(CausalLMTrainingOptions o, string precision, string dataFingerprint, int totalSteps) => new()
    {
        ["seed"] = o.Seed.ToString(),
        ["batch_size"] = o.BatchSize.ToString(),
        ["gradient_accumulation_steps"] = o.GradientAccumulationSteps.ToString(),
        ["max_context_length"] = o.MaxContextLength.ToString(),
        ["packing"] = o.Packing.ToString(),
        ["precision"] = precision,
        ["total_steps"] = totalSteps.ToString(),
        ["data"] = dataFingerprint,
        // Checkpoints written before the order was made process-independent lack this key, so a resume from one is refused.
        ["data_order"] = EpochOrder.Version,
    };
}

/// <summary>A validation loss at a step.</summary>
internal sealed record EvalRecord(int Step, double Loss);
