using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Training;

namespace Microsoft.ML.Liger.FineTuning;

/// <summary>
/// Options of <see cref="LigerCatalog.FineTuneCausalLM"/>: which model and tokenizer, which columns, and the
/// training loop's options (inherited: batch size, learning rate, schedule, precision, checkpoints, ...).
/// </summary>
/// <remarks>
/// The data is either plain text (one column, <see cref="TextColumnName"/>: language modelling on every token)
/// or prompt and response columns (supervised fine-tuning: the loss is on the response's tokens only). With
/// <see cref="DataFormat.Auto"/> the input's schema decides: prompt and response when both columns exist.
/// </remarks>
public sealed class FineTuneCausalLMOptions : CausalLMTrainingOptions, IScoringOptions
{
    /// <summary>A Hugging Face checkpoint folder to start from (config.json + safetensors); null: <see cref="Architecture"/> from random init.</summary>
    public string? BaseModelPath { get; set; }

    /// <summary>
    /// For a from-scratch model (<see cref="BaseModelPath"/> null): a name known to <see cref="CausalLMArchitectures"/>
    /// ("tiny-llama", "small-llama", "llama-3.2-1b"), its vocabulary sized to the tokenizer. Default "tiny-llama".
    /// </summary>
    public string Architecture { get; set; } = "tiny-llama";

    /// <summary>config.json fields that replace the architecture's (for example "num_hidden_layers"); from-scratch models only.</summary>
    public IReadOnlyDictionary<string, object?>? ArchitectureOverrides { get; set; }

    /// <summary>The tokenizer; null: the one in <see cref="BaseModelPath"/>, or GPT-2's packaged vocabulary for a from-scratch model.</summary>
    public CausalLMTokenizer? Tokenizer { get; set; }

    /// <summary>Text or prompt/response; default <see cref="DataFormat.Auto"/>.</summary>
    public DataFormat DataFormat { get; set; } = DataFormat.Auto;

    /// <summary>The text column for language modelling. Default "Text".</summary>
    public string TextColumnName { get; set; } = "Text";

    /// <summary>The prompt column for supervised fine-tuning (and for the transformer's completions). Default "Prompt".</summary>
    public string PromptColumnName { get; set; } = "Prompt";

    /// <summary>The response column for supervised fine-tuning. Default "Response".</summary>
    public string ResponseColumnName { get; set; } = "Response";

    /// <summary>
    /// Wrap prompt and response in the tokenizer's chat template (a user turn, then the assistant's turn ending with
    /// the template's end-of-turn marker), as chat models expect. Default false: prompt, then response, then EOS.
    /// </summary>
    public bool UseChatTemplate { get; set; }

    /// <summary>A system message before each prompt when <see cref="UseChatTemplate"/> is on; null: none.</summary>
    public string? SystemPrompt { get; set; }

    /// <summary>Name of the transformer's generated-completion column (added when the input has the prompt column). Default "Completion".</summary>
    public string CompletionColumnName { get; set; } = "Completion";

    /// <summary>Name of the transformer's per-row loss column (mean per target token). Default "Loss".</summary>
    public string LossColumnName { get; set; } = "Loss";

    /// <summary>Name of the transformer's per-row perplexity column (exp of the loss). Default "Perplexity".</summary>
    public string PerplexityColumnName { get; set; } = "Perplexity";

    /// <summary>How the transformer generates completions. Default: greedy, at most 64 new tokens, stopping at EOS or end of turn.</summary>
    public GenerationOptions Generation { get; set; } = new() { MaxNewTokens = 64 };

    /// <summary>Held-out rows in the training data's format, evaluated every <see cref="CausalLMTrainingOptions.EvalInterval"/> steps; null: none.</summary>
    public IDataView? ValidationSet { get; set; }

    /// <summary>A torch device ("cpu", "cuda", "cuda:1"); null: cuda:<see cref="MLContext.GpuDeviceId"/> when set and available, else the CPU.</summary>
    public string? Device { get; set; }

    /// <summary>A shallow copy (a sweep's trial changes its copy's scalar options; the tokenizer and data are shared).</summary>
    internal FineTuneCausalLMOptions Copy() => (FineTuneCausalLMOptions)MemberwiseClone();

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (BaseModelPath is null)
            CausalLMArchitectures.Create(Architecture, 64, ArchitectureOverrides); // names an unknown architecture now, not after loading data
        foreach (var (name, value) in new[]
                 {
                     (nameof(TextColumnName), TextColumnName), (nameof(PromptColumnName), PromptColumnName), (nameof(ResponseColumnName), ResponseColumnName),
                     (nameof(CompletionColumnName), CompletionColumnName), (nameof(LossColumnName), LossColumnName), (nameof(PerplexityColumnName), PerplexityColumnName),
                 })
            if (string.IsNullOrWhiteSpace(value))
                throw new ArgumentException($"Option '{name}' must name a column.", name);
        ArgumentNullException.ThrowIfNull(Generation, nameof(Generation));
        if (Generation.MaxNewTokens <= 0)
            throw new ArgumentOutOfRangeException(nameof(Generation), Generation.MaxNewTokens, "Generation.MaxNewTokens must be ≥ 1.");
        Generation.Validate($"{nameof(Generation)}.");
    }
}
