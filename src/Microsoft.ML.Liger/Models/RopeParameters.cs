using Liger.Kernels.Runtime;
using System.Text.Json.Nodes;
using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models;

/// <summary>
/// Rotary embedding parameters of one layer type: base, partial rotary factor and the rope_type's scaling
/// ("default", "linear", "llama3"), computed as Hugging Face's rope initialisation functions compute them.
/// </summary>
public sealed record RopeParameters
{
    /// <summary>The rope types we compute; others are refused by name when the config is read.</summary>
    public static readonly IReadOnlyList<string> SupportedTypes = ["default", "linear", "llama3"];

    /// <summary>rope_theta, the base.</summary>
    public double Theta { get; init; } = 10000.0;
    /// <summary>rope_type.</summary>
    public string RopeType { get; init; } = "default";
    /// <summary>Scaling factor ("linear", "llama3").</summary>
    public double Factor { get; init; } = 1.0;
    /// <summary>llama3's low_freq_factor.</summary>
    public double LowFreqFactor { get; init; } = 1.0;
    /// <summary>llama3's high_freq_factor.</summary>
    public double HighFreqFactor { get; init; } = 4.0;
    /// <summary>llama3's original_max_position_embeddings.</summary>
    public double OriginalMaxPositionEmbeddings { get; init; } = 8192;
    /// <summary>The fraction of head_dim that rotates (Phi, GLM).</summary>
    public double PartialRotaryFactor { get; init; } = 1.0;

    /// <summary>The rotated dims of a head of <paramref name="headDim"/> dims.</summary>
    public long RotaryDim(long headDim) => (long)(headDim * PartialRotaryFactor);

    /// <summary>inv_freq (R / 2), float32, with the rope type's scaling applied.</summary>
    public Tensor InverseFrequencies(long headDim, Device? device = null)
    {
        using var scope = NewDisposeScope();
        var invFreq = RotaryEmbedding.InverseFrequencies(RotaryDim(headDim), Theta, device);
        var scaled = RopeType switch
        {
            "linear" => invFreq.DividedBy(Factor),
            "llama3" => Llama3(invFreq),
            _ => invFreq,
        };
        return scaled.MoveToOuterDisposeScope();
    }

    // Llama 3.1's frequency-dependent scaling: long wavelengths divided by the factor, short ones kept,
    // and a smooth blend in between, all in float32 as transformers' _compute_llama3_parameters.
    private Tensor Llama3(Tensor invFreq)
    {
        double lowFreqWavelen = OriginalMaxPositionEmbeddings / LowFreqFactor;
        double highFreqWavelen = OriginalMaxPositionEmbeddings / HighFreqFactor;
        var wavelen = ScalarArithmetic.Over(2 * Math.PI, invFreq);
        var llama = where(wavelen.GreaterThan(lowFreqWavelen), invFreq.DividedBy(Factor), invFreq);
        var smooth = ScalarArithmetic.Over(OriginalMaxPositionEmbeddings, wavelen).Minus(LowFreqFactor).DividedBy(HighFreqFactor - LowFreqFactor);
        var smoothed = (smooth.SubtractedFrom(1) * llama).DividedBy(Factor).Plus(smooth * llama);
        var medium = wavelen.LessThan(highFreqWavelen).logical_not().logical_and(wavelen.GreaterThan(lowFreqWavelen).logical_not());
        return where(medium, smoothed, llama);
    }

    /// <summary>What every spelling must satisfy: a positive base and a rotated fraction of the head in (0, 1].</summary>
    internal RopeParameters CheckShared(string field)
    {
        if (!(Theta > 0))
            throw new InvalidDataException($"config.json field '{field}' must be positive; got {Theta}.");
        if (!(PartialRotaryFactor > 0 && PartialRotaryFactor <= 1))
            throw new InvalidDataException($"config.json field 'partial_rotary_factor' must be in (0, 1]; got {PartialRotaryFactor}.");
        return this;
    }

    internal static RopeParameters Read(JsonObject node, double partialRotaryFactor, long maxPositions, string field)
    {
        var typeNode = node["rope_type"] ?? node["type"];
        var type = typeNode is null ? "default"
            : typeNode is JsonValue v && v.TryGetValue<string>(out var text) ? text
            : throw new InvalidDataException($"config.json field '{field}' has rope_type {typeNode.ToJsonString()}, not a string.");
        if (!SupportedTypes.Contains(type))
            throw new InvalidDataException(
                $"config.json field '{field}' has rope_type \"{type}\"; supported: {string.Join(", ", SupportedTypes)}.");
        double? Number(string name) => CausalLMConfig.Number(node[name], $"{field}.{name}");
        var rope = new RopeParameters
        {
            Theta = Number("rope_theta") ?? 10000.0,
            RopeType = type,
            Factor = Number("factor") ?? 1.0,
            LowFreqFactor = Number("low_freq_factor") ?? 1.0,
            HighFreqFactor = Number("high_freq_factor") ?? 4.0,
            OriginalMaxPositionEmbeddings = Number("original_max_position_embeddings") ?? maxPositions,
            PartialRotaryFactor = Number("partial_rotary_factor") ?? partialRotaryFactor,
        };
        if (!(rope.Factor > 0) || !(rope.Theta > 0))
            throw new InvalidDataException($"config.json field '{field}' needs a positive rope_theta and factor.");
        rope.CheckShared(field);
        if (rope.OriginalMaxPositionEmbeddings < 1)
            throw new InvalidDataException($"config.json field '{field}' needs original_max_position_embeddings of at least 1; got {rope.OriginalMaxPositionEmbeddings}.");
        if (type == "llama3" && !(rope.HighFreqFactor > rope.LowFreqFactor))
            throw new InvalidDataException($"config.json field '{field}': llama3 needs high_freq_factor > low_freq_factor.");
        return rope;
    }
}
