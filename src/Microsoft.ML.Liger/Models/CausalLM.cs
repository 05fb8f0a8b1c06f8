using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using Microsoft.ML.Liger.Models.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models;

/// <summary>
/// A decoder-only causal language model of any supported family, Hugging Face's XForCausalLM: <c>model</c>
/// (<c>embed_tokens</c>, <c>layers</c>, <c>norm</c>) and <c>lm_head</c> (absent when tied to the embeddings),
/// with Liger's kernels where <see cref="LigerKernelOptions"/> asks for them. One skeleton builds every
/// family from its <see cref="ModelFamily"/> description.
/// </summary>
public sealed partial class CausalLM : nn.Module
{
    private readonly DecoderModel decoder;
    private readonly Linear? lmHead;
    private readonly Dictionary<string, RotaryPositions> rotary = new();

    /// <summary>Builds a model from a config, randomly initialised as Hugging Face initialises it (see <see cref="InitializeWeights"/>).</summary>
    public CausalLM(CausalLMConfig config, CausalLMOptions? options = null) : this(config, options, initialize: true)
    {
    }

    private CausalLM(CausalLMConfig config, CausalLMOptions? options, bool initialize) : base(nameof(CausalLM))
    {
        ArgumentNullException.ThrowIfNull(config);
        Options = options ?? new CausalLMOptions();
        Options.Kernels.Validate();
        Config = config;
        Family = ModelFamilies.ForModelType(config.ModelType);
        var dtype = Options.DType ?? ScalarType.Float32;
        Device? device = Options.Device;
        register_module("model", decoder = new DecoderModel(config, Family, Options.Kernels, Options.Attention, dtype, device));
        if (!config.TieWordEmbeddings)
            register_module("lm_head", lmHead = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false, device: device, dtype: dtype));
        foreach (var type in decoder.Layers.Select(l => l.LayerType).Distinct())
            rotary[type] = new RotaryPositions(config.RopeFor(type), config.HeadDim);
        if (initialize)
            InitializeWeights(Options.Seed);
    }

    /// <summary>The configuration.</summary>
    public CausalLMConfig Config { get; }
    /// <summary>The family.</summary>
    public ModelFamily Family { get; }
    /// <summary>Build options (kernels, dtype, device, attention).</summary>
    public CausalLMOptions Options { get; }
    /// <summary>
    /// Gradient checkpointing (transformers' name) per decoder layer while training: each layer's activations are recomputed
    /// in the backward instead of kept (<see cref="Recompute"/>). Off by default.
    /// </summary>
    public bool GradientCheckpointing { get; set; }

    /// <summary>The lm_head weight (V, H): lm_head's own, or the embeddings' when tied.</summary>
    public Parameter LmHeadWeight => lmHead?.weight ?? decoder.EmbedTokens.weight!;

    /// <summary>The decoder layers.</summary>
    internal IReadOnlyList<DecoderLayer> Layers => decoder.Layers;

    /// <summary>Which Liger kernels this model actually runs, in words (an op the family cannot use stays eager).</summary>
    public string AppliedKernels
    {
        get
        {
            var kernels = Options.Kernels;
            var first = decoder.Layers[0];
            bool silu = GatedMlp.ActivationFor(Config.HiddenAct) == GateActivation.Silu;
            bool gated = first.Mlp?.Liger ?? (silu ? kernels.SwiGlu : kernels.GeGlu); // Mixtral's experts take the SwiGLU flag
            var applied = new List<string>();
            if (first.SelfAttention.LigerRope) applied.Add("rope");
            if (kernels.RmsNorm) applied.Add("rms_norm");
            if (gated) applied.Add(silu ? "swiglu" : "geglu");
            if (kernels.CrossEntropy) applied.Add("cross_entropy");
            if (kernels.FusedLinearCrossEntropy) applied.Add("fused_linear_cross_entropy");
            return applied.Count == 0 ? "none (eager)" : string.Join(", ", applied);
        }
    }

    /// <summary>
    /// Hugging Face's initialisation: linear and embedding weights normal(0, initializer_range), biases
    /// zero, the padding token's embedding zero, norms at their identity (1, or 0 for Gemma's stored w − 1).
    /// </summary>
    public void InitializeWeights(long seed)
    {
        double std = CausalLMConfig.Number(Config["initializer_range"], "initializer_range") ?? 0.02;
        // Drawn on the CPU in float32 and copied: the same weights for a seed whatever the device and dtype
        // (a CUDA parameter cannot take a CPU generator).
        using var generator = new Generator((ulong)seed);
        using var noGrad = no_grad();
        foreach (var (name, parameter) in named_parameters())
        {
            if (name.EndsWith("norm.weight", StringComparison.Ordinal) || name.EndsWith("layernorm.weight", StringComparison.Ordinal))
                parameter.FillInPlace(Family.GemmaNorm ? 0.0 : 1.0);
            else if (name.EndsWith(".bias", StringComparison.Ordinal))
                parameter.zero_();
            else
            {
                using var values = randn(parameter.shape, generator: generator).Times(std);
                parameter.copy_(values);
            }
        }
        if (Config.PadTokenId is long pad && pad >= 0 && pad < Config.VocabSize)
            decoder.EmbedTokens.weight![pad].zero_();
    }

    /// <summary>
    /// The forward pass, and the loss when labels are given: fused linear cross-entropy (no logits), Liger's
    /// cross-entropy on the logits, or torch's, as the kernel options say; Mixtral's load-balancing loss added
    /// when asked.
    /// </summary>
    public CausalLMOutput forward(CausalLMInput input)
    {
        Validate(input, labels: true);
        using var scope = NewDisposeScope();
        var (hidden, aux) = Decode(input);
        var (loss, logits) = LossAndLogits(hidden, input);
        if (aux is not null && loss is not null)
            loss = loss.Plus(aux.to(loss.device).Times(Config.RouterAuxLossCoef));
        return new CausalLMOutput(loss?.MoveToOuterDisposeScope(), logits?.MoveToOuterDisposeScope(), aux?.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The final normed hidden states (B, T, H), the input of lm_head, without logits or a loss: what a loss that
    /// applies lm_head itself chunk by chunk (the preference losses) starts from. Runs the same decoder as
    /// <see cref="forward"/>, activation recomputation (GradientCheckpointing) included. <see cref="CausalLMInput.Labels"/> and the logits
    /// options are not read. Granite's logits scaling and Gemma's final soft cap are lm_head's side, not applied
    /// here: see <see cref="LogitsScaling"/> and <see cref="FinalLogitSoftcap"/>.
    /// </summary>
    public Tensor HiddenStates(CausalLMInput input)
    {
        var hidden = HiddenStates(input, out var aux);
        aux?.Dispose();
        return hidden;
    }

    /// <summary>The hidden states and, when the model routes experts and asks for it, the load-balancing loss
    /// (Mixtral's, unweighted: add <see cref="CausalLMConfig.RouterAuxLossCoef"/> times it to a loss).</summary>
    internal Tensor HiddenStates(CausalLMInput input, out Tensor? auxLoss)
    {
        Validate(input, labels: false);
        using var scope = NewDisposeScope();
        var (hidden, aux) = Decode(input);
        auxLoss = aux?.MoveToOuterDisposeScope();
        return hidden.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// What lm_head's logits are divided by (Granite's logits_scaling; 1 for other families): a loss that applies
    /// lm_head itself to <see cref="HiddenStates(CausalLMInput)"/> divides the hidden states by it, as (W h) / s = W (h / s).
    /// </summary>
    public double LogitsScaling => Config.LogitsScaling is double s && s != 0 ? s : 1.0;

    /// <summary>Gemma 2's final logit soft cap (cap · tanh(logits / cap)), or null: a loss applying lm_head itself takes it as its softcap.</summary>
    public double? FinalLogitSoftcap => Config.FinalLogitSoftcapping;

    private void Validate(CausalLMInput input, bool labels)
    {
        ArgumentNullException.ThrowIfNull(input);
        var ids = input.InputIds;
        if (ids is null || ids.dim() != 2 || ids.dtype != ScalarType.Int64)
            throw new ArgumentException($"'{nameof(input.InputIds)}' must be int64 of shape (B, T); got {Describe(ids)}.", nameof(input));
        long batch = ids.shape[0], length = ids.shape[1], past = input.Cache?.Length ?? 0;
        if (labels && input.Labels is { } l && (l.dtype != ScalarType.Int64 || !l.shape.SequenceEqual(ids.shape)))
            throw new ArgumentException($"'{nameof(input.Labels)}' must be int64 of InputIds' shape [{batch}, {length}]; got {Describe(l)}.", nameof(input));
        if (input.AttentionMask is { } m && (m.dim() != 2 || m.shape[0] != batch || m.shape[1] != past + length))
            throw new ArgumentException($"'{nameof(input.AttentionMask)}' must be (B, cached + T) = [{batch}, {past + length}]; got {Describe(m)}.", nameof(input));
        if (input.Cache is not null && input.Cache.LayerCount != Layers.Count)
            throw new ArgumentException($"'{nameof(input.Cache)}' was made for {input.Cache.LayerCount} layers; this model has {Layers.Count}.", nameof(input));
    }

    /// <summary>Embeddings, the decoder layers and the final norm; the load-balancing loss when the routers ran and it is asked for.</summary>
    private (Tensor Hidden, Tensor? AuxLoss) Decode(CausalLMInput input)
    {
        var ids = input.InputIds;
        long batch = ids.shape[0], length = ids.shape[1], past = input.Cache?.Length ?? 0;
        var device = decoder.EmbedTokens.weight!.device;
        var positions = input.PositionIds ?? Ranges.Int64(past, past + length, device: device).unsqueeze(0).expand(batch, length);
        var hidden = decoder.Embed(ids);
        var tables = rotary.ToDictionary(r => r.Key, r => r.Value.CosSin(positions, hidden.dtype));
        bool padded = AttentionMask.HasPadding(input.AttentionMask);
        var masks = rotary.Keys.ToDictionary(type => type, type => AttentionMask.Build(length, past, input.AttentionMask,
            type == "sliding_attention" ? Config.SlidingWindow : null, device, padded));
        var routerLogits = new List<Tensor>();
        foreach (var layer in decoder.Layers)
        {
            var (cos, sin) = tables[layer.LayerType];
            var inputs = new AttentionInputs(cos, sin, masks[layer.LayerType], input.Cache, layer.Index);
            var (next, router) = RunLayer(layer, hidden, inputs);
            hidden = next;
            if (router is not null) routerLogits.Add(router);
        }
        hidden = decoder.Norm.forward(hidden);
        Tensor? aux = null;
        if (routerLogits.Count > 0 && (input.OutputRouterLogits ?? Config.OutputRouterLogits))
        {
            // The router saw only the new tokens: their columns of the mask.
            var newTokens = input.AttentionMask?.narrow(1, past, length);
            aux = SparseMoeBlock.LoadBalancingLoss(routerLogits, Layers[0].Moe!.ExpertCount, Config.NumExpertsPerToken!.Value, newTokens);
        }
        return (hidden, aux);
    }

    private (Tensor Hidden, Tensor? Router) RunLayer(DecoderLayer layer, Tensor hidden, AttentionInputs inputs)
    {
        if (!GradientCheckpointing || !training || !is_grad_enabled() || inputs.Cache is not null)
            return layer.forward(hidden, inputs);
        // Everything the layer reads goes in as an input, so the recompute in the backward sees the same tensors.
        var mask = inputs.Mask;
        Tensor[] layerInputs = mask.Allowed is null ? [hidden, inputs.Cos, inputs.Sin] : [hidden, inputs.Cos, inputs.Sin, mask.Allowed];
        var outputs = Recompute.Apply(layer, xs =>
        {
            var recomputed = new AttentionInputs(xs[1], xs[2], new AttentionMask(xs.Length > 3 ? xs[3] : null, mask.IsCausal), null, layer.Index);
            var (h, router) = layer.forward(xs[0], recomputed);
            return router is null ? [h] : [h, router];
        }, layerInputs);
        return (outputs[0], outputs.Length > 1 ? outputs[1] : null);
    }

    private (Tensor? Loss, Tensor? Logits) LossAndLogits(Tensor hidden, CausalLMInput input)
    {
        var kernels = Options.Kernels;
        bool fused = input.Labels is not null && kernels.FusedLinearCrossEntropy;
        bool wantLogits = input.ReturnLogits ?? !fused;
        if (input.LogitsToKeep is long keep && keep > 0 && keep < hidden.shape[1] && input.Labels is null)
            hidden = hidden.narrow(1, hidden.shape[1] - keep, keep);
        Tensor? logits = wantLogits || (input.Labels is not null && !fused) ? Logits(hidden) : null;
        if (input.Labels is null)
            return (null, logits);

        // Hugging Face's shift: position t predicts labels[t + 1]; the last position predicts nothing (-100).
        var labels = input.Labels;
        var shifted = cat([labels[.., 1..], ScalarArithmetic.Full([labels.shape[0], 1], -100L, ScalarType.Int64, labels.device)], 1)
            .reshape(-1).to(hidden.device);
        var reduction = input.NumItemsInBatch is null ? CrossEntropyReduction.Mean : CrossEntropyReduction.Sum;
        Tensor loss;
        if (fused)
        {
            var flat = hidden.reshape(-1, hidden.shape[^1]);
            if (flat.device.type == DeviceType.CPU)
            {
                // Only the positions that have a target go through lm_head: in supervised fine-tuning most
                // positions are prompt (label -100), and they add nothing to the loss or the gradients. Finding
                // them reads the labels on the host, free on the CPU; on a GPU it would cost a synchronisation.
                var kept = shifted.NotEqualTo(-100L).nonzero().squeeze(1);
                if (kept.shape[0] > 0 && kept.shape[0] < shifted.shape[0])
                {
                    flat = flat.index_select(0, kept);
                    shifted = shifted.index_select(0, kept);
                }
            }
            if (Config.LogitsScaling is double s && s != 1.0)
                flat = flat.DividedBy(s); // (W h) / s as W (h / s): the fused loss never forms W h
            loss = LigerFusedLinearCrossEntropyFunction.Apply(flat, LmHeadWeight, shifted, null, new FusedLinearCrossEntropyOptions
            {
                CrossEntropy = new CrossEntropyOptions { Softcap = Config.FinalLogitSoftcapping, Reduction = reduction },
            });
        }
        else
        {
            var flatLogits = logits!.reshape(-1, logits.shape[^1]);
            loss = kernels.CrossEntropy
                // The kernel writes the gradient over its input: only when the caller does not get the logits.
                ? LigerCrossEntropyFunction.Apply(wantLogits ? flatLogits.clone() : flatLogits, shifted,
                    new CrossEntropyOptions { Reduction = reduction, InPlaceGradient = true })
                : nn.functional.cross_entropy(flatLogits.to(ScalarType.Float32), shifted, ignore_index: -100,
                    reduction: reduction == CrossEntropyReduction.Mean ? nn.Reduction.Mean : nn.Reduction.Sum);
            if (!wantLogits)
                logits = null;
        }
        if (input.NumItemsInBatch is long items)
            loss = loss.DividedBy(items);
        return (loss, logits);
    }

    /// <summary>lm_head, Granite's logits scaling and Gemma's final softcapping, as Hugging Face applies them.</summary>
    private Tensor Logits(Tensor hidden)
    {
        var logits = lmHead?.forward(hidden) ?? nn.functional.linear(hidden, decoder.EmbedTokens.weight!);
        if (Config.LogitsScaling is double s && s != 1.0)
            logits = logits.DividedBy(s);
        if (Config.FinalLogitSoftcapping is double cap)
            logits = logits.SoftCapped(cap);
        return logits;
    }

    private static string Describe(Tensor? t) => t is null ? "null" : $"{t.dtype} [{string.Join(", ", t.shape)}]";

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
            foreach (var table in rotary.Values)
                table.Dispose();
        base.Dispose(disposing);
    }
}
