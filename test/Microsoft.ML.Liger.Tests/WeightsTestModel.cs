using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests;

/// <summary>Sizes of <see cref="TinyCausalLm"/>; odd on purpose, so no shape lines up by accident.</summary>
internal sealed record TinyLmConfig(int Vocab = 37, int Hidden = 13, int Intermediate = 17, int Layers = 2)
{
    /// <summary>Tie lm_head.weight to model.embed_tokens.weight (one Parameter, as HF's tie_word_embeddings).</summary>
    public bool TieEmbeddings { get; init; }

    /// <summary>Put model.norm.weight on the meta device, so writing its data fails half-way through a save.</summary>
    public bool NormOnMeta { get; init; }
}

/// <summary>
/// A causal-LM-shaped module with Hugging Face state-dict names: nested modules, a ModuleList, biases, a
/// persistent int64 buffer and a non-persistent rotary buffer (never in the state dict).
/// It has no forward: checkpoint I/O only sees the state dict.
/// </summary>
internal sealed class TinyCausalLm : nn.Module
{
    public readonly TinyDecoder model;
    public readonly Linear lm_head;

    public TinyCausalLm(TinyLmConfig config) : base(nameof(TinyCausalLm))
    {
        model = new TinyDecoder(config);
        lm_head = nn.Linear(config.Hidden, config.Vocab, hasBias: false);
        if (config.TieEmbeddings)
            lm_head.weight = model.embed_tokens.weight!;
        RegisterComponents();
    }
}

internal sealed class TinyDecoder : nn.Module
{
    public readonly Embedding embed_tokens;
    public readonly ModuleList<TinyDecoderLayer> layers;
    public readonly TinyRmsNorm norm;

    public TinyDecoder(TinyLmConfig config) : base(nameof(TinyDecoder))
    {
        embed_tokens = nn.Embedding(config.Vocab, config.Hidden);
        layers = nn.ModuleList(Enumerable.Range(0, config.Layers).Select(_ => new TinyDecoderLayer(config)).ToArray());
        norm = new TinyRmsNorm(config.Hidden, config.NormOnMeta ? META : CPU);
        RegisterComponents();
        // Random, so a load that skips it is caught.
        register_buffer("position_ids", randint(0, 1000, [1, 7], dtype: int64));
    }
}

internal sealed class TinyDecoderLayer : nn.Module
{
    public readonly TinyAttention self_attn;
    public readonly TinyMlp mlp;
    public readonly TinyRmsNorm input_layernorm;

    public TinyDecoderLayer(TinyLmConfig config) : base(nameof(TinyDecoderLayer))
    {
        self_attn = new TinyAttention(config);
        mlp = new TinyMlp(config);
        input_layernorm = new TinyRmsNorm(config.Hidden, CPU);
        RegisterComponents();
    }
}

internal sealed class TinyAttention : nn.Module
{
    public readonly Linear q_proj;
    public readonly Linear o_proj;
    public readonly TinyRotary rotary_emb;

    public TinyAttention(TinyLmConfig config) : base(nameof(TinyAttention))
    {
        q_proj = nn.Linear(config.Hidden, config.Hidden, hasBias: true);
        o_proj = nn.Linear(config.Hidden, config.Hidden, hasBias: false);
        rotary_emb = new TinyRotary(config.Hidden);
        RegisterComponents();
    }
}

internal sealed class TinyRotary : nn.Module
{
    public TinyRotary(int dim) : base(nameof(TinyRotary))
    {
        // Recomputed by models, never saved (non-persistent); older checkpoints carry it anyway.
        register_buffer("inv_freq", rand(dim / 2), persistent: false);
    }
}

internal sealed class TinyMlp : nn.Module
{
    public readonly Linear gate_proj;
    public readonly Linear down_proj;

    public TinyMlp(TinyLmConfig config) : base(nameof(TinyMlp))
    {
        gate_proj = nn.Linear(config.Hidden, config.Intermediate, hasBias: false);
        down_proj = nn.Linear(config.Intermediate, config.Hidden, hasBias: false);
        RegisterComponents();
    }
}

internal sealed class TinyRmsNorm : nn.Module
{
    public readonly Parameter weight;

    public TinyRmsNorm(int hidden, Device device) : base(nameof(TinyRmsNorm))
    {
        weight = nn.Parameter(randn(hidden, device: device));
        RegisterComponents();
    }
}
