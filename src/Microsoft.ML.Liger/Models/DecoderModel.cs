using Liger.Kernels.Runtime;
using Microsoft.ML.Liger.Models.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models;

/// <summary>Hugging Face's XModel inside XForCausalLM: <c>embed_tokens</c>, <c>layers</c>, <c>norm</c>.</summary>
internal sealed class DecoderModel : nn.Module
{
    private readonly Embedding embedTokens;
    private readonly ModuleList<DecoderLayer> layers;
    private readonly DecoderRMSNorm norm;
    private readonly ModelFamily family;
    private readonly double? embeddingMultiplier;

    internal DecoderModel(CausalLMConfig config, ModelFamily family, LigerKernelOptions kernels, AttentionImplementation attention,
        ScalarType dtype, Device? device) : base(nameof(DecoderModel))
    {
        this.family = family;
        embeddingMultiplier = config.EmbeddingMultiplier;
        long? padding = config.PadTokenId is long pad && pad >= 0 && pad < config.VocabSize ? pad : null;
        register_module("embed_tokens", embedTokens = nn.Embedding(config.VocabSize, config.HiddenSize, padding_idx: padding, device: device, dtype: dtype));
        layers = nn.ModuleList(Enumerable.Range(0, (int)config.NumHiddenLayers)
            .Select(i => new DecoderLayer(config, family, i, kernels, attention, dtype, device)).ToArray());
        register_module("layers", layers);
        register_module("norm", norm = new DecoderRMSNorm(config.HiddenSize, config.RmsNormEps, family.GemmaNorm, kernels.RmsNorm, dtype, device));
        HiddenSize = config.HiddenSize;
    }

    /// <summary>hidden_size.</summary>
    public long HiddenSize { get; }
    /// <summary>embed_tokens.</summary>
    public Embedding EmbedTokens => embedTokens;
    /// <summary>The decoder layers.</summary>
    public IReadOnlyList<DecoderLayer> Layers => layersView ??= layers.ToArray();
    private DecoderLayer[]? layersView;
    /// <summary>The final norm.</summary>
    public DecoderRMSNorm Norm => norm;

    /// <summary>Token embeddings, scaled as the family does (Gemma: √hidden rounded to the dtype; Granite: embedding_multiplier).</summary>
    public Tensor Embed(Tensor ids)
    {
        var embedded = embedTokens.forward(ids);
        if (family.ScaleEmbeddingsBySqrtHidden)
        {
            using var normalizer = tensor(Math.Sqrt(HiddenSize), dtype: embedded.dtype, device: embedded.device);
            return embedded * normalizer;
        }
        return embeddingMultiplier is double m && m != 1.0 ? embedded.Times(m) : embedded;
    }
}
