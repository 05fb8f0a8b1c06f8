using Microsoft.ML.Liger.Sweeps;

namespace ContextLengthSweep;

/// <summary>
/// The sample's search space: 3 context lengths x 2 batch sizes x Liger on/off = 12 points. The defaults are the
/// point a tuner starts from. The sweep's own <see cref="FineTuneCausalLMSearchSpace"/> also has gradient accumulation,
/// learning rate and gradient checkpointing; a class of one's own keeps a sweep to what one wants to vary.
/// </summary>
public sealed class ContextSweepSpace
{
    /// <summary>Tokens per packed row: each prompt and answer is about 24 tokens, so 1, 2 or 5 examples a row.</summary>
    [Choice(32, 64, 128)]
    public int MaxContextLength { get; set; } = 64;

    /// <summary>Rows per optimizer step.</summary>
    [Choice(4, 8)]
    public int BatchSize { get; set; } = 8;

    /// <summary>Liger's kernels (fused linear cross-entropy, RMSNorm, RoPE, SwiGLU) or plain TorchSharp.</summary>
    [Choice(true, false)]
    public bool Liger { get; set; } = true;
}
