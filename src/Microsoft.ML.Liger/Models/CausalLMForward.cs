using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models;

/// <summary>The inputs of <see cref="CausalLM.forward"/>, as Hugging Face's ForCausalLM forward takes them.</summary>
public sealed record CausalLMInput
{
    /// <summary>Token ids (B, T), int64.</summary>
    public required Tensor InputIds { get; init; }

    /// <summary>(B, S) with 1 for real tokens and 0 for padding (S = cached + new tokens), or null for none.</summary>
    public Tensor? AttentionMask { get; init; }

    /// <summary>
    /// Targets (B, T), int64, aligned with <see cref="InputIds"/> as Hugging Face takes them: the model
    /// shifts them left by one, so position t is trained to predict labels[t + 1]; -100 is ignored.
    /// </summary>
    public Tensor? Labels { get; init; }

    /// <summary>Positions (B, T); null: cached length + 0..T-1.</summary>
    public Tensor? PositionIds { get; init; }

    /// <summary>A KV cache to read and extend (generation), or null.</summary>
    public KVCache? Cache { get; init; }

    /// <summary>
    /// Whether to return logits. Null: yes, unless a loss is computed by the fused linear cross-entropy,
    /// which never materialises them (the point of it).
    /// </summary>
    public bool? ReturnLogits { get; init; }

    /// <summary>Logits only for the last this-many positions (generation needs one); null: all.</summary>
    public long? LogitsToKeep { get; init; }

    /// <summary>
    /// Divide the summed token losses by this count instead of averaging over this batch's tokens, so that
    /// gradient accumulation over micro-batches equals one big batch (Hugging Face's num_items_in_batch).
    /// </summary>
    public long? NumItemsInBatch { get; init; }

    /// <summary>Add Mixtral's load-balancing loss (null: config.json's output_router_logits).</summary>
    public bool? OutputRouterLogits { get; init; }
}

/// <summary>The outputs of <see cref="CausalLM.forward"/>. Dispose to free them at once.</summary>
public sealed record CausalLMOutput(Tensor? Loss, Tensor? Logits, Tensor? AuxLoss) : IDisposable
{
    /// <inheritdoc/>
    public void Dispose()
    {
        Loss?.Dispose();
        Logits?.Dispose();
        AuxLoss?.Dispose();
    }
}
