namespace Microsoft.ML.Liger.Models;

/// <summary>
/// Which layers of a model run on Liger's kernels: the analogue of Liger-Kernel's
/// <c>apply_liger_kernel_to_&lt;family&gt;(rope, swiglu / geglu, rms_norm, cross_entropy, fused_linear_cross_entropy)</c>,
/// given when the model is built or loaded rather than patched in afterwards. Defaults are the reference's:
/// every layer on, the fused linear cross-entropy on and the plain cross-entropy off. An op a family cannot
/// use (RoPE for GLM's interleaved rotary, for instance) stays eager; <see cref="CausalLM.AppliedKernels"/> says what ran.
/// </summary>
public sealed record LigerKernelOptions
{
    /// <summary>Rotary position embedding on q and k.</summary>
    public bool Rope { get; init; } = true;

    /// <summary>RMSNorm (with the family's offset and casting mode: Gemma's 1 + weight in float32).</summary>
    public bool RmsNorm { get; init; } = true;

    /// <summary>The SwiGLU MLP of silu families (Llama, Mistral, Mixtral's experts, Qwen, Phi3, Granite, OLMo2, GLM).</summary>
    public bool SwiGlu { get; init; } = true;

    /// <summary>The GeGLU MLP of Gemma families (gelu with the tanh approximation).</summary>
    public bool GeGlu { get; init; } = true;

    /// <summary>Cross-entropy on materialised logits. Off by default, and exclusive with <see cref="FusedLinearCrossEntropy"/>.</summary>
    public bool CrossEntropy { get; init; }

    /// <summary>
    /// lm_head + cross-entropy fused, chunk by chunk, so that training never holds the logits of the whole
    /// batch. On by default; the forward then returns no logits when it computes a loss, unless asked.
    /// </summary>
    public bool FusedLinearCrossEntropy { get; init; } = true;

    /// <summary>
    /// Liger's norm and gated layers keep less for the backward: an RMSNorm runs with the projections that read it and
    /// the gated product with down_proj, and the normalised input and the product are recomputed in the backward
    /// (<c>LigerRMSNormLinearsFunction</c>, <c>LigerSiLUMulLinearFunction</c>). Same results bit for bit; 6 GiB less at
    /// 4 x 4096 tokens for a 1B Llama, about 1% more time. On by default; off keeps them, as Liger-Kernel does.
    /// </summary>
    public bool RecomputeActivations { get; init; } = true;

    /// <summary>Everything eager: the reference the Liger model is tested against.</summary>
    public static LigerKernelOptions None { get; } = new()
    {
        Rope = false, RmsNorm = false, SwiGlu = false, GeGlu = false, CrossEntropy = false, FusedLinearCrossEntropy = false,
    };

    /// <summary>Throws when the options contradict each other.</summary>
    public void Validate()
    {
        if (CrossEntropy && FusedLinearCrossEntropy)
            throw new ArgumentException(
                $"{nameof(LigerKernelOptions)}: {nameof(CrossEntropy)} and {nameof(FusedLinearCrossEntropy)} cannot both be on " +
                "(the fused loss already computes the cross-entropy); turn one off.", nameof(CrossEntropy));
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"rope={Rope}, rms_norm={RmsNorm}, swiglu={SwiGlu}, geglu={GeGlu}, cross_entropy={CrossEntropy}, fused_linear_cross_entropy={FusedLinearCrossEntropy}, recompute_activations={RecomputeActivations}";
}
