using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace Liger.Kernels.Kernels;

/// <summary>
/// RMSNorm device code: y = x * rstd * (offset + w), rstd = 1 / sqrt(mean(x^2) + eps), per row.
/// Casting modes follow Liger-Kernel: 0 = llama (x*rstd rounded to the input dtype before the weight),
/// 1 = gemma (all fp32, one rounding at the end), 2 = none (also rstd rounded to the input dtype).
/// Two shapes of kernel: vectorised (each thread owns one 8-element chunk of the row, loaded with one
/// 16-byte access and kept in registers: rows of up to 8 x group-size elements, a multiple of 8) and
/// scalar (any row length, strided loops, dW partials in shared memory).
/// </summary>
internal static class RmsNormKernels
{
    internal const int Llama = 0, Gemma = 1, None = 2;

    // ---- the math of one element, shared by both kernel shapes ----

    /// <summary>offset + w, rounded to the stored type except in Gemma mode (fp32 weight math).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float WeightPlusOffset<TCodec, T>(TCodec c, float w, float offset, int mode)
        where T : unmanaged where TCodec : struct, IElementCodec<T> =>
        mode == Gemma ? offset + w : c.Round(offset + w);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Float8 WeightPlusOffset8<TCodec, T>(TCodec c, Float8 w, float offset, int mode)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        Float8 o;
        o.V0 = WeightPlusOffset<TCodec, T>(c, w.V0, offset, mode); o.V1 = WeightPlusOffset<TCodec, T>(c, w.V1, offset, mode);
        o.V2 = WeightPlusOffset<TCodec, T>(c, w.V2, offset, mode); o.V3 = WeightPlusOffset<TCodec, T>(c, w.V3, offset, mode);
        o.V4 = WeightPlusOffset<TCodec, T>(c, w.V4, offset, mode); o.V5 = WeightPlusOffset<TCodec, T>(c, w.V5, offset, mode);
        o.V6 = WeightPlusOffset<TCodec, T>(c, w.V6, offset, mode); o.V7 = WeightPlusOffset<TCodec, T>(c, w.V7, offset, mode);
        return o;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Out<TCodec, T>(TCodec c, float x, float wPlus, float r, float rScaled, int mode)
        where T : unmanaged where TCodec : struct, IElementCodec<T> =>
        mode == Gemma ? x * r * wPlus : c.Round(x * rScaled) * wPlus;

    /// <summary>m = dy * (offset + w) in the mode's precision.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float M<TCodec, T>(TCodec c, float dy, float wPlus, int mode)
        where T : unmanaged where TCodec : struct, IElementCodec<T> =>
        mode == Gemma ? dy * wPlus : c.Round(dy * wPlus);

    /// <summary>This row's contribution to dW: dy * xhat, xhat rounded as in the forward.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Dw<TCodec, T>(TCodec c, float dy, float x, float r, float rScaled, int mode)
        where T : unmanaged where TCodec : struct, IElementCodec<T> =>
        mode == Gemma ? dy * (x * r) : c.Round(dy * c.Round(x * rScaled));

    // ---- the math of one 8-element chunk (the vectorised kernels here and in FusedAddRmsNormKernels) ----

    /// <summary>y for a chunk of a row with rstd <paramref name="r"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Float8 Out8<TCodec, T>(TCodec c, Float8 v, Float8 wPlus, float r, int mode)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        float rs = mode == None ? c.Round(r) : r;
        Float8 o;
        o.V0 = Out<TCodec, T>(c, v.V0, wPlus.V0, r, rs, mode); o.V1 = Out<TCodec, T>(c, v.V1, wPlus.V1, r, rs, mode);
        o.V2 = Out<TCodec, T>(c, v.V2, wPlus.V2, r, rs, mode); o.V3 = Out<TCodec, T>(c, v.V3, wPlus.V3, r, rs, mode);
        o.V4 = Out<TCodec, T>(c, v.V4, wPlus.V4, r, rs, mode); o.V5 = Out<TCodec, T>(c, v.V5, wPlus.V5, r, rs, mode);
        o.V6 = Out<TCodec, T>(c, v.V6, wPlus.V6, r, rs, mode); o.V7 = Out<TCodec, T>(c, v.V7, wPlus.V7, r, rs, mode);
        return o;
    }

    /// <summary>m = dy * (offset + w) for a chunk; the row's reduction is Σ m·x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Float8 M8<TCodec, T>(TCodec c, Float8 g, Float8 wPlus, int mode)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        Float8 m;
        m.V0 = M<TCodec, T>(c, g.V0, wPlus.V0, mode); m.V1 = M<TCodec, T>(c, g.V1, wPlus.V1, mode);
        m.V2 = M<TCodec, T>(c, g.V2, wPlus.V2, mode); m.V3 = M<TCodec, T>(c, g.V3, wPlus.V3, mode);
        m.V4 = M<TCodec, T>(c, g.V4, wPlus.V4, mode); m.V5 = M<TCodec, T>(c, g.V5, wPlus.V5, mode);
        m.V6 = M<TCodec, T>(c, g.V6, wPlus.V6, mode); m.V7 = M<TCodec, T>(c, g.V7, wPlus.V7, mode);
        return m;
    }

    /// <summary>dx = rstd * (m - rstd² * (Σ m·x) / H * x) for a chunk, in fp32 (not yet rounded).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Float8 Dx8(Float8 m, Float8 v, float r, float dot, float invCols)
    {
        float k = r * r * dot * invCols;
        Float8 d;
        d.V0 = r * (m.V0 - k * v.V0); d.V1 = r * (m.V1 - k * v.V1);
        d.V2 = r * (m.V2 - k * v.V2); d.V3 = r * (m.V3 - k * v.V3);
        d.V4 = r * (m.V4 - k * v.V4); d.V5 = r * (m.V5 - k * v.V5);
        d.V6 = r * (m.V6 - k * v.V6); d.V7 = r * (m.V7 - k * v.V7);
        return d;
    }

    /// <summary>Adds a chunk's contribution to dW (dy * xhat, xhat rounded as in the forward) to <paramref name="acc"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void AccumulateDw8<TCodec, T>(TCodec c, ref Float8 acc, Float8 g, Float8 v, float r, int mode)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        float rs = mode == None ? c.Round(r) : r;
        acc.V0 += Dw<TCodec, T>(c, g.V0, v.V0, r, rs, mode); acc.V1 += Dw<TCodec, T>(c, g.V1, v.V1, r, rs, mode);
        acc.V2 += Dw<TCodec, T>(c, g.V2, v.V2, r, rs, mode); acc.V3 += Dw<TCodec, T>(c, g.V3, v.V3, r, rs, mode);
        acc.V4 += Dw<TCodec, T>(c, g.V4, v.V4, r, rs, mode); acc.V5 += Dw<TCodec, T>(c, g.V5, v.V5, r, rs, mode);
        acc.V6 += Dw<TCodec, T>(c, g.V6, v.V6, r, rs, mode); acc.V7 += Dw<TCodec, T>(c, g.V7, v.V7, r, rs, mode);
    }

    // ---- vectorised: one 8-element chunk per thread ----

    /// <summary>
    /// Persistent groups over contiguous runs of rows; thread j owns elements [8j, 8j+8) of each row.
    /// The next row's chunk is loaded before the current row's reduction and kept packed until used, so
    /// a load is in flight while the group waits at its barriers. (Unpacking it at once would stall the
    /// thread on the load right there; without the prefetch the kernel is latency-bound at ~25% of DRAM
    /// bandwidth on an H100.)
    /// </summary>
    internal static void ForwardVectorized<T, TCodec, TVec, TVecCodec>(
        ArrayView<TVec> x, ArrayView<TVec> weight, ArrayView<TVec> y, ArrayView<float> rstd,
        int rows, int chunks, int rowsPerGroup, float eps, float offset, SpecializedValue<int> castingMode)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        int mode = castingMode.Value; // a compile-time constant of the specialised kernel
        TCodec c = default;
        TVecCodec vc = default;
        var (xs, ys) = (x.AsAligned(16), y.AsAligned(16));
        int j = Group.IdxX;
        bool owner = j < chunks;
        float invCols = 1f / (chunks * 8);
        int firstRow = Grid.IdxX * rowsPerGroup;
        int endRow = Math.Min(rows, firstRow + rowsPerGroup);

        Float8 w = default;
        TVec next = default;
        if (owner && firstRow < endRow)
        {
            w = WeightPlusOffset8<TCodec, T>(c, vc.Load(weight.AsAligned(16)[j]), offset, mode);
            next = xs[(long)firstRow * chunks + j];
        }
        for (int row = firstRow; row < endRow; row++)
        {
            Float8 v = vc.Load(next);
            if (owner && row + 1 < endRow)
                next = xs[(long)(row + 1) * chunks + j];
            float r = DeviceMath.Rsqrt(GroupReduce.Sum(v.SumSquares(), row) * invCols + eps);
            if (Group.IsFirstThread)
                rstd[row] = r;
            if (owner)
                ys[(long)row * chunks + j] = vc.Store(Out8<TCodec, T>(c, v, w, r, mode));
        }
    }

    /// <summary>
    /// Persistent groups over contiguous runs of rows; thread j owns chunk j of every row, so its share
    /// of dW accumulates in registers and is written once per group to row <c>Grid.IdxX</c> of the
    /// fp32 partials. The next row's dy and x are loaded before the current row's reduction (see the
    /// forward). dx may alias dy: each chunk is read before it is written, by its owner.
    /// </summary>
    internal static void BackwardVectorized<T, TCodec, TVec, TVecCodec>(
        ArrayView<TVec> dy, ArrayView<TVec> x, ArrayView<TVec> weight, ArrayView<float> rstd, ArrayView<TVec> dx,
        ArrayView<Float8> weightGradPartials, int rows, int chunks, int rowsPerGroup, float offset,
        SpecializedValue<int> castingMode)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec> =>
        BackwardVectorizedBody<T, TCodec, TVec, TVecCodec, NoDirectGradient<TVec, TVecCodec>>(dy, x, weight, rstd, dx,
            weightGradPartials, rows, chunks, rowsPerGroup, offset, castingMode.Value, default);

    /// <summary>
    /// The body of both vectorised RMSNorm backward kernels (this op's and fused add+RMSNorm's): they differ
    /// only in <typeparamref name="TDirect"/>, a gradient that reaches x directly and is added to dx.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void BackwardVectorizedBody<T, TCodec, TVec, TVecCodec, TDirect>(
        ArrayView<TVec> dy, ArrayView<TVec> x, ArrayView<TVec> weight, ArrayView<float> rstd, ArrayView<TVec> dx,
        ArrayView<Float8> weightGradPartials, int rows, int chunks, int rowsPerGroup, float offset, int mode, TDirect direct)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
        where TDirect : struct, IDirectGradient<TVec, TVecCodec>
    {
        TCodec c = default;
        TVecCodec vc = default;
        var (dys, xs, dxs) = (dy.AsAligned(16), x.AsAligned(16), dx.AsAligned(16));
        int j = Group.IdxX;
        bool owner = j < chunks;
        float invCols = 1f / (chunks * 8);
        int firstRow = Grid.IdxX * rowsPerGroup;
        int endRow = Math.Min(rows, firstRow + rowsPerGroup);

        Float8 w = default, acc = default;
        TVec nextG = default, nextV = default, nextS = default;
        if (owner && firstRow < endRow)
        {
            w = WeightPlusOffset8<TCodec, T>(c, vc.Load(weight.AsAligned(16)[j]), offset, mode);
            nextG = dys[(long)firstRow * chunks + j];
            nextV = xs[(long)firstRow * chunks + j];
            direct.Prefetch(ref nextS, (long)firstRow * chunks + j);
        }
        for (int row = firstRow; row < endRow; row++)
        {
            Float8 g = vc.Load(nextG), v = vc.Load(nextV);
            TVec s = nextS;
            if (owner && row + 1 < endRow)
            {
                nextG = dys[(long)(row + 1) * chunks + j];
                nextV = xs[(long)(row + 1) * chunks + j];
                direct.Prefetch(ref nextS, (long)(row + 1) * chunks + j);
            }
            float r = rstd[row];
            Float8 m = M8<TCodec, T>(c, g, w, mode);
            float dot = GroupReduce.Sum(m.Dot(v), row);
            if (!owner)
                continue;
            direct.Store(dxs, (long)row * chunks + j, Dx8(m, v, r, dot, invCols), s);
            AccumulateDw8<TCodec, T>(c, ref acc, g, v, r, mode);
        }
        if (owner)
            weightGradPartials[(long)Grid.IdxX * chunks + j] = acc;
    }

    // ---- scalar: any row length ----

    /// <summary>One group per row, strided over the row. Writes y and the row's fp32 rstd.</summary>
    internal static void Forward<T, TCodec>(
        ArrayView<T> x, ArrayView<T> weight, ArrayView<T> y, ArrayView<float> rstd,
        int cols, float eps, float offset, int mode)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        TCodec codec = default;
        int row = Grid.IdxX;
        long start = (long)row * cols;

        float sumSquares = 0f;
        for (int c = Group.IdxX; c < cols; c += Group.DimX)
        {
            float v = codec.Load(x[start + c]);
            sumSquares += v * v;
        }
        sumSquares = GroupReduce.Sum(sumSquares, 0);
        float r = DeviceMath.Rsqrt(sumSquares / cols + eps);
        if (Group.IsFirstThread)
            rstd[row] = r;

        float rs = mode == None ? codec.Round(r) : r;
        for (int c = Group.IdxX; c < cols; c += Group.DimX)
            y[start + c] = codec.Store(Out<TCodec, T>(codec, codec.Load(x[start + c]),
                WeightPlusOffset<TCodec, T>(codec, codec.Load(weight[c]), offset, mode), r, rs, mode));
    }

    /// <summary>
    /// Persistent groups, each over a contiguous run of rows. Writes dx (which may alias dy: each element
    /// of dy is read before the same element of dx is written, by the same thread) and, when
    /// <paramref name="accumulateWeightGrad"/> is set, the group's fp32 partial sum of dW into row
    /// <c>Grid.IdxX</c> of <paramref name="weightGradPartials"/>, accumulated in dynamic shared memory
    /// (no atomics: each thread owns its columns).
    /// </summary>
    internal static void Backward<T, TCodec>(
        ArrayView<T> dy, ArrayView<T> x, ArrayView<T> weight, ArrayView<float> rstd, ArrayView<T> dx,
        ArrayView<float> weightGradPartials, int rows, int cols, int rowsPerGroup, float offset, int mode,
        int accumulateWeightGrad)
        where T : unmanaged where TCodec : struct, IElementCodec<T> =>
        BackwardBody<T, TCodec, NoDirectElementGradient<T, TCodec>>(dy, x, weight, rstd, dx, weightGradPartials, rows, cols, rowsPerGroup,
            offset, mode, accumulateWeightGrad, default);

    /// <summary>The body of both scalar RMSNorm backward kernels (see <see cref="BackwardVectorizedBody"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void BackwardBody<T, TCodec, TDirect>(
        ArrayView<T> dy, ArrayView<T> x, ArrayView<T> weight, ArrayView<float> rstd, ArrayView<T> dx,
        ArrayView<float> weightGradPartials, int rows, int cols, int rowsPerGroup, float offset, int mode,
        int accumulateWeightGrad, TDirect direct)
        where T : unmanaged where TCodec : struct, IElementCodec<T> where TDirect : struct, IDirectElementGradient<T, TCodec>
    {
        TCodec codec = default;
        var dwAccumulator = SharedMemory.GetDynamic<float>();
        bool accumulate = accumulateWeightGrad != 0;
        if (accumulate)
            for (int c = Group.IdxX; c < cols; c += Group.DimX)
                dwAccumulator[c] = 0f;

        int firstRow = Grid.IdxX * rowsPerGroup;
        int endRow = Math.Min(rows, firstRow + rowsPerGroup);
        for (int row = firstRow; row < endRow; row++)
        {
            long start = (long)row * cols;
            float r = rstd[row];

            float dot = 0f;
            for (int c = Group.IdxX; c < cols; c += Group.DimX)
                dot += M<TCodec, T>(codec, codec.Load(dy[start + c]), WeightPlusOffset<TCodec, T>(codec, codec.Load(weight[c]), offset, mode), mode)
                    * codec.Load(x[start + c]);
            dot = GroupReduce.Sum(dot, row);

            float k = r * r * dot / cols;
            float rs = mode == None ? codec.Round(r) : r;
            for (int c = Group.IdxX; c < cols; c += Group.DimX)
            {
                float g = codec.Load(dy[start + c]);
                float v = codec.Load(x[start + c]);
                float m = M<TCodec, T>(codec, g, WeightPlusOffset<TCodec, T>(codec, codec.Load(weight[c]), offset, mode), mode);
                if (accumulate)
                    dwAccumulator[c] += Dw<TCodec, T>(codec, g, v, r, rs, mode);
                direct.Store(dx, start + c, r * (m - k * v));
            }
        }

        if (accumulate)
            for (int c = Group.IdxX; c < cols; c += Group.DimX)
                weightGradPartials[(long)Grid.IdxX * cols + c] = dwAccumulator[c];
    }
}
