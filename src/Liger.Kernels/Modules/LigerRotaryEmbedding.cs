using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Modules;

/// <summary>
/// Hugging Face's LlamaRotaryEmbedding (default rope type): forward(x, position_ids) returns (cos, sin) of
/// shape (B, T, R) in x's dtype, for <see cref="LigerRotaryPosEmb.Apply"/>. Holds no state: inv_freq is a
/// function of the configuration (Hugging Face registers it as a non-persistent buffer, so checkpoints
/// do not contain it), built once per device and kept in float32 whatever the model dtype.
/// </summary>
public sealed class LigerRotaryEmbedding : nn.Module<Tensor, Tensor, (Tensor Cos, Tensor Sin)>
{
    private readonly Dictionary<(DeviceType, int), Tensor> inverseFrequencies = new();

    /// <summary>Creates the embedding.</summary>
    /// <param name="headDim">head_dim of the attention heads.</param>
    /// <param name="theta">rope_theta (10000 for Llama 2, 500000 for Llama 3).</param>
    /// <param name="partialRotaryFactor">The fraction of head_dim that rotates (Phi, GPT-NeoX); R = (long)(head_dim × factor).</param>
    public LigerRotaryEmbedding(long headDim, double theta = 10000.0, double partialRotaryFactor = 1.0)
        : base(nameof(LigerRotaryEmbedding))
    {
        if (headDim < 2)
            throw new ArgumentOutOfRangeException(nameof(headDim), headDim, $"'{nameof(headDim)}' must be at least 2.");
        if (!(partialRotaryFactor > 0 && partialRotaryFactor <= 1))
            throw new ArgumentOutOfRangeException(nameof(partialRotaryFactor), partialRotaryFactor, $"'{nameof(partialRotaryFactor)}' must be in (0, 1].");
        RotaryDim = (long)(headDim * partialRotaryFactor);
        if (RotaryDim < 2 || RotaryDim % 2 != 0)
            throw new ArgumentOutOfRangeException(nameof(partialRotaryFactor), partialRotaryFactor,
                $"head_dim × '{nameof(partialRotaryFactor)}' must be an even number of dims, at least 2; got {RotaryDim}.");
        HeadDim = headDim;
        Theta = theta;
        RotaryEmbedding.InverseFrequencies(RotaryDim, theta).Dispose(); // rejects a bad theta here, not at the first forward
    }

    /// <summary>head_dim.</summary>
    public long HeadDim { get; }

    /// <summary>R, the rotated dims per head (cos and sin's last dimension).</summary>
    public long RotaryDim { get; }

    /// <summary>rope_theta.</summary>
    public double Theta { get; }

    /// <summary>(cos, sin), (B, T, R) in <paramref name="x"/>'s dtype on its device.</summary>
    /// <param name="x">Any tensor of the model's dtype and device (Hugging Face passes the hidden states).</param>
    /// <param name="positionIds">(B, T) or (T) integer positions.</param>
    public override (Tensor Cos, Tensor Sin) forward(Tensor x, Tensor positionIds) =>
        RotaryEmbedding.CosSin(positionIds, InverseFrequencies(x.device), x.dtype);

    private Tensor InverseFrequencies(Device device)
    {
        var key = (device.type, Math.Max(device.index, 0));
        lock (inverseFrequencies)
        {
            if (!inverseFrequencies.TryGetValue(key, out var table))
                inverseFrequencies[key] = table = RotaryEmbedding.InverseFrequencies(RotaryDim, Theta, device);
            return table;
        }
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
            lock (inverseFrequencies)
            {
                foreach (var table in inverseFrequencies.Values)
                    table.Dispose();
                inverseFrequencies.Clear();
            }
        base.Dispose(disposing);
    }
}
