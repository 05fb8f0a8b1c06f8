using Liger.Kernels.Runtime;
using Liger.Kernels.Ops;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models.Layers;

/// <summary>What one attention call needs besides the hidden states.</summary>
internal sealed record AttentionInputs(Tensor Cos, Tensor Sin, AttentionMask Mask, KVCache? Cache, int LayerIndex);

/// <summary>
/// Self-attention of a decoder layer, Hugging Face's names and semantics: q/k/v projections (or one
/// qkv_proj), optional q/k RMSNorm, rotary embedding (Liger's kernel or eager), grouped-query attention by
/// repeating k/v heads, causal / padding / sliding-window masks, a KV cache for generation, and o_proj.
/// </summary>
internal sealed class Attention : nn.Module
{
    private readonly Linear? qProj, kProj, vProj, qkvProj;
    private readonly Linear oProj;
    private readonly DecoderRMSNorm? qNorm, kNorm;
    private readonly long heads, kvHeads, headDim;
    private readonly double scaling;
    private readonly double? softcap;
    private readonly bool eager, ligerRope;
    private readonly RopeStyle ropeStyle;

    internal Attention(CausalLMConfig config, ModelFamily family, LigerKernelOptions kernels,
        AttentionImplementation implementation, ScalarType dtype, Device? device) : base(nameof(Attention))
    {
        (heads, kvHeads, headDim) = (config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim);
        long hidden = config.HiddenSize, qSize = heads * headDim, kvSize = kvHeads * headDim;
        bool qkvBias = family.QkvBias(config);
        if (family.FusedQkv)
            register_module("qkv_proj", qkvProj = nn.Linear(hidden, qSize + 2 * kvSize, hasBias: qkvBias, device: device, dtype: dtype));
        else
        {
            register_module("q_proj", qProj = nn.Linear(hidden, qSize, hasBias: qkvBias, device: device, dtype: dtype));
            register_module("k_proj", kProj = nn.Linear(hidden, kvSize, hasBias: qkvBias, device: device, dtype: dtype));
            register_module("v_proj", vProj = nn.Linear(hidden, kvSize, hasBias: qkvBias, device: device, dtype: dtype));
        }
        register_module("o_proj", oProj = nn.Linear(qSize, hidden, hasBias: family.OutputBias(config), device: device, dtype: dtype));
        if (family.QkNorm != QkNorm.None)
        {
            bool perHead = family.QkNorm == QkNorm.PerHead;
            register_module("q_norm", qNorm = new DecoderRMSNorm(perHead ? headDim : qSize, config.RmsNormEps, family.GemmaNorm, kernels.RmsNorm, dtype, device));
            register_module("k_norm", kNorm = new DecoderRMSNorm(perHead ? headDim : kvSize, config.RmsNormEps, family.GemmaNorm, kernels.RmsNorm, dtype, device));
        }
        scaling = config.AttentionMultiplier ?? Math.Pow(config.QueryPreAttnScalar ?? headDim, -0.5);
        softcap = config.AttnLogitSoftcapping;
        eager = implementation == AttentionImplementation.Eager || (implementation == AttentionImplementation.Auto && softcap is not null);
        if (!eager && softcap is not null)
            throw new ArgumentException("attn_logit_softcapping needs the eager attention implementation; SDPA cannot cap logits.", nameof(implementation));
        ropeStyle = family.Rope;
        ligerRope = kernels.Rope && family.Rope == RopeStyle.RotateHalf;
    }

    /// <summary>Whether the rotary embedding runs on Liger's kernel.</summary>
    public bool LigerRope => ligerRope;

    /// <summary>Attention over <paramref name="x"/>, normalised first by <paramref name="norm"/> when given: a norm on
    /// Liger's kernel runs with the projections as one function that does not keep the normalised x.</summary>
    internal Tensor forward(Tensor x, AttentionInputs inputs, DecoderRMSNorm? norm = null)
    {
        using var scope = NewDisposeScope();
        long batch = x.shape[0], length = x.shape[1];
        bool fused = norm is { Liger: true };
        if (norm is not null && !fused)
            x = norm.forward(x);
        Tensor q, k, v;
        if (qkvProj is not null)
        {
            var qkv = fused ? norm!.ForwardLinears(x, qkvProj)[0] : qkvProj.forward(x);
            long qSize = heads * headDim, kvSize = kvHeads * headDim;
            (q, k, v) = (qkv.narrow(-1, 0, qSize), qkv.narrow(-1, qSize, kvSize), qkv.narrow(-1, qSize + kvSize, kvSize));
        }
        else if (fused)
        {
            var projected = norm!.ForwardLinears(x, qProj!, kProj!, vProj!);
            (q, k, v) = (projected[0], projected[1], projected[2]);
        }
        else
            (q, k, v) = (qProj!.forward(x), kProj!.forward(x), vProj!.forward(x));
        if (qNorm is not null && qNorm.weight.shape[0] != headDim)
            (q, k) = (qNorm.forward(q), kNorm!.forward(k));
        q = q.reshape(batch, length, heads, headDim);
        k = k.reshape(batch, length, kvHeads, headDim);
        v = v.reshape(batch, length, kvHeads, headDim).transpose(1, 2);
        if (qNorm is not null && qNorm.weight.shape[0] == headDim)
            (q, k) = (qNorm.forward(q), kNorm!.forward(k));
        (q, k) = (q.transpose(1, 2), k.transpose(1, 2));

        if (ligerRope)
            // q and k here are private views of this layer's projections (never leaves): the kernel may rotate
            // them in place, and write their gradients over the incoming ones, which only attention reads.
            (q, k) = LigerRotaryPosEmb.Apply(q, k, inputs.Cos, inputs.Sin, inPlace: true, inPlaceBackward: true);
        else
            (q, k) = (RotaryPositions.ApplyEager(q, inputs.Cos, inputs.Sin, ropeStyle), RotaryPositions.ApplyEager(k, inputs.Cos, inputs.Sin, ropeStyle));

        if (inputs.Cache is not null)
            (k, v) = inputs.Cache.Append(inputs.LayerIndex, k, v);
        if (kvHeads != heads)
            (k, v) = (RepeatKv(k), RepeatKv(v));

        var output = eager ? EagerAttention(q, k, v, inputs.Mask) : SdpaAttention(q, k, v, inputs.Mask);
        output = output.transpose(1, 2).reshape(batch, length, heads * headDim);
        return oProj.forward(output).MoveToOuterDisposeScope();
    }

    // (B, Hkv, S, D) → (B, Hq, S, D), query head h reading kv head h / (Hq / Hkv), as Hugging Face's repeat_kv.
    private Tensor RepeatKv(Tensor t)
    {
        long groups = heads / kvHeads;
        return t.unsqueeze(2).expand(t.shape[0], kvHeads, groups, t.shape[2], headDim).reshape(t.shape[0], heads, t.shape[2], headDim);
    }

    private Tensor EagerAttention(Tensor q, Tensor k, Tensor v, AttentionMask mask)
    {
        var scores = matmul(q, k.transpose(2, 3)).Times(scaling);
        if (softcap is double cap)
            scores = scores.SoftCapped(cap);
        var allowed = mask.Allowed ?? ones(q.shape[2], k.shape[2], dtype: ScalarType.Bool, device: q.device).tril();
        scores = scores.FilledWhere(allowed.logical_not(), MinValue(scores.dtype));
        var probabilities = scores.softmax(-1, ScalarType.Float32).to(q.dtype);
        return matmul(probabilities, v);
    }

    private Tensor SdpaAttention(Tensor q, Tensor k, Tensor v, AttentionMask mask)
    {
        // TorchSharp's SDPA has no scale argument: it divides by sqrt(head_dim), so other scales are folded into q.
        double defaultScale = 1.0 / Math.Sqrt(headDim);
        if (Math.Abs(scaling - defaultScale) > 1e-12 * defaultScale)
            q = q.Times(scaling / defaultScale);
        return nn.functional.scaled_dot_product_attention(q, k, v, mask.Allowed, 0.0, mask.IsCausal && mask.Allowed is null);
    }

    private static double MinValue(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => float.MinValue,
        ScalarType.Float64 => double.MinValue,
        ScalarType.Float16 => -65504.0,
        _ => -3.3895313892515355e38, // bfloat16's lowest finite value
    };
}
