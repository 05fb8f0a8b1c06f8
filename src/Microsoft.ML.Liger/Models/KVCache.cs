using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models;

/// <summary>
/// Keys and values of the tokens seen so far, per layer, for incremental decoding. Keys are stored after
/// the rotary embedding, (B, Hkv, S, D), as Hugging Face's DynamicCache; sliding layers keep every key and
/// rely on the mask, which gives the same attention as a rolling buffer.
/// </summary>
public sealed class KVCache : IDisposable
{
    private readonly (Tensor K, Tensor V)?[] layers;

    /// <summary>An empty cache for a model of <paramref name="layerCount"/> layers.</summary>
    public KVCache(int layerCount) => layers = new (Tensor, Tensor)?[layerCount];

    /// <summary>Number of layers.</summary>
    public int LayerCount => layers.Length;

    /// <summary>Tokens cached so far (the past length of the next forward).</summary>
    public long Length => layers[0] is { } first ? first.K.shape[2] : 0;

    internal (Tensor K, Tensor V) Append(int layer, Tensor k, Tensor v)
    {
        var previous = layers[layer];
        var next = previous is { } p ? (K: cat([p.K, k], 2), V: cat([p.V, v], 2)) : (K: k.clone(), V: v.clone());
        // The cache owns its tensors across forwards: out of the caller's dispose scope.
        next.K.DetachFromDisposeScope();
        next.V.DetachFromDisposeScope();
        layers[layer] = next;
        if (previous is { } old)
        {
            old.K.Dispose();
            old.V.Dispose();
        }
        return next;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var entry in layers)
            if (entry is { } e)
            {
                e.K.Dispose();
                e.V.Dispose();
            }
        Array.Clear(layers);
    }
}
