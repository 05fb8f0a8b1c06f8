namespace Microsoft.ML.Liger.Models;

/// <summary>
/// Named model shapes for training from random initialisation (no weights): Llama-architecture configs from
/// a tiny one that trains in minutes on a laptop's CPU up to Llama 3.2 1B's shape for GPU benchmarks.
/// </summary>
public static class CausalLMArchitectures
{
    private static readonly Dictionary<string, Func<Dictionary<string, object?>>> Shapes = new(StringComparer.OrdinalIgnoreCase)
    {
        // About 0.1 M parameters besides the (tied) embeddings: learns a small task on two CPU cores in a minute
        // (samples/FineTuneCausalLM). At this width the usual 0.02 initialisation leaves the loss flat for hundreds
        // of steps; 0.1 gets it moving (measured on the sample's task).
        ["tiny-llama"] = () => Llama(hidden: 64, layers: 2, heads: 4, kvHeads: 4, intermediate: 128, maxPositions: 2048, initializerRange: 0.1),
        // About 25 M parameters besides the embeddings.
        ["small-llama"] = () => Llama(hidden: 512, layers: 8, heads: 8, kvHeads: 4, intermediate: 1536, maxPositions: 4096),
        // Llama 3.2 1B's shape (random weights): 16 layers of 2048, GQA 32/8, llama3 rope scaling.
        ["llama-3.2-1b"] = () => Llama(hidden: 2048, layers: 16, heads: 32, kvHeads: 8, intermediate: 8192, maxPositions: 131072,
            ropeTheta: 500000.0, vocab: 128256, extra: new()
            {
                ["rope_scaling"] = new Dictionary<string, object>
                {
                    ["rope_type"] = "llama3", ["factor"] = 32.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0,
                    ["original_max_position_embeddings"] = 8192,
                },
            }),
    };

    /// <summary>The names <see cref="Create"/> knows.</summary>
    public static IReadOnlyCollection<string> Names => Shapes.Keys;

    /// <summary>
    /// The config of architecture <paramref name="name"/>, with its vocabulary sized for a tokenizer of
    /// <paramref name="vocabularySize"/> tokens (rounded up to a multiple of 64, as GPUs like) unless
    /// <paramref name="overrides"/> sets vocab_size; <paramref name="overrides"/> replaces any other field too.
    /// </summary>
    /// <exception cref="ArgumentException">Unknown name (the message lists the known ones).</exception>
    public static CausalLMConfig Create(string name, int? vocabularySize = null, IReadOnlyDictionary<string, object?>? overrides = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (!Shapes.TryGetValue(name, out var shape))
            throw new ArgumentException($"Unknown architecture '{name}'; known: {string.Join(", ", Names)}.", nameof(name));
        var fields = shape();
        if (vocabularySize is int v)
        {
            if (v <= 0)
                throw new ArgumentOutOfRangeException(nameof(vocabularySize), v, "The vocabulary size must be positive.");
            fields["vocab_size"] = (long)((v + 63) / 64 * 64);
        }
        if (overrides is not null)
            foreach (var (key, value) in overrides)
                fields[key] = value;
        return CausalLMConfig.FromFields(fields);
    }

    private static Dictionary<string, object?> Llama(int hidden, int layers, int heads, int kvHeads, int intermediate, int maxPositions,
        double ropeTheta = 10000.0, int vocab = 32000, Dictionary<string, object?>? extra = null, double initializerRange = 0.02)
    {
        var fields = new Dictionary<string, object?>
        {
            ["model_type"] = "llama",
            ["architectures"] = new[] { "LlamaForCausalLM" },
            ["vocab_size"] = (long)vocab,
            ["hidden_size"] = (long)hidden,
            ["intermediate_size"] = (long)intermediate,
            ["num_hidden_layers"] = (long)layers,
            ["num_attention_heads"] = (long)heads,
            ["num_key_value_heads"] = (long)kvHeads,
            ["head_dim"] = (long)(hidden / heads),
            ["hidden_act"] = "silu",
            ["max_position_embeddings"] = (long)maxPositions,
            ["rms_norm_eps"] = 1e-5,
            ["rope_theta"] = ropeTheta,
            ["tie_word_embeddings"] = true,
            ["initializer_range"] = initializerRange,
            ["attention_bias"] = false,
            ["mlp_bias"] = false,
        };
        if (extra is not null)
            foreach (var (key, value) in extra)
                fields[key] = value;
        return fields;
    }
}
