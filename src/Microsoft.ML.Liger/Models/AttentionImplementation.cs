namespace Microsoft.ML.Liger.Models;

/// <summary>How attention probabilities are computed.</summary>
public enum AttentionImplementation
{
    /// <summary>SDPA unless the family needs the eager form (attention logit softcapping).</summary>
    Auto,
    /// <summary>torch's scaled_dot_product_attention (flash / memory-efficient kernels where they apply).</summary>
    Sdpa,
    /// <summary>Hugging Face's eager attention: matmul, scale, softcap, mask, float32 softmax, matmul.</summary>
    Eager,
}
