using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models;

/// <summary>How a <see cref="CausalLM"/> is built or loaded.</summary>
public sealed record CausalLMOptions
{
    /// <summary>Which layers run on Liger's kernels (default: all, with the fused linear cross-entropy).</summary>
    public LigerKernelOptions Kernels { get; init; } = new();

    /// <summary>Parameter dtype; null: float32 when built, the weights' stored dtype when loaded.</summary>
    public ScalarType? DType { get; init; }

    /// <summary>Where the parameters live; null: the CPU.</summary>
    public Device? Device { get; init; }

    /// <summary>The attention implementation (default: SDPA unless the family needs eager).</summary>
    public AttentionImplementation Attention { get; init; } = AttentionImplementation.Auto;

    /// <summary>Seed of the random initialisation of a model built from a config.</summary>
    public long Seed { get; init; } = 42;
}
