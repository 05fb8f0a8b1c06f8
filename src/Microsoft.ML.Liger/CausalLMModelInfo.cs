using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.PreferenceAlignment;
using Microsoft.ML.Liger.Training;

namespace Microsoft.ML.Liger;

/// <summary>
/// liger_model.json in a saved fine-tuned model: how rows become tokens (format, columns, chat template), how
/// completions are generated, and what training did. The rest of the folder is Hugging Face's format.
/// </summary>
public sealed record CausalLMModelInfo
{
    /// <summary>File name inside a saved model folder.</summary>
    public const string FileName = "liger_model.json";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter() },
        // A skipped step's loss is NaN or infinite, and an evaluation with no target token is NaN: written as "NaN" and "Infinity".
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>Format version of this file.</summary>
    public int FormatVersion { get; init; } = 1;

    /// <summary>Text or prompt/response (never Auto once trained).</summary>
    public DataFormat DataFormat { get; init; }

    /// <summary>Column names the model reads and writes.</summary>
    public string TextColumnName { get; init; } = "Text";
    /// <summary>Prompt column.</summary>
    public string PromptColumnName { get; init; } = "Prompt";
    /// <summary>Response column.</summary>
    public string ResponseColumnName { get; init; } = "Response";
    /// <summary>Generated completion column.</summary>
    public string CompletionColumnName { get; init; } = "Completion";
    /// <summary>Per-row loss column.</summary>
    public string LossColumnName { get; init; } = "Loss";
    /// <summary>Per-row perplexity column.</summary>
    public string PerplexityColumnName { get; init; } = "Perplexity";

    /// <summary>Whether prompts are wrapped in the chat template.</summary>
    public bool UseChatTemplate { get; init; }
    /// <summary>The system message of chat prompts.</summary>
    public string? SystemPrompt { get; init; }
    /// <summary>The chat format's markers when one was used (so a custom format survives the save).</summary>
    public ChatTemplateOptions? ChatTemplate { get; init; }

    /// <summary>Longest sequence scored (longer rows are truncated, as in training).</summary>
    public int MaxContextLength { get; init; } = 512;
    /// <summary>Completion settings.</summary>
    public GenerationOptions Generation { get; init; } = new();
    /// <summary>The Liger kernels the model was trained with (and is loaded with by default).</summary>
    public LigerKernelOptions Kernels { get; init; } = new();

    /// <summary>Optimizer steps trained.</summary>
    public int TrainedSteps { get; init; }
    /// <summary>Tokens trained on.</summary>
    public long TokensSeen { get; init; }
    /// <summary>Training loss per optimizer step.</summary>
    public IReadOnlyList<double> StepLosses { get; init; } = [];
    /// <summary>Validation losses by step.</summary>
    public IReadOnlyList<EvalPoint> EvalLosses { get; init; } = [];
    /// <summary>Optimizer steps (1-based) skipped for a non-finite loss or gradient norm (<see cref="Training.CausalLMTrainingOptions.SkipNonFiniteSteps"/>).</summary>
    public IReadOnlyList<int> SkippedSteps { get; init; } = [];

    /// <summary>How the model was preference-aligned (<see cref="LigerCatalog.PreferenceAlignment"/>); null for fine-tuning.</summary>
    public PreferenceAlignmentInfo? Alignment { get; init; }

    /// <summary>
    /// What every trained model records, whichever estimator trained it: the chat format, context length, completion
    /// settings, loss and perplexity columns, and the kernels. The estimator adds its data format and columns.
    /// </summary>
    internal static CausalLMModelInfo Describe(CausalLM model, CausalLMTokenizer tokenizer, CausalLMEstimatorOptions options) => new()
    {
        LossColumnName = options.LossColumnName,
        PerplexityColumnName = options.PerplexityColumnName,
        UseChatTemplate = options.UseChatTemplate,
        SystemPrompt = options.SystemPrompt,
        ChatTemplate = options.UseChatTemplate ? tokenizer.ChatTemplate?.Options : null,
        MaxContextLength = options.MaxContextLength,
        Generation = options.Generation,
        Kernels = model.Options.Kernels,
    };

    /// <summary>This record with what <paramref name="run"/> did: steps, tokens, losses, evaluations and skipped steps.</summary>
    internal CausalLMModelInfo WithTraining(TrainingResult run) => this with
    {
        TrainedSteps = run.Steps,
        TokensSeen = run.TokensSeen,
        StepLosses = run.StepLosses.ToList(),
        EvalLosses = run.EvalLosses.Select(e => new EvalPoint(e.Step, e.Loss)).ToList(),
        SkippedSteps = run.SkippedSteps.ToList(),
    };

    internal void Save(string folder)
    {
        string staged = Path.Combine(folder, $".{FileName}.{Environment.ProcessId}.tmp");
        File.WriteAllText(staged, JsonSerializer.Serialize(this, Json));
        File.Move(staged, Path.Combine(folder, FileName), overwrite: true);
    }

    internal static CausalLMModelInfo Load(string folder)
    {
        string path = Path.Combine(folder, FileName);
        if (!File.Exists(path))
            throw new FileNotFoundException(
                $"'{folder}' has no {FileName}: it is not a model saved by CausalLMTransformer.Save (a plain Hugging Face checkpoint is fine-tuned from FineTuneCausalLMOptions.BaseModelPath).", path);
        try
        {
            var info = JsonSerializer.Deserialize<CausalLMModelInfo>(File.ReadAllText(path), Json)
                ?? throw new InvalidDataException($"'{path}' is empty.");
            if (info.FormatVersion != 1)
                throw new InvalidDataException($"'{path}' has format version {info.FormatVersion}; this Liger reads version 1.");
            return info;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not valid: {e.Message}", e);
        }
    }
}

/// <summary>A validation loss at an optimizer step.</summary>
public sealed record EvalPoint(int Step, double Loss);
