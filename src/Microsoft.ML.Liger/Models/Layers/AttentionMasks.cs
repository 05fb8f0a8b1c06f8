using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models.Layers;

/// <summary>
/// Which keys each query may attend to, for one layer type: a boolean (B, 1, T, S) tensor (true = attend),
/// or none when plain causal attention over the same T positions says it all (no padding, no window, no
/// cache): then attention runs with is_causal, which lets SDPA pick its fastest kernels.
/// </summary>
internal sealed record AttentionMask(Tensor? Allowed, bool IsCausal)
{
    /// <summary>
    /// Causal, padding and sliding-window constraints, as Hugging Face's masks: key j is visible to the query
    /// at position i when j ≤ i, attention_mask[j] is 1, and (sliding layers) i − j &lt; window. A query that
    /// sees no key at all (a left-padding position) is let see itself, so its row stays finite; its output
    /// is padding and never read, but a NaN there would poison the gradients through the matmuls.
    /// </summary>
    /// <param name="queryLength">T, the new tokens.</param>
    /// <param name="pastLength">Tokens already in the KV cache (keys S = past + T).</param>
    /// <param name="attentionMask">(B, S) with 1 for real tokens, or null.</param>
    /// <param name="slidingWindow">The window of sliding layers, or null for full attention.</param>
    /// <param name="device">Where to build it.</param>
    /// <param name="padded">Whether <paramref name="attentionMask"/> has a zero (null: look, one host sync); the
    /// model checks once per forward for all layer types.</param>
    public static AttentionMask Build(long queryLength, long pastLength, Tensor? attentionMask, long? slidingWindow, Device device,
        bool? padded = null)
    {
        long keys = pastLength + queryLength;
        padded ??= HasPadding(attentionMask);
        bool windowBites = slidingWindow is long w && keys > w;
        if (padded == false && !windowBites && pastLength == 0)
            return new AttentionMask(null, IsCausal: true);
        using var scope = NewDisposeScope();
        var queryPositions = Ranges.Int64(pastLength, keys, device: device).unsqueeze(-1);
        var keyPositions = Ranges.Int64(0, keys, device: device).unsqueeze(0);
        var allowed = keyPositions <= queryPositions;
        if (slidingWindow is long window)
        {
            using Scalar limit = window.ToScalar(); // kept alive through the native call (see ScalarArithmetic)
            allowed = allowed.logical_and((queryPositions - keyPositions).lt(limit));
        }
        allowed = allowed.unsqueeze(0).unsqueeze(0); // (1, 1, T, S)
        if (padded.Value)
        {
            allowed = allowed.logical_and(attentionMask!.to(ScalarType.Bool, device)[.., TensorIndex.None, TensorIndex.None, ..]);
            var blind = allowed.any(-1, keepdim: true).logical_not();
            var self = (keyPositions == queryPositions).unsqueeze(0).unsqueeze(0);
            allowed = allowed.logical_or(blind.logical_and(self));
        }
        return new AttentionMask(allowed.MoveToOuterDisposeScope(), IsCausal: false);
    }

    /// <summary>Whether a (B, S) attention mask marks any padding: one host sync, the price of letting SDPA use is_causal.</summary>
    public static bool HasPadding(Tensor? attentionMask) => attentionMask is not null && attentionMask.logical_not().any().item<bool>();
}
