using Liger.Kernels.Runtime;
using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models.Layers;

/// <summary>
/// cos and sin tables of one rope configuration (one layer type), built as Hugging Face's rotary
/// embedding builds them: inv_freq in float32 (scaled by the rope type), angles as position × inv_freq in
/// float32, cos/sin cast to the model dtype. inv_freq is cached per device; it is not a stored tensor.
/// </summary>
internal sealed class RotaryPositions : IDisposable
{
    private readonly Dictionary<(DeviceType, int), Tensor> inverseFrequencies = new();

    public RotaryPositions(RopeParameters parameters, long headDim)
    {
        Parameters = parameters;
        HeadDim = headDim;
        RotaryDim = parameters.RotaryDim(headDim);
        if (RotaryDim < 2 || RotaryDim % 2 != 0 || RotaryDim > headDim)
            throw new InvalidDataException(
                $"config.json: head_dim {headDim} × partial_rotary_factor {parameters.PartialRotaryFactor} must give an even number of rotary dims between 2 and head_dim; got {RotaryDim}.");
    }

    public RopeParameters Parameters { get; }
    public long HeadDim { get; }
    public long RotaryDim { get; }

    /// <summary>(cos, sin), (B, T, R) in <paramref name="dtype"/>.</summary>
    public (Tensor Cos, Tensor Sin) CosSin(Tensor positionIds, ScalarType dtype)
    {
        Tensor table;
        var key = (positionIds.device.type, Math.Max(positionIds.device.index, 0));
        lock (inverseFrequencies)
            if (!inverseFrequencies.TryGetValue(key, out table!))
                inverseFrequencies[key] = table = Parameters.InverseFrequencies(HeadDim, positionIds.device).DetachFromDisposeScope(); // cached across forwards
        return RotaryEmbedding.CosSin(positionIds, table, dtype);
    }

    /// <summary>
    /// Eager rotary embedding of q or k, (B, H, T, D), with cos/sin (B, T, R): the first R dims rotate, the
    /// rest pass through. Rotate-half pairs dim i with i + R/2; interleaved (GLM) pairs 2i with 2i + 1 and
    /// uses the first half of the tables, each entry repeated twice.
    /// </summary>
    public static Tensor ApplyEager(Tensor x, Tensor cos, Tensor sin, RopeStyle style)
    {
        using var scope = NewDisposeScope();
        long r = cos.shape[^1];
        (cos, sin) = (cos.unsqueeze(1), sin.unsqueeze(1));
        var rotating = r == x.shape[^1] ? x : x[.., .., .., ..(int)r];
        Tensor rotated;
        if (style == RopeStyle.RotateHalf)
        {
            var halves = rotating.chunk(2, -1);
            rotated = (rotating * cos).Plus(cat([-halves[1], halves[0]], -1) * sin);
        }
        else
        {
            cos = cos[.., .., .., ..(int)(r / 2)].repeat_interleave(2, -1);
            sin = sin[.., .., .., ..(int)(r / 2)].repeat_interleave(2, -1);
            var even = rotating[.., .., .., TensorIndex.Slice(0, null, 2)];
            var odd = rotating[.., .., .., TensorIndex.Slice(1, null, 2)];
            rotated = (rotating * cos).Plus(stack([-odd, even], -1).flatten(-2) * sin);
        }
        var result = r == x.shape[^1] ? rotated : cat([rotated, x[.., .., .., (int)r..]], -1);
        return result.MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        lock (inverseFrequencies)
        {
            foreach (var table in inverseFrequencies.Values)
                table.Dispose();
            inverseFrequencies.Clear();
        }
    }
}
