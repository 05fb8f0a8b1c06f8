using Liger.Kernels.Runtime;
using Microsoft.ML.Liger.Models;

namespace Microsoft.ML.Liger.Tests.Models;

/// <summary>
/// Tiny random configurations of every supported family, each exercising what makes the family differ
/// (windows shorter than the test sequences, softcaps small enough to bite, non-unit multipliers).
/// </summary>
internal static class TinyModels
{
    public const long Vocab = 97;

    private static Dictionary<string, object?> Base(string modelType) => new()
    {
        ["model_type"] = modelType,
        ["vocab_size"] = Vocab,
        ["hidden_size"] = 48,
        ["intermediate_size"] = 80,
        ["num_hidden_layers"] = 2,
        ["num_attention_heads"] = 4,
        ["num_key_value_heads"] = 2,
        ["head_dim"] = 12,
        ["rms_norm_eps"] = 1e-6,
        ["max_position_embeddings"] = 64,
        ["pad_token_id"] = 0,
        ["bos_token_id"] = 1,
        ["eos_token_id"] = 2,
        ["tie_word_embeddings"] = false,
        ["hidden_act"] = "silu",
    };

    private static Dictionary<string, object?> With(this Dictionary<string, object?> fields, params (string Key, object? Value)[] changes)
    {
        foreach (var (key, value) in changes)
            fields[key] = value;
        return fields;
    }

    /// <summary>Case name → config.</summary>
    public static IReadOnlyDictionary<string, CausalLMConfig> All { get; } = new Dictionary<string, Dictionary<string, object?>>
    {
        ["llama2"] = Base("llama").With(("rope_theta", 10000.0)),
        ["llama3"] = Base("llama").With(("rope_theta", 500000.0), ("tie_word_embeddings", true),
            ("rope_scaling", new Dictionary<string, object> { ["rope_type"] = "llama3", ["factor"] = 8.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 16 })),
        ["llama_bias"] = Base("llama").With(("attention_bias", true), ("mlp_bias", true)),
        ["mistral"] = Base("mistral").With(("sliding_window", 5)),
        ["mixtral"] = Base("mixtral").With(("num_local_experts", 4), ("num_experts_per_tok", 2), ("output_router_logits", true), ("router_aux_loss_coef", 0.02)),
        ["gemma"] = Base("gemma").With(("hidden_act", "gelu_pytorch_tanh"), ("tie_word_embeddings", true)),
        ["gemma2"] = Base("gemma2").With(("hidden_activation", "gelu_pytorch_tanh"), ("tie_word_embeddings", true), ("sliding_window", 5),
            ("attn_logit_softcapping", 2.0), ("final_logit_softcapping", 3.0), ("query_pre_attn_scalar", 24),
            ("layer_types", new[] { "sliding_attention", "full_attention" })),
        ["gemma3_text"] = Base("gemma3_text").With(("hidden_activation", "gelu_pytorch_tanh"), ("tie_word_embeddings", true), ("sliding_window", 5),
            ("query_pre_attn_scalar", 24), ("layer_types", new[] { "sliding_attention", "full_attention" }),
            ("rope_parameters", new Dictionary<string, object>
            {
                ["sliding_attention"] = new Dictionary<string, object> { ["rope_type"] = "default", ["rope_theta"] = 10000.0 },
                ["full_attention"] = new Dictionary<string, object> { ["rope_type"] = "linear", ["factor"] = 2.0, ["rope_theta"] = 1000000.0 },
            })),
        ["qwen2"] = Base("qwen2"),
        ["qwen2_sliding"] = Base("qwen2").With(("use_sliding_window", true), ("sliding_window", 5), ("max_window_layers", 1)),
        ["qwen3"] = Base("qwen3"),
        ["phi3"] = Base("phi3").With(("partial_rotary_factor", 0.5)),
        ["granite"] = Base("granite").With(("embedding_multiplier", 3.0), ("attention_multiplier", 0.2), ("residual_multiplier", 0.5), ("logits_scaling", 4.0)),
        ["olmo2"] = Base("olmo2"),
        ["glm4"] = Base("glm4").With(("partial_rotary_factor", 0.5), ("attention_bias", true)),
        ["glm"] = Base("glm").With(("partial_rotary_factor", 0.5), ("attention_bias", true)),
    }.ToDictionary(c => c.Key, c => CausalLMConfig.FromFields(c.Value));

    /// <summary>Every model_type the library supports appears in <see cref="All"/>.</summary>
    public static IEnumerable<object[]> Cases => All.Keys.Select(k => new object[] { k });

    /// <summary>
    /// Randomises every parameter (norm weights too, which start at the identity, so that a wrong norm
    /// offset or a norm applied in the wrong place shows) with a seeded generator.
    /// </summary>
    public static void Randomize(CausalLM model, long seed, double std = 0.2)
    {
        var generator = new TorchSharp.torch.Generator((ulong)seed);
        using var noGrad = TorchSharp.torch.no_grad();
        foreach (var (_, parameter) in model.named_parameters())
            parameter.copy_(TorchSharp.torch.randn(parameter.shape, generator: generator).Times(std));
    }
}
