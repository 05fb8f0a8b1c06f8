using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Ops;

/// <summary>Host side of fused linear cross-entropy: checks, the chunk policy and the chunk loop.</summary>
internal static class FusedLinearCrossEntropyOp
{
    /// <summary>
    /// Default bound on one chunk's logits: 1 GiB. At Llama-3 sizes (V = 128256, bf16) that is 4096 tokens
    /// a chunk, large enough for the three matmuls to run at full cuBLAS speed, where Liger-Kernel's
    /// rule (tokens / ⌈V / H⌉, 256 tokens there) makes 32 small ones and spends 3x eager's time.
    /// </summary>
    public const long DefaultChunkBytes = 1L << 30;

    /// <summary>Which gradients to compute.</summary>
    internal readonly record struct Wanted(bool Hidden, bool Weight, bool Bias)
    {
        internal bool Any => Hidden || Weight || Bias;
    }

    /// <summary>The loss (reduced as asked) and the gradients asked for (unscaled: incoming gradient 1, or per-row scaled).</summary>
    internal readonly record struct Result(Tensor Loss, Tensor? GradHidden, Tensor? GradWeight, Tensor? GradBias);

    internal static void Validate(Tensor hidden, Tensor weight, Tensor target, Tensor? bias, FusedLinearCrossEntropyOptions options)
    {
        TensorChecks.NotNull(hidden, nameof(hidden));
        TensorChecks.NotNull(weight, nameof(weight));
        TensorChecks.AtLeastOneDim(hidden, nameof(hidden));
        TensorChecks.FloatingPoint(hidden, nameof(hidden));
        if (weight.dim() != 2)
            throw new ArgumentException($"'{nameof(weight)}' must be (V, H), lm_head's weight; got shape [{string.Join(", ", weight.shape)}].", nameof(weight));
        TensorChecks.SameDtype(weight, nameof(weight), hidden, nameof(hidden));
        TensorChecks.SameDevice(weight, nameof(weight), hidden, nameof(hidden));
        if (weight.shape[1] != hidden.shape[^1])
            throw new ArgumentException($"'{nameof(weight)}' must have the hidden size {hidden.shape[^1]} as its second dimension; " +
                $"got shape [{string.Join(", ", weight.shape)}].", nameof(weight));
        long vocab = weight.shape[0];
        if (vocab < 1 || vocab > CrossEntropyOp.MaxClasses)
            throw new ArgumentException($"'{nameof(weight)}' must have between 1 and {CrossEntropyOp.MaxClasses} rows (classes); got {vocab}.", nameof(weight));
        if (bias is not null)
        {
            TensorChecks.SameDtype(bias, nameof(bias), hidden, nameof(hidden));
            TensorChecks.SameDevice(bias, nameof(bias), hidden, nameof(hidden));
            TensorChecks.Shape(bias, nameof(bias), vocab);
        }
        if (options.ChunkBytes is { } bytes && bytes < 1)
            throw new ArgumentOutOfRangeException("options.ChunkBytes", bytes, "ChunkBytes must be positive (or null for the default).");
        CrossEntropyOp.ValidateTargetsAndOptions(target, hidden.shape[..^1], vocab, hidden, nameof(hidden), options.CrossEntropy);
    }

    /// <summary>
    /// Tokens per chunk: as many as fit <paramref name="chunkBytes"/> of logits, then spread evenly over
    /// the chunks that makes (8200 tokens in two chunks of 4100, not 4096 + 8).
    /// </summary>
    public static long ChunkTokens(long tokens, long vocab, long elementSize, long? chunkBytes = null)
    {
        if (tokens <= 0)
            return 0;
        long most = Math.Max(1, (chunkBytes ?? DefaultChunkBytes) / (vocab * elementSize));
        long chunks = (tokens + most - 1) / most;
        return (tokens + chunks - 1) / chunks;
    }

    /// <summary>
    /// The chunk loop. Without <paramref name="wanted"/> gradients it only computes losses (evaluation,
    /// or the forward of reduction None). With <paramref name="rowScale"/> (None's backward), each token's
    /// gradient is scaled by its incoming gradient before it reaches the matmuls.
    /// </summary>
    internal static Result Run(Tensor hidden, Tensor weight, Tensor target, Tensor? bias, FusedLinearCrossEntropyOptions options,
        CrossEntropyExtras extras, Wanted wanted, Tensor? rowScale)
    {
        var ce = options.CrossEntropy;
        long size = weight.shape[1], vocab = weight.shape[0];
        using var x = hidden.reshape(-1, size);
        using var targets = target.reshape(-1).contiguous();
        long tokens = x.shape[0];
        var device = hidden.device;
        bool gradients = wanted.Any;
        bool argmax = ce.ReturnTokenAccuracy || ce.ReturnPredictedTokens;
        int flags = CrossEntropyOp.Flags(ce, gradients, argmax);
        using var classWeight = ce.Weight?.to(ScalarType.Float32).contiguous();
        using var totals = CrossEntropyOp.Totals(targets, classWeight, ce.IgnoreIndex, vocab);
        var accumulation = options.AccumulateInFloat32 ? ScalarType.Float32 : weight.dtype;

        var loss = empty(tokens, dtype: ScalarType.Float32, device: device);
        var zLoss = empty(tokens, dtype: ScalarType.Float32, device: device);
        var predicted = argmax ? empty(tokens, dtype: ScalarType.Int64, device: device) : null;
        var gradHidden = wanted.Hidden ? Outputs.Empty([tokens, size], hidden.dtype, device) : null;
        var gradWeight = wanted.Weight ? zeros(vocab, size, dtype: accumulation, device: device) : null;
        var gradBias = wanted.Bias ? zeros(vocab, dtype: accumulation, device: device) : null;
        // The incoming gradient of reduction None may have any layout (stride 0 after sum()); the kernels read it densely.
        // Ignored tokens keep their gradient whatever arrives for them (see CrossEntropyOp.SkippingIgnored).
        using var counted = rowScale is null ? null : targets.NotEqualTo(ce.IgnoreIndex);
        using var scale = rowScale is null ? null : CrossEntropyOp.SkippingIgnored(rowScale, counted!);

        long step = ChunkTokens(tokens, vocab, hidden.element_size(), options.ChunkBytes);
        using var weightT = weight.detach().t();
        using var weightD = weight.detach();
        using var biasD = bias?.detach();
        for (long start = 0; start < tokens; start += step)
        {
            long n = Math.Min(step, tokens - start);
            using var xs = x.detach().narrow(0, start, n);
            using var logits = biasD is null ? xs.mm(weightT) : addmm(biasD, xs, weightT, beta: 1, alpha: 1);
            using var ys = targets.narrow(0, start, n);
            var rows = CrossEntropyOp.RowLosses(logits, gradients ? logits : null, ys, classWeight, totals, ce, flags);
            using (rows.Loss) loss.narrow(0, start, n).copy_(rows.Loss);
            using (rows.ZLoss) zLoss.narrow(0, start, n).copy_(rows.ZLoss);
            if (rows.Predicted is { } p)
                using (p) predicted!.narrow(0, start, n).copy_(p);
            if (!gradients)
                continue;
            // logits now hold d loss / d logits of this chunk
            if (scale is not null)
            {
                using var s = scale.narrow(0, start, n);
                CrossEntropyOp.ScaleRows(logits, s, perRow: true);
            }
            if (gradHidden is not null)
            {
                using var slice = gradHidden.narrow(0, start, n);
                slice.addmm_(logits, weightD, beta: 0);   // beta 0: the poisoned slice is not read
            }
            if (gradWeight is not null)
            {
                using var logitsT = logits.t();
                if (accumulation == weight.dtype)
                    gradWeight.addmm_(logitsT, xs);
                else
                {
                    using var product = logitsT.mm(xs);
                    gradWeight.PlusInPlace(product);
                }
            }
            if (gradBias is not null)
            {
                using var column = logits.sum(0L, type: accumulation);
                gradBias.PlusInPlace(column);
            }
        }
        if (gradWeight is not null && gradWeight.dtype != weight.dtype)
            gradWeight = Cast(gradWeight, weight.dtype);
        if (gradBias is not null && gradBias.dtype != bias!.dtype)
            gradBias = Cast(gradBias, bias.dtype);
        var reduced = CrossEntropyOp.Finish(new CrossEntropyOp.RowResults(loss, zLoss, predicted), targets, totals, ce,
            target.shape, extras);
        return new Result(reduced, gradHidden, gradWeight, gradBias);
    }

    private static Tensor Cast(Tensor accumulated, ScalarType dtype)
    {
        var cast = accumulated.to(dtype);
        accumulated.Dispose();
        return cast;
    }
}
