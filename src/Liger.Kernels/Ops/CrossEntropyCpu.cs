using System.Buffers;
using System.Numerics.Tensors;
using Liger.Kernels.Kernels;
using Liger.Kernels.Runtime;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace Liger.Kernels.Ops;

/// <summary>
/// Cross-entropy's CPU path: the kernel's algorithm row by row with System.Numerics.Tensors' vectorised
/// primitives, rows in parallel. Eager torch makes about six passes over the logits (log_softmax, its
/// output, nll, and the two backward kernels) and keeps a second V-sized tensor; a row here is read
/// for its max, exponentiated once into the gradient's storage, summed, and scaled in place, while
/// it sits in cache. 16-bit rows are widened into an fp32 scratch row and the gradient rounded back.
/// </summary>
internal static class CrossEntropyCpu
{
    /// <summary>[count, Σ weight[target], Σ weight, invalid] as in the kernel, summed in double.</summary>
    internal static Tensor Totals(Tensor targets, Tensor? weight, long ignoreIndex, long vocab)
    {
        var y = targets.data<long>().ToArray();
        var w = weight?.cpu().data<float>().ToArray();
        double count = 0, targetWeight = 0, invalid = 0;
        foreach (long t in y)
        {
            if (t == ignoreIndex)
                continue;
            if (t < 0 || t >= vocab)
            {
                invalid++;
                continue;
            }
            count++;
            targetWeight += w is null ? 1.0 : w[t];
        }
        double weightSum = w is null ? 0.0 : w.Sum(v => (double)v);
        return tensor(new float[] { (float)count, (float)targetWeight, (float)weightSum, (float)invalid });
    }

    /// <summary>Losses (and gradients into <paramref name="grad"/>) of rows (R, V); see CrossEntropyKernels.</summary>
    internal static unsafe void Rows(Tensor rows, Tensor? grad, Tensor targets, Tensor? weight, Tensor totals,
        Tensor loss, Tensor zLoss, Tensor? predicted, CrossEntropyOptions options, int flags)
    {
        int count = (int)rows.shape[0], vocab = (int)rows.shape[1];
        var dtype = rows.dtype;
        var t = totals.data<float>().ToArray();
        var y = targets.data<long>().ToArray();
        float[]? w = weight?.data<float>().ToArray();
        var row = new RowMath(options, flags, vocab, t, w);
        byte* px = (byte*)TorchInterop.DataPointer(rows);
        byte* pg = grad is null ? null : (byte*)TorchInterop.DataPointer(grad);
        float* pl = (float*)TorchInterop.DataPointer(loss), pz = (float*)TorchInterop.DataPointer(zLoss);
        long* pp = predicted is null ? null : (long*)TorchInterop.DataPointer(predicted);
        int elementSize = dtype == ScalarType.Float32 ? 4 : 2;
        Parallel.For(0, count, () => new float[3 * vocab], (r, _, scratch) =>
        {
            Span<float> xs = scratch.AsSpan(0, vocab), gs = scratch.AsSpan(vocab, vocab), ts = scratch.AsSpan(2 * vocab, vocab);
            byte* xRow = px + (long)r * vocab * elementSize;
            byte* gRow = pg is null ? null : pg + (long)r * vocab * elementSize;
            ReadOnlySpan<float> x = dtype == ScalarType.Float32 ? new ReadOnlySpan<float>(xRow, vocab) : Widen(xRow, dtype, xs);
            // fp32 gradients go straight to their storage (possibly x's own: every use of x precedes the write)
            Span<float> g = gRow is not null && dtype == ScalarType.Float32 ? new Span<float>(gRow, vocab) : gs;
            var result = row.Compute(x, y[r], gRow is not null ? g : gs, ts, gRow is not null);
            pl[r] = result.Loss;
            pz[r] = result.ZLoss;
            if (pp is not null)
                pp[r] = result.Predicted;
            if (gRow is not null && dtype != ScalarType.Float32)
                Narrow(g, gRow, dtype);
            return scratch;
        }, _ => { });
        GC.KeepAlive(rows); GC.KeepAlive(grad); GC.KeepAlive(loss); GC.KeepAlive(zLoss); GC.KeepAlive(predicted);
    }

    /// <summary>rows ·= factor (one scalar, or one per row), skipping factors of exactly 1.</summary>
    internal static void Scale(Tensor rows, Tensor factor, bool perRow)
    {
        var f = factor.data<float>().ToArray();
        if (!perRow)
        {
            if (f[0] != 1f)
                rows.TimesInPlace(f[0]);
            return;
        }
        if (f.All(v => v == 1f))
            return;
        using var column = factor.view(-1, 1);
        rows.mul_(column);
    }

    private static unsafe ReadOnlySpan<float> Widen(byte* source, ScalarType dtype, Span<float> destination)
    {
        var bits = new ReadOnlySpan<ushort>(source, destination.Length);
        if (dtype == ScalarType.Float16)
        {
            TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(source, destination.Length), destination);
            return destination;
        }
        for (int i = 0; i < bits.Length; i++)
            destination[i] = BitConverter.UInt32BitsToSingle((uint)bits[i] << 16);
        return destination;
    }

    private static unsafe void Narrow(ReadOnlySpan<float> source, byte* destination, ScalarType dtype)
    {
        var bits = new Span<ushort>(destination, source.Length);
        if (dtype == ScalarType.Float16)
        {
            Float16Codec h = default;
            for (int i = 0; i < source.Length; i++)
                bits[i] = h.Store(source[i]);
            return;
        }
        BFloat16Codec b = default;
        for (int i = 0; i < source.Length; i++)
            bits[i] = b.Store(source[i]);
    }

    /// <summary>One row's loss and gradient, the same terms as the kernel (CrossEntropyKernels.Terms).</summary>
    private sealed class RowMath(CrossEntropyOptions options, int flags, int vocab, float[] totals, float[]? weight)
    {
        private readonly float softcap = (float)(options.Softcap ?? 1.0);
        private readonly float smoothing = (float)options.LabelSmoothing;
        private readonly float zScale = (float)options.LseSquareScale;
        private readonly bool mean = (flags & CrossEntropyKernels.ReductionMean) != 0;
        private readonly bool capped = (flags & CrossEntropyKernels.HasSoftcap) != 0;

        internal readonly record struct Result(float Loss, float ZLoss, long Predicted);

        /// <summary>
        /// An ignored row's gradient (see CrossEntropyKernels.IgnoredGradient): NaN where torch's 0 − e^(log p)·0
        /// is, when the (soft-capped) row's max is not finite; else 0.
        /// </summary>
        private float IgnoredGradient(ReadOnlySpan<float> x)
        {
            float m = TensorPrimitives.Max(x);  // NaN if any is NaN
            return capped ? (float.IsNaN(m) ? float.NaN : 0f) : (float.IsFinite(m) ? 0f : float.NaN);
        }

        /// <param name="x">The row's logits in fp32.</param>
        /// <param name="y">The target.</param>
        /// <param name="g">Receives e^(x - m), then the gradient (may alias x).</param>
        /// <param name="tanhScratch">tanh(x / c) when soft-capped.</param>
        /// <param name="gradients">Whether to finish the gradient.</param>
        internal Result Compute(ReadOnlySpan<float> x, long y, Span<float> g, Span<float> tanhScratch, bool gradients)
        {
            if (y == options.IgnoreIndex || y < 0 || y >= vocab)
            {
                float fill = y == options.IgnoreIndex ? 0f : float.NaN;
                if (gradients)
                    g.Fill(y == options.IgnoreIndex ? IgnoredGradient(x) : fill);
                return new Result(fill, fill, -1);
            }
            int target = (int)y;
            ReadOnlySpan<float> xc = x;
            if (capped)
            {
                TensorPrimitives.Divide(x, softcap, tanhScratch);
                TensorPrimitives.Tanh(tanhScratch, tanhScratch);
                TensorPrimitives.Multiply(tanhScratch, softcap, g);  // capped logits, held in g until the exponentials
                xc = g;
            }
            float xy = xc[target];
            float m = TensorPrimitives.Max(xc);
            long predicted = (flags & CrossEntropyKernels.WantArgmax) != 0 ? TensorPrimitives.IndexOfMax(xc) : -1;
            float smooth = (flags & CrossEntropyKernels.HasSmoothing) == 0 ? 0f
                : weight is null ? TensorPrimitives.Sum(xc) : TensorPrimitives.Dot(xc, weight);
            TensorPrimitives.Subtract(xc, m, g);
            TensorPrimitives.Exp(g, g);
            float sumExp = TensorPrimitives.Sum(g);
            float lse = m + MathF.Log(sumExp);
            // torch.logsumexp (the z-loss's reference) keeps an infinite max: +inf, or -inf for a row of -inf,
            // where the log-softmax behind the loss gives NaN (inf - inf).
            float lseZ = float.IsInfinity(m) ? m : lse;

            float n = totals[CrossEntropyKernels.TotalCount], tw = totals[CrossEntropyKernels.TotalTargetWeight];
            float invN = mean ? (n > 0 ? 1f / n : 0f) : 1f;
            float invW = mean ? (weight is null ? invN : tw != 0 ? 1f / tw : 0f) : 1f;
            float wy = weight is null ? 1f : weight[target];
            float weightSum = totals[CrossEntropyKernels.TotalWeight];
            float eps = smoothing / vocab;

            float value = (lse - xy) * wy;
            if (smoothing > 0)
                value = value * (1f - smoothing) + (weight is null ? smoothing * lse - eps * smooth : eps * (lse * weightSum - smooth));
            float z = zScale * lseZ * lseZ * invN;
            value = value * invW + z;
            if (!gradients)
                return new Result(value, z, predicted);

            float p = (((1f - smoothing) * wy + eps * (weight is null ? vocab : weightSum)) * invW + 2f * zScale * lse * invN) / sumExp;
            float b = weight is null ? -eps * invW : 0f;
            float exTarget = g[target];
            TensorPrimitives.Multiply(g, p, g);
            if (b != 0f)
                TensorPrimitives.Add(g, b, g);
            if (weight is not null)
                TensorPrimitives.MultiplyAdd(weight, -eps * invW, g, g);
            // the target's term, folded before any rounding (see CrossEntropyKernels)
            float gy = exTarget * p + b + (weight is null ? 0f : -eps * invW * wy) - (1f - smoothing) * wy * invW;
            if (capped)
            {
                TensorPrimitives.Multiply(tanhScratch, tanhScratch, tanhScratch);
                TensorPrimitives.Subtract(1f, tanhScratch, tanhScratch);
                TensorPrimitives.Multiply(g, tanhScratch, g);
                gy *= tanhScratch[target];
            }
            g[target] = gy;
            return new Result(value, z, predicted);
        }
    }
}
