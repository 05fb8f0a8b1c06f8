using Liger.Kernels.Runtime;
using Microsoft.ML.Liger.Models;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.Models;

/// <summary>A tokenised batch for model tests.</summary>
internal sealed record Batch(CausalLMInput Input, Tensor Mask);

internal static class Batches
{
    /// <summary>
    /// Random tokens (B, T) from ids 3.. (0, 1, 2 are pad, bos, eos), the last row right-padded by
    /// <paramref name="padLast"/> positions, labels = ids with padding set to -100.
    /// </summary>
    public static Batch Random(int seed, int batch, int length, int padLast, long vocab = TinyModels.Vocab)
    {
        var generator = new Generator((ulong)seed + 1);
        var ids = randint(3, vocab, [batch, length], dtype: ScalarType.Int64, generator: generator);
        var mask = ones(batch, length, dtype: ScalarType.Int64);
        if (padLast > 0)
        {
            mask[batch - 1, (length - padLast)..] = tensor(0L);
            ids[batch - 1, (length - padLast)..] = tensor(0L);
        }
        var labels = ids.FilledWhere(mask.EqualTo(0), -100L);
        return new Batch(new CausalLMInput { InputIds = ids, AttentionMask = padLast > 0 ? mask : null, Labels = labels }, mask);
    }
}

internal static class ModelAssert
{
    /// <summary>‖actual − expected‖∞ ≤ tolerance × max(1, ‖expected‖∞), both computed in float64.</summary>
    public static void Close(Tensor expected, Tensor actual, double tolerance, string what)
    {
        Assert.IsNotNull(actual, $"{what}: missing");
        CollectionAssert.AreEqual(expected.shape, actual.shape, $"{what}: shape");
        using var e = expected.detach().to(ScalarType.Float64);
        using var a = actual.detach().to(ScalarType.Float64);
        double scale = Math.Max(1.0, e.abs().max().item<double>());
        double error = (a - e).abs().max().item<double>();
        Assert.IsFalse(double.IsNaN(error), $"{what}: NaN");
        Assert.IsLessThanOrEqualTo(tolerance * scale, error, $"{what}: max error {error:E3} over scale {scale:E3}");
    }
}
