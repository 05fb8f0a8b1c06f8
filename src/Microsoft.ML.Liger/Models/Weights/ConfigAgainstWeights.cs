using System.Globalization;
using System.Text.RegularExpressions;

namespace Microsoft.ML.Liger.Models.Weights;

/// <summary>
/// Checks config.json's sizes against the weights' headers before a model is built. The model is allocated
/// from config.json, so a config that lies (num_hidden_layers 100000 beside a 2-layer model's weights) would otherwise
/// allocate its lie in full (15.7 GiB, three minutes) before the loader compared names and shapes. Every field
/// that sizes a tensor is read off a tensor that must carry it: embed_tokens gives vocab_size and hidden_size, the
/// layer names give num_hidden_layers, layer 0's projections give the head counts and the MLP width. What passes
/// here is bounded by the weights' own size; the loader then checks every name, shape and dtype.
/// </summary>
internal static partial class ConfigAgainstWeights
{
    private const string Embed = "model.embed_tokens.weight";

    /// <exception cref="WeightMismatchException">A field disagrees with the weights folder (field, config value and weights folder value named).</exception>
    public static void Check(CausalLMConfig config, string configPath, string folder, IReadOnlyDictionary<string, StoredTensor> stored)
    {
        var problems = new List<string>();
        void Field(string field, long configValue, long storedValue, string where)
        {
            if (configValue != storedValue)
                problems.Add($"config.json field '{field}' is {configValue}, but the weights have {storedValue} ({where})");
        }
        string Describe(string name) =>
            $"{name} is [{string.Join(", ", stored[name].Entry.Shape)}] in '{stored[name].File.Path}'";

        if (!stored.TryGetValue(Embed, out var embed) || embed.Entry.Shape.Length != 2)
            problems.Add($"the weights have no 2-D {Embed}, from which config.json's vocab_size and hidden_size are checked");
        else
        {
            Field("vocab_size", config.VocabSize, embed.Entry.Shape[0], Describe(Embed));
            Field("hidden_size", config.HiddenSize, embed.Entry.Shape[1], Describe(Embed));
        }

        var layers = stored.Keys.Select(name => LayerIndex().Match(name)).Where(m => m.Success)
            .Select(m => long.Parse(m.Groups[1].ValueSpan, CultureInfo.InvariantCulture)).Distinct().Order().ToList();
        long layerCount = layers.Count == 0 ? 0 : layers[^1] + 1;
        Field("num_hidden_layers", config.NumHiddenLayers, layerCount,
            layers.Count == 0 ? "no tensor is named model.layers.N.*" : $"model.layers.0 to model.layers.{layers[^1]}");
        if (layers.Count != layerCount)
            problems.Add($"the weights' layers are not numbered 0 to {layerCount - 1}: {layerCount - layers.Count} of them are missing");

        long heads = config.NumAttentionHeads, kvHeads = config.NumKeyValueHeads, headDim = config.HeadDim;
        const string Attention = "model.layers.0.self_attn.";
        Rows(Attention + "q_proj.weight", heads * headDim, $"num_attention_heads {heads} × head_dim {headDim}");
        Rows(Attention + "k_proj.weight", kvHeads * headDim, $"num_key_value_heads {kvHeads} × head_dim {headDim}");
        Rows(Attention + "qkv_proj.weight", (heads + 2 * kvHeads) * headDim,
            $"(num_attention_heads {heads} + 2 × num_key_value_heads {kvHeads}) × head_dim {headDim}");

        const string Mlp = "model.layers.0.mlp.";
        if (stored.ContainsKey(Mlp + "gate_proj.weight"))
            Field("intermediate_size", config.IntermediateSize, stored[Mlp + "gate_proj.weight"].Entry.Shape[0], Describe(Mlp + "gate_proj.weight"));
        if (stored.ContainsKey(Mlp + "gate_up_proj.weight"))
            Rows(Mlp + "gate_up_proj.weight", 2 * config.IntermediateSize, $"2 × intermediate_size {config.IntermediateSize}");

        const string Moe = "model.layers.0.block_sparse_moe.";
        if (stored.TryGetValue(Moe + "gate.weight", out var router) && router.Entry.Shape.Length == 2)
            Field("num_local_experts", config.NumLocalExperts ?? 0, router.Entry.Shape[0], Describe(Moe + "gate.weight"));
        if (stored.TryGetValue(Moe + "experts.0.w1.weight", out var expert) && expert.Entry.Shape.Length == 2)
            Field("intermediate_size", config.IntermediateSize, expert.Entry.Shape[0], Describe(Moe + "experts.0.w1.weight"));

        if (problems.Count > 0)
            throw new WeightMismatchException(folder, configPath, problems);

        // A projection's rows are a product of fields: name them all, the weights' value, and the tensor.
        void Rows(string name, long expected, string fields)
        {
            if (stored.TryGetValue(name, out var tensor) && tensor.Entry.Shape.Length == 2 && tensor.Entry.Shape[0] != expected)
                problems.Add($"config.json fields {fields} give {expected} rows, but the weights have {tensor.Entry.Shape[0]} ({Describe(name)})");
        }
    }

    [GeneratedRegex(@"^model\.layers\.(\d{1,9})\.")]
    private static partial Regex LayerIndex();
}
