using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Ops;

/// <summary>
/// The cos and sin tables RoPE takes, built from position ids as Hugging Face's LlamaRotaryEmbedding
/// builds them (default rope type): inv_freq = 1 / theta^(arange(0, R, 2) / R), freqs = positions ⊗ inv_freq
/// in float32, emb = cat(freqs, freqs), cos = cos(emb), sin = sin(emb), then cast to the model dtype.
/// Every step is the torch op Hugging Face uses, in float32, so the tables equal theirs on the same device.
/// </summary>
public static class RotaryEmbedding
{
    /// <summary>inv_freq (R / 2) in float32: 1 / theta^(2i / R).</summary>
    /// <param name="rotaryDim">R, the rotated dims per head (head_dim, or head_dim × partial_rotary_factor); even.</param>
    /// <param name="theta">The base (rope_theta): 10000 for Llama 2, 500000 for Llama 3.</param>
    /// <param name="device">Where to build it (CPU when null).</param>
    public static Tensor InverseFrequencies(long rotaryDim, double theta = 10000.0, Device? device = null)
    {
        if (rotaryDim < 2 || rotaryDim % 2 != 0)
            throw new ArgumentOutOfRangeException(nameof(rotaryDim), rotaryDim, $"'{nameof(rotaryDim)}' must be even and at least 2.");
        if (!double.IsFinite(theta) || theta <= 0)
            throw new ArgumentOutOfRangeException(nameof(theta), theta, $"'{nameof(theta)}' must be finite and positive.");
        using var scope = NewDisposeScope();
        // As Hugging Face: int64 arange, to float32, divided by R; base ** exponent (torch.pow of a scalar
        // base runs the tensor-tensor kernel on the base as float32); 1.0 / x, which torch computes as reciprocal.
        var exponent = Ranges.Int64(0, rotaryDim, 2, device).to(ScalarType.Float32).DividedBy(rotaryDim);
        return ScalarArithmetic.FullLike(exponent, theta).pow(exponent).reciprocal().MoveToOuterDisposeScope();
    }

    /// <summary>(cos, sin) of shape (B, T, R) from position ids (B, T), or (1, T, R) from (T).</summary>
    /// <param name="positionIds">Integer positions, (B, T) or (T), below 2^24 (exact in float32).</param>
    /// <param name="rotaryDim">R, the rotated dims per head; even.</param>
    /// <param name="theta">The base (rope_theta).</param>
    /// <param name="dtype">The tables' dtype (the model's: q and k's).</param>
    /// <param name="device">Where to build them (the position ids' device when null).</param>
    /// <param name="attentionScaling">Factor on cos and sin (1 for the default rope type).</param>
    public static (Tensor Cos, Tensor Sin) CosSin(Tensor positionIds, long rotaryDim, double theta = 10000.0,
        ScalarType dtype = ScalarType.Float32, Device? device = null, double attentionScaling = 1.0)
    {
        TensorChecks.NotNull(positionIds, nameof(positionIds));
        using var invFreq = InverseFrequencies(rotaryDim, theta, device ?? positionIds.device);
        return CosSin(positionIds, invFreq, dtype, attentionScaling);
    }

    /// <summary>(cos, sin) from position ids and a precomputed inv_freq (R / 2, float32), on inv_freq's device.</summary>
    public static (Tensor Cos, Tensor Sin) CosSin(Tensor positionIds, Tensor inverseFrequencies, ScalarType dtype,
        double attentionScaling = 1.0)
    {
        TensorChecks.NotNull(positionIds, nameof(positionIds));
        TensorChecks.NotNull(inverseFrequencies, nameof(inverseFrequencies));
        if (positionIds.dim() is not (1 or 2) || positionIds.dtype is not (ScalarType.Int64 or ScalarType.Int32))
            throw new ArgumentException(
                $"'{nameof(positionIds)}' must be int64 or int32 of shape (B, T) or (T); got {positionIds.dtype} [{string.Join(", ", positionIds.shape)}].", nameof(positionIds));
        if (inverseFrequencies.dim() != 1 || inverseFrequencies.dtype != ScalarType.Float32)
            throw new ArgumentException(
                $"'{nameof(inverseFrequencies)}' must be float32 of shape (R / 2); got {inverseFrequencies.dtype} [{string.Join(", ", inverseFrequencies.shape)}].", nameof(inverseFrequencies));
        if (Array.IndexOf(TensorChecks.FloatingTypes, dtype) < 0)
            throw new ArgumentException($"'{nameof(dtype)}' must be float32, bfloat16 or float16; got {dtype}.", nameof(dtype));
        TensorChecks.Finite(attentionScaling, nameof(attentionScaling));
        using var scope = NewDisposeScope();
        var positions = positionIds.dim() == 1 ? positionIds.unsqueeze(0) : positionIds;
        // One float32 product per element, as Hugging Face's (B, R/2, 1) @ (B, 1, T) matmul with inner size 1.
        var freqs = positions.to(ScalarType.Float32, inverseFrequencies.device).unsqueeze(-1) * inverseFrequencies;
        var emb = cat([freqs, freqs], -1);
        var (cos, sin) = (emb.cos(), emb.sin());
        if (attentionScaling != 1.0)
            (cos, sin) = (cos.Times(attentionScaling), sin.Times(attentionScaling));
        return (cos.to(dtype).MoveToOuterDisposeScope(), sin.to(dtype).MoveToOuterDisposeScope());
    }
}
