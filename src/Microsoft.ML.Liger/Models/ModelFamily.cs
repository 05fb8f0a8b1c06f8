namespace Microsoft.ML.Liger.Models;

/// <summary>How a family's gated MLP holds its projections.</summary>
public enum MlpLayout
{
    /// <summary>gate_proj, up_proj, down_proj (Llama and most families).</summary>
    Separate,
    /// <summary>gate_up_proj (gate rows first, then up rows) and down_proj (Phi3, GLM).</summary>
    FusedGateUp,
    /// <summary>A sparse mixture of gated experts behind a top-k router (Mixtral).</summary>
    SparseMoe,
}

/// <summary>Where a family normalises q and k before the rotary embedding.</summary>
public enum QkNorm
{
    /// <summary>No q/k norm.</summary>
    None,
    /// <summary>RMSNorm over each head's head_dim (Qwen3, Gemma 3).</summary>
    PerHead,
    /// <summary>RMSNorm over the whole q and k projections (OLMo2).</summary>
    WholeProjection,
}

/// <summary>How rotary pairs are formed inside a head.</summary>
public enum RopeStyle
{
    /// <summary>Dim i pairs with i + R/2 (rotate_half: Llama and most families).</summary>
    RotateHalf,
    /// <summary>Dim 2i pairs with 2i + 1 (GLM).</summary>
    Interleaved,
}

/// <summary>
/// The norms around a decoder layer's two blocks, by their Hugging Face names; null where a family has none.
/// Pre-norm (Llama): input_layernorm before attention, post_attention_layernorm before the MLP.
/// Sandwich (Gemma 2/3, GLM-4) adds norms on each block's output; OLMo2 keeps only the output norms.
/// </summary>
public sealed record NormLayout(string? BeforeAttention, string? AfterAttention, string? BeforeMlp, string? AfterMlp)
{
    /// <summary>Llama's pre-norm layout.</summary>
    public static NormLayout PreNorm { get; } = new("input_layernorm", null, "post_attention_layernorm", null);
    /// <summary>Gemma 2/3: a norm before and after each block.</summary>
    public static NormLayout Sandwich { get; } = new("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm");
    /// <summary>GLM-4: as Gemma 2, with GLM's names.</summary>
    public static NormLayout GlmSandwich { get; } = new("input_layernorm", "post_self_attn_layernorm", "post_attention_layernorm", "post_mlp_layernorm");
    /// <summary>OLMo2: only each block's output is normalised.</summary>
    public static NormLayout PostNorm { get; } = new(null, "post_attention_layernorm", null, "post_feedforward_layernorm");

    /// <summary>The norm names in use, in layer order.</summary>
    public IEnumerable<string> Names => new[] { BeforeAttention, AfterAttention, BeforeMlp, AfterMlp }.OfType<string>();
}

/// <summary>
/// One causal LM family: the differences from Llama's decoder, as data. Every family is built by the same
/// decoder skeleton (<see cref="CausalLM"/>) from one of these; nothing is copied per family.
/// </summary>
public sealed record ModelFamily
{
    /// <summary>config.json's model_type.</summary>
    public required string ModelType { get; init; }
    /// <summary>The family's name in messages and docs.</summary>
    public required string Name { get; init; }
    /// <summary>The norms around each block.</summary>
    public NormLayout Norms { get; init; } = NormLayout.PreNorm;
    /// <summary>Gemma's RMSNorm: weight stored minus one (output × (1 + w)), all in float32.</summary>
    public bool GemmaNorm { get; init; }
    /// <summary>How the MLP holds its projections.</summary>
    public MlpLayout Mlp { get; init; } = MlpLayout.Separate;
    /// <summary>q, k and v in one qkv_proj (Phi3).</summary>
    public bool FusedQkv { get; init; }
    /// <summary>q/k normalisation.</summary>
    public QkNorm QkNorm { get; init; } = QkNorm.None;
    /// <summary>How rotary pairs are formed.</summary>
    public RopeStyle Rope { get; init; } = RopeStyle.RotateHalf;
    /// <summary>Embeddings scaled by sqrt(hidden_size), rounded to the model dtype (Gemma).</summary>
    public bool ScaleEmbeddingsBySqrtHidden { get; init; }
    /// <summary>Whether q, k and v projections have a bias, from the config.</summary>
    public Func<CausalLMConfig, bool> QkvBias { get; init; } = c => c.AttentionBias;
    /// <summary>Whether o_proj has a bias, from the config.</summary>
    public Func<CausalLMConfig, bool> OutputBias { get; init; } = c => c.AttentionBias;
    /// <summary>Whether the MLP projections have a bias, from the config.</summary>
    public Func<CausalLMConfig, bool> MlpBias { get; init; } = _ => false;
    /// <summary>Whether a layer (by index) uses the sliding window when config.json has no layer_types.</summary>
    public Func<CausalLMConfig, int, bool> SlidingLayerWithoutLayerTypes { get; init; } = (c, _) => c.SlidingWindow is not null;

    /// <summary>"sliding_attention" or "full_attention" for a layer.</summary>
    public string LayerType(CausalLMConfig config, int layer)
    {
        if (config.SlidingWindow is null)
            return "full_attention";
        if (config.LayerTypes is { } types)
            return types[layer];
        return SlidingLayerWithoutLayerTypes(config, layer) ? "sliding_attention" : "full_attention";
    }
}

/// <summary>The supported families by model_type.</summary>
public static class ModelFamilies
{
    private static readonly ModelFamily Llama = new() { ModelType = "llama", Name = "Llama", MlpBias = c => c.MlpBias };

    private static readonly ModelFamily Gemma = new()
    {
        ModelType = "gemma", Name = "Gemma", GemmaNorm = true, ScaleEmbeddingsBySqrtHidden = true,
    };

    private static readonly ModelFamily Qwen2 = new()
    {
        ModelType = "qwen2", Name = "Qwen2", QkvBias = _ => true, OutputBias = _ => false,
        // transformers 4 configs: Qwen slides only when use_sliding_window is set, on layers from max_window_layers on.
        SlidingLayerWithoutLayerTypes = (c, i) => c.UseSlidingWindow == true && i >= (c.MaxWindowLayers ?? 0),
    };

    /// <summary>Every supported family.</summary>
    public static IReadOnlyList<ModelFamily> All { get; } =
    [
        Llama,
        Llama with { ModelType = "mistral", Name = "Mistral", MlpBias = _ => false },
        Llama with { ModelType = "mixtral", Name = "Mixtral", Mlp = MlpLayout.SparseMoe, MlpBias = _ => false },
        Gemma,
        Gemma with
        {
            ModelType = "gemma2", Name = "Gemma 2", Norms = NormLayout.Sandwich,
            SlidingLayerWithoutLayerTypes = (_, i) => i % 2 == 0,
        },
        Gemma with
        {
            ModelType = "gemma3_text", Name = "Gemma 3", Norms = NormLayout.Sandwich, QkNorm = QkNorm.PerHead,
            SlidingLayerWithoutLayerTypes = (c, i) => (i + 1) % (long)(CausalLMConfig.Number(c["sliding_window_pattern"], "sliding_window_pattern") ?? 6) != 0,
        },
        Qwen2,
        Qwen2 with { ModelType = "qwen3", Name = "Qwen3", QkNorm = QkNorm.PerHead, QkvBias = c => c.AttentionBias, OutputBias = c => c.AttentionBias },
        Llama with
        {
            ModelType = "phi3", Name = "Phi3", FusedQkv = true, Mlp = MlpLayout.FusedGateUp,
            QkvBias = _ => false, OutputBias = _ => false, MlpBias = _ => false,
        },
        Llama with { ModelType = "granite", Name = "Granite" },
        Llama with { ModelType = "olmo2", Name = "OLMo2", Norms = NormLayout.PostNorm, QkNorm = QkNorm.WholeProjection, MlpBias = _ => false },
        Llama with
        {
            ModelType = "glm4", Name = "GLM-4", Norms = NormLayout.GlmSandwich, Mlp = MlpLayout.FusedGateUp, Rope = RopeStyle.Interleaved,
            OutputBias = _ => false, MlpBias = _ => false,
        },
        Llama with
        {
            ModelType = "glm", Name = "GLM", Mlp = MlpLayout.FusedGateUp, Rope = RopeStyle.Interleaved,
            OutputBias = _ => false, MlpBias = _ => false,
        },
    ];

    /// <summary>The model_type values we load.</summary>
    public static IReadOnlyList<string> SupportedModelTypes { get; } = All.Select(f => f.ModelType).ToArray();

    /// <summary>The family of a model_type; a clear error listing the supported ones otherwise.</summary>
    public static ModelFamily ForModelType(string modelType) =>
        All.FirstOrDefault(f => f.ModelType == modelType)
        ?? throw new NotSupportedException(
            $"model_type \"{modelType}\" is not supported. Supported model types: {string.Join(", ", SupportedModelTypes)}.");
}
