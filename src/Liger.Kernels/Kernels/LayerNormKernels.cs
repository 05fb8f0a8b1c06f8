using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace Liger.Kernels.Kernels;

/// <summary>
/// LayerNorm device code: y = (x - mean) * rstd * w + b per row, rstd = 1 / sqrt(var + eps), with the
/// mean and the (biased) variance in fp32 and y rounded once, as torch's layer_norm does for 16-bit
/// inputs. Statistics by the corrected two-pass method: a first mean m0, then Σd and Σd² of d = x - m0
/// in one reduction; mean = m0 + Σd/H, var = Σd²/H - (Σd/H)². E[x²] - mean² would lose every digit when
/// |mean| is large against the spread, and the correction recovers what the fp32 sum behind m0 loses
/// (Σx of 4096 values near 100 is off by about 1e-5 of the spread otherwise). The kernel shapes are RMSNorm's (see
/// <see cref="RmsNormKernels"/>): vectorised (a row in registers, one 8-element chunk per thread,
/// prefetch of the next row behind the barriers, dW and dB partials in registers) and scalar (any row
/// length, strided loops, partials in shared memory).
/// </summary>
internal static class LayerNormKernels
{
    // ---- the math of one 8-element chunk ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Float8 Centered(Float8 v, float mean)
    {
        Float8 d;
        d.V0 = v.V0 - mean; d.V1 = v.V1 - mean; d.V2 = v.V2 - mean; d.V3 = v.V3 - mean;
        d.V4 = v.V4 - mean; d.V5 = v.V5 - mean; d.V6 = v.V6 - mean; d.V7 = v.V7 - mean;
        return d;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Float8 Scaled(Float8 v, float s)
    {
        Float8 o;
        o.V0 = v.V0 * s; o.V1 = v.V1 * s; o.V2 = v.V2 * s; o.V3 = v.V3 * s;
        o.V4 = v.V4 * s; o.V5 = v.V5 * s; o.V6 = v.V6 * s; o.V7 = v.V7 * s;
        return o;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Float8 Product(Float8 a, Float8 b)
    {
        Float8 o;
        o.V0 = a.V0 * b.V0; o.V1 = a.V1 * b.V1; o.V2 = a.V2 * b.V2; o.V3 = a.V3 * b.V3;
        o.V4 = a.V4 * b.V4; o.V5 = a.V5 * b.V5; o.V6 = a.V6 * b.V6; o.V7 = a.V7 * b.V7;
        return o;
    }

    /// <summary>
    /// From Σd and Σd² of d = x - m0 over a row of <paramref name="cols"/>: the mean's correction
    /// (mean = m0 + shift) and rstd = 1 / sqrt(Σ(d - shift)² / H + eps), Σ(d - shift)² = Σd² - H·shift².
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (float Shift, float Rstd) Statistics(float sumD, float sumD2, float cols, float eps)
    {
        float shift = sumD / cols;
        // NanMax, not Math.Max: PTX's max.f32 would turn a NaN variance (a NaN or inf in the row) into 0 and a
        // finite rstd on the GPU only (the emulator's Math.Max keeps the NaN, as torch does).
        return (shift, DeviceMath.Rsqrt(DeviceMath.NanMax(sumD2 / cols - shift * shift, 0f) + eps));
    }

    /// <summary>y = (x - mean) * rstd * w + b, from the centred chunk.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Out(float centered, float r, float w, float b) => centered * r * w + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Float8 Out8(Float8 d, float r, Float8 w, Float8 b)
    {
        Float8 o;
        o.V0 = Out(d.V0, r, w.V0, b.V0); o.V1 = Out(d.V1, r, w.V1, b.V1);
        o.V2 = Out(d.V2, r, w.V2, b.V2); o.V3 = Out(d.V3, r, w.V3, b.V3);
        o.V4 = Out(d.V4, r, w.V4, b.V4); o.V5 = Out(d.V5, r, w.V5, b.V5);
        o.V6 = Out(d.V6, r, w.V6, b.V6); o.V7 = Out(d.V7, r, w.V7, b.V7);
        return o;
    }

    /// <summary>dx = rstd * (w·dy - (xhat * mean(w·dy·xhat) + mean(w·dy))).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dx(float wdy, float xhat, float r, float c1, float c2) => (wdy - (xhat * c1 + c2)) * r;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Float8 Dx8(Float8 wdy, Float8 xhat, float r, float c1, float c2)
    {
        Float8 d;
        d.V0 = Dx(wdy.V0, xhat.V0, r, c1, c2); d.V1 = Dx(wdy.V1, xhat.V1, r, c1, c2);
        d.V2 = Dx(wdy.V2, xhat.V2, r, c1, c2); d.V3 = Dx(wdy.V3, xhat.V3, r, c1, c2);
        d.V4 = Dx(wdy.V4, xhat.V4, r, c1, c2); d.V5 = Dx(wdy.V5, xhat.V5, r, c1, c2);
        d.V6 = Dx(wdy.V6, xhat.V6, r, c1, c2); d.V7 = Dx(wdy.V7, xhat.V7, r, c1, c2);
        return d;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Accumulate(ref Float8 acc, Float8 a)
    {
        acc.V0 += a.V0; acc.V1 += a.V1; acc.V2 += a.V2; acc.V3 += a.V3;
        acc.V4 += a.V4; acc.V5 += a.V5; acc.V6 += a.V6; acc.V7 += a.V7;
    }

    // ---- vectorised: one 8-element chunk per thread ----

    /// <summary>
    /// Persistent groups over contiguous runs of rows; thread j owns elements [8j, 8j+8) of each row and
    /// keeps w and b in registers. Two barriers per row (the rough mean, then Σd and Σd² together; the
    /// two reductions have their own shared slots). The next row's chunk is loaded before this row's reductions.
    /// </summary>
    internal static void ForwardVectorized<T, TCodec, TVec, TVecCodec>(
        ArrayView<TVec> x, ArrayView<TVec> weight, ArrayView<TVec> bias, ArrayView<TVec> y,
        ArrayView<float> mean, ArrayView<float> rstd, int rows, int chunks, int rowsPerGroup, float eps,
        SpecializedValue<int> hasBias)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        bool withBias = hasBias.Value != 0; // a compile-time constant of the specialised kernel
        TVecCodec vc = default;
        var (xs, ys) = (x.AsAligned(16), y.AsAligned(16));
        int j = Group.IdxX;
        bool owner = j < chunks;
        float cols = chunks * 8;
        int firstRow = Grid.IdxX * rowsPerGroup;
        int endRow = Math.Min(rows, firstRow + rowsPerGroup);

        Float8 w = default, b = default;
        TVec next = default;
        if (owner && firstRow < endRow)
        {
            w = vc.Load(weight.AsAligned(16)[j]);
            if (withBias)
                b = vc.Load(bias.AsAligned(16)[j]);
            next = xs[(long)firstRow * chunks + j];
        }
        for (int row = firstRow; row < endRow; row++)
        {
            Float8 v = vc.Load(next); // zeros in threads past the row's end
            if (owner && row + 1 < endRow)
                next = xs[(long)(row + 1) * chunks + j];
            float roughMean = GroupReduce.Sum(v.Sum(), 0) / cols;
            Float8 d = Centered(v, roughMean);
            GroupReduce.Sum(owner ? d.Sum() : 0f, owner ? d.SumSquares() : 0f, 0, out float sumD, out float sumD2);
            var (shift, r) = Statistics(sumD, sumD2, cols, eps);
            if (Group.IsFirstThread)
            {
                mean[row] = roughMean + shift;
                rstd[row] = r;
            }
            if (owner)
                ys[(long)row * chunks + j] = vc.Store(Out8(Centered(d, shift), r, w, b));
        }
    }

    /// <summary>
    /// Persistent groups over contiguous runs of rows; thread j owns chunk j of every row, so its shares
    /// of dW and dB accumulate in registers and are written once per group to row <c>Grid.IdxX</c> of
    /// the fp32 partials (no atomics). The row's two sums share one barrier. The next row's dy, x, mean
    /// and rstd are loaded before this row's reduction.
    /// </summary>
    internal static void BackwardVectorized<T, TCodec, TVec, TVecCodec>(
        ArrayView<TVec> dy, ArrayView<TVec> x, ArrayView<TVec> weight, ArrayView<float> mean, ArrayView<float> rstd,
        ArrayView<TVec> dx, ArrayView<Float8> weightGradPartials, ArrayView<Float8> biasGradPartials,
        int rows, int chunks, int rowsPerGroup, SpecializedValue<int> hasBias)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        bool withBias = hasBias.Value != 0;
        TVecCodec vc = default;
        var (dys, xs, dxs) = (dy.AsAligned(16), x.AsAligned(16), dx.AsAligned(16));
        int j = Group.IdxX;
        bool owner = j < chunks;
        float cols = chunks * 8;
        int firstRow = Grid.IdxX * rowsPerGroup;
        int endRow = Math.Min(rows, firstRow + rowsPerGroup);

        Float8 w = default, accW = default, accB = default;
        TVec nextG = default, nextV = default;
        float nextMean = 0f, nextRstd = 0f;
        if (firstRow < endRow)
        {
            nextMean = mean[firstRow];
            nextRstd = rstd[firstRow];
            if (owner)
            {
                w = vc.Load(weight.AsAligned(16)[j]);
                nextG = dys[(long)firstRow * chunks + j];
                nextV = xs[(long)firstRow * chunks + j];
            }
        }
        for (int row = firstRow; row < endRow; row++)
        {
            Float8 g = vc.Load(nextG), v = vc.Load(nextV);
            float mu = nextMean, r = nextRstd;
            if (row + 1 < endRow)
            {
                nextMean = mean[row + 1];
                nextRstd = rstd[row + 1];
                if (owner)
                {
                    nextG = dys[(long)(row + 1) * chunks + j];
                    nextV = xs[(long)(row + 1) * chunks + j];
                }
            }
            Float8 xhat = Scaled(Centered(v, mu), r);
            Float8 wdy = Product(w, g); // zeros past the row's end
            GroupReduce.Sum(wdy.Dot(xhat), wdy.Sum(), row, out float sumWdyXhat, out float sumWdy);
            if (!owner)
                continue;
            dxs[(long)row * chunks + j] = vc.Store(Dx8(wdy, xhat, r, sumWdyXhat / cols, sumWdy / cols));
            Accumulate(ref accW, Product(g, xhat));
            if (withBias)
                Accumulate(ref accB, g);
        }
        if (owner)
        {
            weightGradPartials[(long)Grid.IdxX * chunks + j] = accW;
            if (withBias)
                biasGradPartials[(long)Grid.IdxX * chunks + j] = accB;
        }
    }

    // ---- scalar: any row length ----

    /// <summary>One group per row, strided over the row. Writes y and the row's fp32 mean and rstd.</summary>
    internal static void Forward<T, TCodec>(
        ArrayView<T> x, ArrayView<T> weight, ArrayView<T> bias, ArrayView<T> y, ArrayView<float> mean,
        ArrayView<float> rstd, int cols, float eps, int hasBias)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        TCodec codec = default;
        int row = Grid.IdxX;
        long start = (long)row * cols;

        float sum = 0f;
        for (int c = Group.IdxX; c < cols; c += Group.DimX)
            sum += codec.Load(x[start + c]);
        float roughMean = GroupReduce.Sum(sum, 0) / cols;

        float partD = 0f, partD2 = 0f;
        for (int c = Group.IdxX; c < cols; c += Group.DimX)
        {
            float d = codec.Load(x[start + c]) - roughMean;
            partD += d;
            partD2 += d * d;
        }
        GroupReduce.Sum(partD, partD2, 0, out float sumD, out float sumD2);
        var (shift, r) = Statistics(sumD, sumD2, cols, eps);
        float mu = roughMean + shift;
        if (Group.IsFirstThread)
        {
            mean[row] = mu;
            rstd[row] = r;
        }

        for (int c = Group.IdxX; c < cols; c += Group.DimX)
            y[start + c] = codec.Store(Out(codec.Load(x[start + c]) - roughMean - shift, r, codec.Load(weight[c]),
                hasBias != 0 ? codec.Load(bias[c]) : 0f));
    }

    /// <summary>
    /// Persistent groups, each over a contiguous run of rows. Writes dx and, when
    /// <paramref name="accumulate"/> is set, the group's fp32 partial sums of dW (and of dB with a bias)
    /// into row <c>Grid.IdxX</c> of the partials, accumulated in dynamic shared memory: dW in
    /// [0, cols), dB in [cols, 2 cols). No atomics: each thread owns its columns.
    /// </summary>
    internal static void Backward<T, TCodec>(
        ArrayView<T> dy, ArrayView<T> x, ArrayView<T> weight, ArrayView<float> mean, ArrayView<float> rstd,
        ArrayView<T> dx, ArrayView<float> weightGradPartials, ArrayView<float> biasGradPartials,
        int rows, int cols, int rowsPerGroup, int hasBias, int accumulate)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        TCodec codec = default;
        var accumulators = SharedMemory.GetDynamic<float>();
        bool sums = accumulate != 0, withBias = hasBias != 0;
        if (sums)
            for (int c = Group.IdxX; c < cols; c += Group.DimX)
            {
                accumulators[c] = 0f;
                if (withBias)
                    accumulators[cols + c] = 0f;
            }

        int firstRow = Grid.IdxX * rowsPerGroup;
        int endRow = Math.Min(rows, firstRow + rowsPerGroup);
        for (int row = firstRow; row < endRow; row++)
        {
            long start = (long)row * cols;
            float mu = mean[row], r = rstd[row];

            float partWdyXhat = 0f, partWdy = 0f;
            for (int c = Group.IdxX; c < cols; c += Group.DimX)
            {
                float wdy = codec.Load(weight[c]) * codec.Load(dy[start + c]);
                partWdyXhat += wdy * ((codec.Load(x[start + c]) - mu) * r);
                partWdy += wdy;
            }
            GroupReduce.Sum(partWdyXhat, partWdy, row, out float sumWdyXhat, out float sumWdy);
            float c1 = sumWdyXhat / cols, c2 = sumWdy / cols;

            for (int c = Group.IdxX; c < cols; c += Group.DimX)
            {
                float g = codec.Load(dy[start + c]);
                float xhat = (codec.Load(x[start + c]) - mu) * r;
                dx[start + c] = codec.Store(Dx(codec.Load(weight[c]) * g, xhat, r, c1, c2));
                if (sums)
                {
                    accumulators[c] += g * xhat;
                    if (withBias)
                        accumulators[cols + c] += g;
                }
            }
        }

        if (sums)
            for (int c = Group.IdxX; c < cols; c += Group.DimX)
            {
                weightGradPartials[(long)Grid.IdxX * cols + c] = accumulators[c];
                if (withBias)
                    biasGradPartials[(long)Grid.IdxX * cols + c] = accumulators[cols + c];
            }
    }
}
