using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Training;

namespace Microsoft.ML.Liger;

/// <summary>
/// What every causal-LM estimator's options share beyond the training loop's: which model and tokenizer to start
/// from, the chat format, and how the trained transformer scores and completes rows. Fine-tuning and preference
/// alignment add their data columns and objectives.
/// </summary>
public abstract class CausalLMEstimatorOptions : CausalLMTrainingOptions
{
    /// <summary>
    /// A Hugging Face checkpoint folder to start from (config.json + safetensors), which includes a folder written by
    /// <see cref="CausalLMTransformer.Save"/> (its chat template and format come from its liger_model.json); null:
    /// <see cref="Architecture"/> from random init.
    /// </summary>
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

    /// <summary>
    /// Wrap prompts and responses in the tokenizer's chat template (a user turn, then the assistant's turn ending with
    /// the template's end-of-turn marker), as chat models expect. Default false: prompt, then response, then EOS.
    /// </summary>
    public bool UseChatTemplate { get; set; }

    /// <summary>A system message before each prompt when <see cref="UseChatTemplate"/> is on; null: none.</summary>
    public string? SystemPrompt { get; set; }

    /// <summary>Name of the transformer's per-row loss column (mean NLL per target token). Default "Loss".</summary>
    public string LossColumnName { get; set; } = "Loss";

    /// <summary>Name of the transformer's per-row perplexity column (exp of the loss). Default "Perplexity".</summary>
    public string PerplexityColumnName { get; set; } = "Perplexity";

    /// <summary>How the transformer generates completions. Default: greedy, at most 64 new tokens, stopping at EOS or end of turn.</summary>
    public GenerationOptions Generation { get; set; } = new() { MaxNewTokens = 64 };

    /// <summary>Held-out rows in the training data's columns, evaluated every <see cref="CausalLMTrainingOptions.EvalInterval"/> steps; null: none.</summary>
    public IDataView? ValidationSet { get; set; }

    /// <summary>A torch device ("cpu", "cuda", "cuda:1"); null: cuda:<see cref="MLContext.GpuDeviceId"/> when set and available, else the CPU.</summary>
    public string? Device { get; set; }

    /// <summary>
    /// The training loop's checks, then these options' and the estimator's column options (<paramref name="columns"/>,
    /// by name), each of which must name a column; throws naming the first option that is wrong.
    /// </summary>
    private protected void ValidateModelAndColumns(IEnumerable<(string Name, string Value)> columns)
    {
        base.Validate();
        if (BaseModelPath is null)
            CausalLMArchitectures.Create(Architecture, 64, ArchitectureOverrides); // names an unknown architecture now, not after loading data
        foreach (var (name, value) in columns.Concat([(nameof(LossColumnName), LossColumnName), (nameof(PerplexityColumnName), PerplexityColumnName)]))
            if (string.IsNullOrWhiteSpace(value))
                throw new ArgumentException($"Option '{name}' must name a column.", name);
        ArgumentNullException.ThrowIfNull(Generation, nameof(Generation));
        if (Generation.MaxNewTokens <= 0)
            throw new ArgumentOutOfRangeException(nameof(Generation), Generation.MaxNewTokens, "Generation.MaxNewTokens must be ≥ 1.");
        Generation.Validate($"{nameof(Generation)}.");
    }
}
