using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using static Liger.Kernels.Kernels.RmsNormKernels;

namespace Liger.Kernels.Kernels;

/// <summary>
/// Fused residual add + RMSNorm device code: h = x + residual, rounded to the stored type as eager's
/// <c>residual + x</c> rounds it, then y = RMSNorm(h) with RMSNorm's element math and casting modes
/// (<see cref="RmsNormKernels"/>), in one pass over memory each way. The backward adds the gradient that
/// reaches h directly (the residual stream's) to RMSNorm's dh, rounding the latter first, as autograd
/// does when it sums the two gradients of h in the stored type. The one result is the gradient of both
/// x and residual. Kernel shapes as RMSNorm's: vectorised (a row in registers, one 8-element chunk per
/// thread, prefetch behind the barrier, dW partials in registers) and scalar (any row length).
/// </summary>
internal static class FusedAddRmsNormKernels
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Float8 Sum(Float8 a, Float8 b)
    {
        Float8 o;
        o.V0 = a.V0 + b.V0; o.V1 = a.V1 + b.V1; o.V2 = a.V2 + b.V2; o.V3 = a.V3 + b.V3;
        o.V4 = a.V4 + b.V4; o.V5 = a.V5 + b.V5; o.V6 = a.V6 + b.V6; o.V7 = a.V7 + b.V7;
        return o;
    }

    // ---- vectorised: one 8-element chunk per thread ----

    /// <summary>
    /// Persistent groups over contiguous runs of rows; thread j owns elements [8j, 8j+8) of each row. h is
    /// packed (rounded) once and the norm reads the packed value back, so y is the norm of the h that is
    /// stored. The next row's x and residual are loaded before this row's reduction.
    /// </summary>
    internal static void ForwardVectorized<T, TCodec, TVec, TVecCodec>(
        ArrayView<TVec> x, ArrayView<TVec> residual, ArrayView<TVec> weight, ArrayView<TVec> y, ArrayView<TVec> h,
        ArrayView<float> rstd, int rows, int chunks, int rowsPerGroup, float eps, float offset,
        SpecializedValue<int> castingMode)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        int mode = castingMode.Value; // a compile-time constant of the specialised kernel
        TCodec c = default;
        TVecCodec vc = default;
        var (xs, rs, ys, hs) = (x.AsAligned(16), residual.AsAligned(16), y.AsAligned(16), h.AsAligned(16));
        int j = Group.IdxX;
        bool owner = j < chunks;
        float invCols = 1f / (chunks * 8);
        int firstRow = Grid.IdxX * rowsPerGroup;
        int endRow = Math.Min(rows, firstRow + rowsPerGroup);

        Float8 w = default;
        TVec nextX = default, nextR = default;
        if (owner && firstRow < endRow)
        {
            w = WeightPlusOffset8<TCodec, T>(c, vc.Load(weight.AsAligned(16)[j]), offset, mode);
            nextX = xs[(long)firstRow * chunks + j];
            nextR = rs[(long)firstRow * chunks + j];
        }
        for (int row = firstRow; row < endRow; row++)
        {
            TVec packed = vc.Store(Sum(vc.Load(nextX), vc.Load(nextR)));
            if (owner && row + 1 < endRow)
            {
                nextX = xs[(long)(row + 1) * chunks + j];
                nextR = rs[(long)(row + 1) * chunks + j];
            }
            if (owner)
                hs[(long)row * chunks + j] = packed;
            Float8 v = vc.Load(packed);
            float r = DeviceMath.Rsqrt(GroupReduce.Sum(v.SumSquares(), row) * invCols + eps);
            if (Group.IsFirstThread)
                rstd[row] = r;
            if (owner)
                ys[(long)row * chunks + j] = vc.Store(Out8<TCodec, T>(c, v, w, r, mode));
        }
    }

    /// <summary>
    /// RMSNorm's vectorised backward over h (<see cref="RmsNormKernels.BackwardVectorizedBody"/>), plus the
    /// gradient that reached h directly (<paramref name="outputGrad"/>, read only when
    /// <paramref name="hasOutputGrad"/> is set).
    /// </summary>
    internal static void BackwardVectorized<T, TCodec, TVec, TVecCodec>(
        ArrayView<TVec> dy, ArrayView<TVec> outputGrad, ArrayView<TVec> h, ArrayView<TVec> weight, ArrayView<float> rstd,
        ArrayView<TVec> dh, ArrayView<Float8> weightGradPartials, int rows, int chunks, int rowsPerGroup, float offset,
        SpecializedValue<int> castingMode, SpecializedValue<int> hasOutputGrad)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec> =>
        BackwardVectorizedBody<T, TCodec, TVec, TVecCodec, ResidualGradient<TVec, TVecCodec>>(dy, h, weight, rstd, dh,
            weightGradPartials, rows, chunks, rowsPerGroup, offset, castingMode.Value,
            new(outputGrad.AsAligned(16), hasOutputGrad.Value != 0));

    // ---- scalar: any row length ----

    /// <summary>One group per row, strided over the row: writes h, then y from the stored h, and the row's fp32 rstd.</summary>
    internal static void Forward<T, TCodec>(
        ArrayView<T> x, ArrayView<T> residual, ArrayView<T> weight, ArrayView<T> y, ArrayView<T> h,
        ArrayView<float> rstd, int cols, float eps, float offset, int mode)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        TCodec codec = default;
        int row = Grid.IdxX;
        long start = (long)row * cols;

        float sumSquares = 0f;
        for (int c = Group.IdxX; c < cols; c += Group.DimX)
        {
            T packed = codec.Store(codec.Load(x[start + c]) + codec.Load(residual[start + c]));
            h[start + c] = packed;
            float v = codec.Load(packed);
            sumSquares += v * v;
        }
        float r = DeviceMath.Rsqrt(GroupReduce.Sum(sumSquares, 0) / cols + eps);
        if (Group.IsFirstThread)
            rstd[row] = r;

        float rs = mode == None ? codec.Round(r) : r;
        for (int c = Group.IdxX; c < cols; c += Group.DimX) // h[start + c] was written by this thread
            y[start + c] = codec.Store(Out<TCodec, T>(codec, codec.Load(h[start + c]),
                WeightPlusOffset<TCodec, T>(codec, codec.Load(weight[c]), offset, mode), r, rs, mode));
    }

    /// <summary>
    /// RMSNorm's scalar backward over h (<see cref="RmsNormKernels.BackwardBody"/>) plus the gradient that
    /// reached h directly, read only when <paramref name="hasOutputGrad"/> is set.
    /// </summary>
    internal static void Backward<T, TCodec>(
        ArrayView<T> dy, ArrayView<T> outputGrad, ArrayView<T> h, ArrayView<T> weight, ArrayView<float> rstd, ArrayView<T> dh,
        ArrayView<float> weightGradPartials, int rows, int cols, int rowsPerGroup, float offset, int mode,
        int accumulateWeightGrad, int hasOutputGrad)
        where T : unmanaged where TCodec : struct, IElementCodec<T> =>
        BackwardBody<T, TCodec, ResidualElementGradient<T, TCodec>>(dy, h, weight, rstd, dh, weightGradPartials, rows, cols,
            rowsPerGroup, offset, mode, accumulateWeightGrad, new(outputGrad, hasOutputGrad != 0));
}
