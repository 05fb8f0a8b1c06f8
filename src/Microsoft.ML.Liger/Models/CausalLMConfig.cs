using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Liger.Models.Weights;

namespace Microsoft.ML.Liger.Models;

/// <summary>
/// A Hugging Face <c>config.json</c> of a causal LM, read into the fields our families use. Both spellings
/// transformers has written are understood: <c>rope_theta</c> / <c>rope_scaling</c> (transformers 4, and
/// almost every weights folder on the Hub) and <c>rope_parameters</c> (transformers 5, per layer type for Gemma 3).
/// The original JSON is kept, so saving writes back every field, including those we do not read.
/// </summary>
public sealed class CausalLMConfig
{
    private readonly JsonObject json;

    private CausalLMConfig(JsonObject json)
    {
        this.json = json;
        ModelType = String("model_type") ?? throw Error("model_type", "is missing");
        VocabSize = Long("vocab_size") ?? throw Error("vocab_size", "is missing");
        HiddenSize = Long("hidden_size") ?? throw Error("hidden_size", "is missing");
        IntermediateSize = Long("intermediate_size") ?? throw Error("intermediate_size", "is missing");
        NumHiddenLayers = Long("num_hidden_layers") ?? throw Error("num_hidden_layers", "is missing");
        NumAttentionHeads = Long("num_attention_heads") ?? throw Error("num_attention_heads", "is missing");
        NumKeyValueHeads = Long("num_key_value_heads") ?? NumAttentionHeads;
        HeadDim = Long("head_dim") ?? (HiddenSize % NumAttentionHeads == 0 ? HiddenSize / NumAttentionHeads
            : throw Error("head_dim", $"is missing and hidden_size {HiddenSize} is not a multiple of num_attention_heads {NumAttentionHeads}"));
        RmsNormEps = Double("rms_norm_eps") ?? 1e-6;
        MaxPositionEmbeddings = Long("max_position_embeddings") ?? 2048;
        TieWordEmbeddings = Bool("tie_word_embeddings") ?? false;
        HiddenAct = String("hidden_activation") ?? String("hidden_act") ?? "silu";
        AttentionBias = Bool("attention_bias") ?? false;
        MlpBias = Bool("mlp_bias") ?? false;
        SlidingWindow = Long("sliding_window");
        UseSlidingWindow = Bool("use_sliding_window");
        MaxWindowLayers = Long("max_window_layers");
        LayerTypes = json["layer_types"] switch
        {
            null => null,
            JsonArray types => types.Select(t => t is JsonValue v && v.TryGetValue<string>(out var type) ? type
                : throw Error("layer_types", $"must be a list of strings; got {t?.ToJsonString() ?? "null"} in it")).ToArray(),
            var other => throw Error("layer_types", $"must be a list of strings; got {other.ToJsonString()}"),
        };
        NumLocalExperts = Long("num_local_experts");
        NumExpertsPerToken = Long("num_experts_per_tok");
        RouterAuxLossCoef = Double("router_aux_loss_coef") ?? 0.001;
        OutputRouterLogits = Bool("output_router_logits") ?? false;
        QueryPreAttnScalar = Double("query_pre_attn_scalar");
        AttnLogitSoftcapping = Double("attn_logit_softcapping");
        FinalLogitSoftcapping = Double("final_logit_softcapping");
        EmbeddingMultiplier = Double("embedding_multiplier");
        AttentionMultiplier = Double("attention_multiplier");
        ResidualMultiplier = Double("residual_multiplier");
        LogitsScaling = Double("logits_scaling");
        BosTokenId = FirstId("bos_token_id");
        PadTokenId = FirstId("pad_token_id");
        EosTokenIds = Ids("eos_token_id");
        TorchDtype = String("dtype") ?? String("torch_dtype");
        Validate();
    }

    /// <summary><c>model_type</c>: picks the family (see <see cref="ModelFamilies"/>).</summary>
    public string ModelType { get; }
    /// <summary><c>vocab_size</c>.</summary>
    public long VocabSize { get; }
    /// <summary><c>hidden_size</c>.</summary>
    public long HiddenSize { get; }
    /// <summary><c>intermediate_size</c> (per expert for Mixtral).</summary>
    public long IntermediateSize { get; }
    /// <summary><c>num_hidden_layers</c>.</summary>
    public long NumHiddenLayers { get; }
    /// <summary><c>num_attention_heads</c>.</summary>
    public long NumAttentionHeads { get; }
    /// <summary><c>num_key_value_heads</c> (grouped-query attention); defaults to the query heads.</summary>
    public long NumKeyValueHeads { get; }
    /// <summary><c>head_dim</c>; defaults to hidden_size / num_attention_heads.</summary>
    public long HeadDim { get; }
    /// <summary><c>rms_norm_eps</c>.</summary>
    public double RmsNormEps { get; }
    /// <summary><c>max_position_embeddings</c>.</summary>
    public long MaxPositionEmbeddings { get; }
    /// <summary><c>tie_word_embeddings</c>: lm_head shares embed_tokens' weight.</summary>
    public bool TieWordEmbeddings { get; }
    /// <summary><c>hidden_activation</c> or <c>hidden_act</c> of the gated MLP ("silu", "gelu_pytorch_tanh", ...).</summary>
    public string HiddenAct { get; }
    /// <summary><c>attention_bias</c>.</summary>
    public bool AttentionBias { get; }
    /// <summary><c>mlp_bias</c>.</summary>
    public bool MlpBias { get; }
    /// <summary><c>sliding_window</c>: keys farther back than this many positions are masked on sliding layers.</summary>
    public long? SlidingWindow { get; }
    /// <summary><c>use_sliding_window</c> (Qwen2/3).</summary>
    public bool? UseSlidingWindow { get; }
    /// <summary><c>max_window_layers</c> (Qwen2/3: layers from this index on use the window).</summary>
    public long? MaxWindowLayers { get; }
    /// <summary><c>layer_types</c>: "full_attention" or "sliding_attention" per layer (transformers 5, Gemma 2/3).</summary>
    public IReadOnlyList<string>? LayerTypes { get; }
    /// <summary><c>num_local_experts</c> (Mixtral).</summary>
    public long? NumLocalExperts { get; }
    /// <summary><c>num_experts_per_tok</c> (Mixtral: top-k of the router).</summary>
    public long? NumExpertsPerToken { get; }
    /// <summary><c>router_aux_loss_coef</c> (Mixtral).</summary>
    public double RouterAuxLossCoef { get; }
    /// <summary><c>output_router_logits</c> (Mixtral): add the load-balancing loss to the training loss.</summary>
    public bool OutputRouterLogits { get; }
    /// <summary><c>query_pre_attn_scalar</c> (Gemma 2/3): attention scale is its inverse square root.</summary>
    public double? QueryPreAttnScalar { get; }
    /// <summary><c>attn_logit_softcapping</c> (Gemma 2).</summary>
    public double? AttnLogitSoftcapping { get; }
    /// <summary><c>final_logit_softcapping</c> (Gemma 2/3).</summary>
    public double? FinalLogitSoftcapping { get; }
    /// <summary><c>embedding_multiplier</c> (Granite).</summary>
    public double? EmbeddingMultiplier { get; }
    /// <summary><c>attention_multiplier</c> (Granite): the attention scale.</summary>
    public double? AttentionMultiplier { get; }
    /// <summary><c>residual_multiplier</c> (Granite): scales each block's output before the residual add.</summary>
    public double? ResidualMultiplier { get; }
    /// <summary><c>logits_scaling</c> (Granite): logits are divided by it.</summary>
    public double? LogitsScaling { get; }
    /// <summary><c>bos_token_id</c>.</summary>
    public long? BosTokenId { get; }
    /// <summary><c>pad_token_id</c>.</summary>
    public long? PadTokenId { get; }
    /// <summary><c>eos_token_id</c> (one id or a list).</summary>
    public IReadOnlyList<long> EosTokenIds { get; }
    /// <summary><c>dtype</c> / <c>torch_dtype</c>: the dtype the weights were saved in ("bfloat16", "float32", ...).</summary>
    public string? TorchDtype { get; }

    /// <summary>Rotary parameters of a layer type ("full_attention" or "sliding_attention").</summary>
    public RopeParameters RopeFor(string layerType)
    {
        // transformers 5: rope_parameters, either flat or keyed by layer type (Gemma 3).
        if (json["rope_parameters"] is JsonObject parameters)
        {
            var perType = parameters[layerType] as JsonObject;
            if (perType is null && parameters.Any(p => p.Value is JsonObject))
                perType = parameters["full_attention"] as JsonObject; // a layer type with no entry of its own
            return RopeParameters.Read(perType ?? parameters, PartialRotaryFactorFallback(), MaxPositionEmbeddings, "rope_parameters");
        }
        // transformers 4: rope_theta + rope_scaling; Gemma 3's sliding layers use rope_local_base_freq, unscaled.
        var scaling = json["rope_scaling"] as JsonObject;
        if (layerType == "sliding_attention" && Double("rope_local_base_freq") is double localTheta)
            return new RopeParameters { Theta = localTheta, PartialRotaryFactor = PartialRotaryFactorFallback() }.CheckShared("rope_local_base_freq");
        var rope = scaling is null ? new RopeParameters { PartialRotaryFactor = PartialRotaryFactorFallback() }
            : RopeParameters.Read(scaling, PartialRotaryFactorFallback(), MaxPositionEmbeddings, "rope_scaling");
        return (rope with { Theta = Double("rope_theta") ?? 10000.0 }).CheckShared("rope_theta");
    }

    private double PartialRotaryFactorFallback() => Double("partial_rotary_factor") ?? 1.0;

    /// <summary>Reads <c>config.json</c> from a model folder (or a path to the file itself).</summary>
    public static CausalLMConfig Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var file = Directory.Exists(path) ? ModelFolder.PathOf(path, "config.json") : path;
        if (!File.Exists(file))
            throw new FileNotFoundException($"No config.json at '{file}': a Hugging Face model folder holds config.json next to its weights.", file);
        try
        {
            return Parse(File.ReadAllText(file));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{file}' is not valid JSON: {e.Message}", e);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"'{file}': {e.Message}", e);
        }
    }

    /// <summary>Parses config.json text.</summary>
    public static CausalLMConfig Parse(string jsonText)
    {
        ArgumentNullException.ThrowIfNull(jsonText);
        return JsonNode.Parse(jsonText) is JsonObject root ? new CausalLMConfig(root)
            : throw new InvalidDataException("config.json must hold a JSON object.");
    }

    /// <summary>A config from field values (Hugging Face names), for building models from scratch.</summary>
    public static CausalLMConfig FromFields(IReadOnlyDictionary<string, object?> fields)
    {
        ArgumentNullException.ThrowIfNull(fields);
        return Parse(JsonSerializer.Serialize(fields));
    }

    /// <summary>A copy with some fields replaced or added (Hugging Face names).</summary>
    public CausalLMConfig With(IReadOnlyDictionary<string, object?> fields)
    {
        var copy = (JsonObject)json.DeepClone();
        foreach (var (name, value) in fields)
            copy[name] = JsonSerializer.SerializeToNode(value);
        return new CausalLMConfig(copy);
    }

    /// <summary>The JSON text, every original field kept.</summary>
    public string ToJson() => json.ToJsonString(new JsonSerializerOptions { WriteIndented = true });

    /// <summary>Writes <c>config.json</c> into <paramref name="folder"/>.</summary>
    public void Save(string folder)
    {
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "config.json"), ToJson());
    }

    /// <summary>The raw value of a field, for family-specific readers.</summary>
    public JsonNode? this[string name] => json[name];

    private void Validate()
    {
        foreach (var (name, value) in new[] { ("vocab_size", VocabSize), ("hidden_size", HiddenSize), ("intermediate_size", IntermediateSize),
                     ("num_hidden_layers", NumHiddenLayers), ("num_attention_heads", NumAttentionHeads), ("num_key_value_heads", NumKeyValueHeads), ("head_dim", HeadDim) })
            if (value < 1)
                throw Error(name, $"must be at least 1; got {value}");
        if (NumAttentionHeads % NumKeyValueHeads != 0)
            throw Error("num_key_value_heads", $"must divide num_attention_heads {NumAttentionHeads}; got {NumKeyValueHeads}");
        if (LayerTypes is { } types && types.Count != NumHiddenLayers)
            throw Error("layer_types", $"must list {NumHiddenLayers} layers; got {types.Count}");
        if (LayerTypes?.FirstOrDefault(t => t is not ("full_attention" or "sliding_attention")) is { } unknown)
            throw Error("layer_types", $"may hold only \"full_attention\" and \"sliding_attention\"; got \"{unknown}\"");
        if (SlidingWindow is < 1)
            throw Error("sliding_window", $"must be at least 1; got {SlidingWindow}");
        if (!(RmsNormEps > 0))
            throw Error("rms_norm_eps", $"must be positive; got {RmsNormEps}");
        // Counts that become a loop bound or a list length must fit an int.
        foreach (var (name, value) in new[] { ("num_hidden_layers", NumHiddenLayers), ("num_local_experts", NumLocalExperts ?? 1) })
            if (value > int.MaxValue)
                throw Error(name, $"must be at most {int.MaxValue}; got {value}");
        if (MaxPositionEmbeddings < 1)
            throw Error("max_position_embeddings", $"must be at least 1; got {MaxPositionEmbeddings}");
        if (MaxWindowLayers is < 0)
            throw Error("max_window_layers", $"must be at least 0; got {MaxWindowLayers}");
        if (NumLocalExperts is < 1)
            throw Error("num_local_experts", $"must be at least 1; got {NumLocalExperts}");
        if (NumExpertsPerToken is { } topK && (topK < 1 || topK > (NumLocalExperts ?? long.MaxValue)))
            throw Error("num_experts_per_tok", $"must be between 1 and num_local_experts {NumLocalExperts}; got {topK}");
        foreach (var (name, value) in new[] { ("query_pre_attn_scalar", QueryPreAttnScalar), ("attn_logit_softcapping", AttnLogitSoftcapping),
                     ("final_logit_softcapping", FinalLogitSoftcapping), ("logits_scaling", LogitsScaling) })
            if (value is { } v && !(v > 0))
                throw Error(name, $"must be positive; got {v}");
        foreach (var name in new[] { "rope_scaling", "rope_parameters" })
            if (json[name] is { } rope && rope is not JsonObject)
                throw Error(name, $"must be an object; got {rope.ToJsonString()}");
        // Rotary fields are read per layer type when the model is built: read them now, so they fail here, not after allocating.
        foreach (var layerType in new[] { "full_attention", "sliding_attention" })
            _ = RopeFor(layerType);
        if (TorchDtype is not (null or "float32" or "float16" or "bfloat16" or "float64"))
            throw Error(json["dtype"] is null ? "torch_dtype" : "dtype", $"must be \"float32\", \"float16\", \"bfloat16\" or \"float64\"; got \"{TorchDtype}\"");
    }

    private static InvalidDataException Error(string field, string what) => new($"config.json field '{field}' {what}.");

    // A field of the wrong JSON type is an error, not a silent default: "tie_word_embeddings": "true" must not read as false.
    private string? String(string name) => json[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        var other => throw Error(name, $"must be a string; got {other.ToJsonString()}"),
    };

    private bool? Bool(string name) => json[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<bool>(out var b) => b,
        var other => throw Error(name, $"must be true or false; got {other.ToJsonString()}"),
    };

    private long? Long(string name) => Integer(json[name], name);
    private double? Double(string name) => Number(json[name], name);

    /// <summary>A finite number (a JSON number, or a string holding one), or null when absent.</summary>
    internal static double? Number(JsonNode? node, string name)
    {
        double? value = node switch
        {
            null => null,
            JsonValue v when v.TryGetValue<double>(out var d) => d,
            JsonValue v when v.TryGetValue<string>(out var s) && double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var p) => p,
            _ => throw Error(name, $"must be a number; got {node.ToJsonString()}"),
        };
        return value is { } x && !double.IsFinite(x) ? throw Error(name, $"must be a finite number; got {node!.ToJsonString()}") : value;
    }

    /// <summary>A whole number that fits a long, or null when absent: 64.5 is refused, not truncated to 64.</summary>
    internal static long? Integer(JsonNode? node, string name)
    {
        if (node is JsonValue exact && exact.TryGetValue<long>(out var whole))
            return whole;
        if (Number(node, name) is not double d)
            return null;
        if (d != Math.Floor(d))
            throw Error(name, $"must be a whole number; got {node!.ToJsonString()}");
        if (d >= 9.2233720368547758e18 || d < -9.2233720368547758e18)
            throw Error(name, $"is too large; got {node!.ToJsonString()}");
        return (long)d;
    }

    private long? FirstId(string name) => Ids(name) is [var first, ..] ? first : null;

    private IReadOnlyList<long> Ids(string name) => json[name] switch
    {
        null => [],
        JsonArray list => list.Select(x => Integer(x, name) ?? throw Error(name, "must not hold null")).ToArray(),
        var single => [Integer(single, name)!.Value],
    };
}
