using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models.Layers;

/// <summary>
/// One decoder layer: attention and MLP blocks, each with the family's norms before and/or after it
/// (<see cref="NormLayout"/>) and a residual add (scaled by Granite's residual_multiplier).
/// </summary>
internal sealed class DecoderLayer : nn.Module
{
    private readonly Attention selfAttn;
    private readonly GatedMlp? mlp;
    private readonly SparseMoeBlock? moe;
    private readonly DecoderRMSNorm? beforeAttention, afterAttention, beforeMlp, afterMlp;
    private readonly double? residualMultiplier;
    private readonly bool recompute;

    internal DecoderLayer(CausalLMConfig config, ModelFamily family, int index, LigerKernelOptions kernels,
        AttentionImplementation attention, ScalarType dtype, Device? device) : base(nameof(DecoderLayer))
    {
        Index = index;
        LayerType = family.LayerType(config, index);
        register_module("self_attn", selfAttn = new Attention(config, family, kernels, attention, dtype, device));
        var activation = GatedMlp.ActivationFor(config.HiddenAct);
        bool ligerMlp = activation == GateActivation.Silu ? kernels.SwiGlu : kernels.GeGlu;
        if (family.Mlp == MlpLayout.SparseMoe)
            register_module("block_sparse_moe", moe = new SparseMoeBlock(config, ligerMlp, dtype, device, kernels.RecomputeActivations));
        else
            register_module("mlp", mlp = new GatedMlp(config.HiddenSize, config.IntermediateSize, family.Mlp == MlpLayout.FusedGateUp,
                family.MlpBias(config), activation, ligerMlp, dtype, device) { RecomputeProduct = kernels.RecomputeActivations });
        recompute = kernels.RecomputeActivations;
        DecoderRMSNorm? Norm(string? name)
        {
            if (name is null)
                return null;
            var norm = new DecoderRMSNorm(config.HiddenSize, config.RmsNormEps, family.GemmaNorm, kernels.RmsNorm, dtype, device);
            register_module(name, norm);
            return norm;
        }
        (beforeAttention, afterAttention) = (Norm(family.Norms.BeforeAttention), Norm(family.Norms.AfterAttention));
        (beforeMlp, afterMlp) = (Norm(family.Norms.BeforeMlp), Norm(family.Norms.AfterMlp));
        residualMultiplier = config.ResidualMultiplier;
    }

    /// <summary>The layer's index in the stack.</summary>
    public int Index { get; }

    /// <summary>"full_attention" or "sliding_attention".</summary>
    public string LayerType { get; }

    internal Attention SelfAttention => selfAttn;
    internal GatedMlp? Mlp => mlp;
    internal SparseMoeBlock? Moe => moe;

    /// <summary>The layer's output and, for a mixture of experts, its router logits.</summary>
    internal (Tensor Hidden, Tensor? RouterLogits) forward(Tensor hidden, AttentionInputs inputs)
    {
        if (!recompute)
            return ForwardKeepingActivations(hidden, inputs);
        using var scope = NewDisposeScope();
        // The norms before attention and before the MLP go in with their projections (see Attention.forward).
        var attended = selfAttn.forward(hidden, inputs, beforeAttention);
        hidden = Residual(hidden, afterAttention?.forward(attended) ?? attended);
        Tensor? routerLogits = null;
        Tensor transformed;
        if (moe is not null)
            (transformed, routerLogits) = moe.forward(beforeMlp?.forward(hidden) ?? hidden);
        else
            transformed = mlp!.forward(hidden, beforeMlp);
        hidden = Residual(hidden, afterMlp?.forward(transformed) ?? transformed);
        return (hidden.MoveToOuterDisposeScope(), routerLogits?.MoveToOuterDisposeScope());
    }

    // The layer as it was before recomputation: every norm's output kept by the projections that read it.
    private (Tensor Hidden, Tensor? RouterLogits) ForwardKeepingActivations(Tensor hidden, AttentionInputs inputs)
    {
        using var scope = NewDisposeScope();
        var attended = selfAttn.forward(beforeAttention?.forward(hidden) ?? hidden, inputs);
        hidden = Residual(hidden, afterAttention?.forward(attended) ?? attended);
        var mlpInput = beforeMlp?.forward(hidden) ?? hidden;
        Tensor? routerLogits = null;
        Tensor transformed;
        if (moe is not null)
            (transformed, routerLogits) = moe.forward(mlpInput);
        else
            transformed = mlp!.forward(mlpInput);
        hidden = Residual(hidden, afterMlp?.forward(transformed) ?? transformed);
        return (hidden.MoveToOuterDisposeScope(), routerLogits?.MoveToOuterDisposeScope());
    }

    private Tensor Residual(Tensor residual, Tensor update) =>
        residualMultiplier is double m ? residual.Plus(update.Times(m)) : residual.Plus(update);
}
