using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;

namespace Liger.Kernels.Kernels;

/// <summary>Scalar settings of one cross-entropy launch (a kernel parameter struct: one argument, not ten).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct CrossEntropySettings
{
    /// <summary>Number of classes V (the row length).</summary>
    public int Vocab;
    /// <summary>Rows handled by each group (persistent grid).</summary>
    public int RowsPerGroup;
    /// <summary>Number of rows.</summary>
    public int Rows;
    /// <summary>Targets equal to this contribute nothing.</summary>
    public long IgnoreIndex;
    /// <summary>z-loss weight: lse_square_scale · lse² is added per row.</summary>
    public float LseSquareScale;
    /// <summary>Label smoothing ε_total in [0, 1]; each class gets ε_total / V.</summary>
    public float LabelSmoothing;
    /// <summary>Soft cap c (logits become c·tanh(x/c)); unused unless <see cref="CrossEntropyKernels.HasSoftcap"/>.</summary>
    public float Softcap;
}

/// <summary>
/// Cross-entropy device code. One group per row at a time (persistent groups striding over rows):
/// pass 1 reads the row once and keeps an online max and sum of exponentials per thread (fp32), merged
/// across the group with deterministic reductions into lse; pass 2 reads the row again (from L2: the
/// rows in flight fit in it) and writes the gradient of the loss with respect to the logits, possibly
/// over the logits themselves. The target's gradient folds its −(1 − smoothing) term in fp32 before the
/// single rounding: softmax(x_y) − 1 cancels as softmax(x_y) → 1, and rounding softmax first would keep
/// almost no significant bits of the difference in bf16.
/// </summary>
internal static class CrossEntropyKernels
{
    // Flags: bits of the specialised int, so each combination compiles to a kernel with only its branches.
    internal const int HasWeight = 1, HasSoftcap = 2, HasGradients = 4, ReductionMean = 8, WantArgmax = 16, HasSmoothing = 32;

    // Slots of the device-side totals a launch reads (filled by CountTargets, no host synchronisation).
    internal const int TotalCount = 0, TotalTargetWeight = 1, TotalWeight = 2, TotalInvalid = 3, TotalSlots = 4;

    private const float Log2E = 1.4426950408889634f;

    /// <summary>
    /// One group: totals[0] = number of non-ignored targets, [1] = Σ weight[target] over them,
    /// [2] = Σ weight over all classes, [3] = number of targets outside [0, V) that are not ignored.
    /// Sums in fp32 over a fixed tree (deterministic); counts are exact up to 2^24 rows.
    /// </summary>
    internal static void CountTargets(ArrayView<long> target, ArrayView<float> weight, ArrayView<float> totals,
        CrossEntropySettings s, SpecializedValue<int> flags)
    {
        bool hasWeight = (flags.Value & HasWeight) != 0;
        float count = 0f, targetWeight = 0f, invalid = 0f, weightSum = 0f;
        for (int row = Group.IdxX; row < s.Rows; row += Group.DimX)
        {
            long y = target[row];
            if (y == s.IgnoreIndex)
                continue;
            if (y < 0 || y >= s.Vocab)
            {
                invalid += 1f;
                continue;
            }
            count += 1f;
            targetWeight += hasWeight ? weight[y] : 1f;
        }
        if (hasWeight)
            for (int c = Group.IdxX; c < s.Vocab; c += Group.DimX)
                weightSum += weight[c];
        count = GroupReduce.Sum(count, 0);
        targetWeight = GroupReduce.Sum(targetWeight, 1);
        invalid = GroupReduce.Sum(invalid, 0);
        weightSum = GroupReduce.Sum(weightSum, 1);
        if (Group.IsFirstThread)
        {
            totals[TotalCount] = count;
            totals[TotalTargetWeight] = targetWeight;
            totals[TotalWeight] = weightSum;
            totals[TotalInvalid] = invalid;
        }
    }

    /// <summary>What pass 2 needs to turn a (soft-capped) logit into its gradient: g = e^(x−m)·P + B + W·w_i.</summary>
    private struct GradientTerms
    {
        public float Max, P, B, W, TargetDelta;
    }

    /// <summary>
    /// The loss of each row and, with <see cref="HasGradients"/>, its gradient written to
    /// <paramref name="grad"/> (which may be <paramref name="logits"/> itself). Vectorised: the row is
    /// read as 8-element chunks (16-byte loads for bf16); V must be a multiple of 8.
    /// </summary>
    internal static void RowsVectorized<T, TCodec, TVec, TVecCodec>(
        ArrayView<TVec> logits, ArrayView<T> logitsScalar, ArrayView<TVec> grad, ArrayView<long> target,
        ArrayView<Float8> weight, ArrayView<float> weightScalar, ArrayView<float> totals,
        ArrayView<float> loss, ArrayView<float> zLoss, ArrayView<long> predicted,
        CrossEntropySettings s, SpecializedValue<int> flagsValue)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        int flags = flagsValue.Value;
        TCodec codec = default;
        TVecCodec vc = default;
        var (xs, gs) = (logits.AsAligned(16), grad.AsAligned(16));
        int chunks = s.Vocab / 8;
        int firstRow = Grid.IdxX * s.RowsPerGroup;
        int endRow = Math.Min(s.Rows, firstRow + s.RowsPerGroup);
        int phase = 0; // alternates the reductions' shared slots (see GroupReduce.Sum)
        for (int row = firstRow; row < endRow; row++)
        {
            long y = target[row];
            long rowStart = (long)row * chunks;
            if (y == s.IgnoreIndex || y < 0 || y >= s.Vocab)
            {
                float fill = y == s.IgnoreIndex ? 0f : float.NaN; // an invalid target poisons its row, loudly
                if ((flags & HasGradients) != 0)
                {
                    if (y == s.IgnoreIndex)
                    {
                        float rowMax = NegativeMax;
                        for (int k = Group.IdxX; k < chunks; k += Group.DimX)
                            rowMax = DeviceMath.NanMax(rowMax, Max8(vc.Load(xs[rowStart + k])));
                        fill = IgnoredGradient(GroupReduce.Max(rowMax, phase++), flags);
                    }
                    Float8 z = Fill(fill);
                    for (int k = Group.IdxX; k < chunks; k += Group.DimX)
                        gs[rowStart + k] = vc.Store(z);
                }
                if (Group.IsFirstThread)
                    StoreIgnored(loss, zLoss, predicted, row, y == s.IgnoreIndex ? 0f : float.NaN, flags);
                continue;
            }

            // Pass 1: online max / sum of e^(x - max), plus what smoothing and argmax need.
            // m starts at -MaxValue, not -inf: e^(-inf - m) is then 0, never e^(-inf + inf) = NaN, so -inf
            // logits (masked classes) add nothing and an all -inf row still ends at lse = -inf.
            float m = NegativeMax, d = 0f, smooth = 0f, best = float.NegativeInfinity;
            int bestIndex = int.MaxValue;
            float xy = Capped(codec.Load(logitsScalar[rowStart * 8 + y]), s, flags);
            for (int k = Group.IdxX; k < chunks; k += Group.DimX)
            {
                Float8 v = Capped8(vc.Load(xs[rowStart + k]), s, flags);
                float chunkMax = Max8(v);
                if (DeviceMath.Above(chunkMax, m))
                {
                    d *= IntrinsicMath.CPUOnly.Exp2((m - chunkMax) * Log2E); // NaN once a NaN is seen
                    m = DeviceMath.NanMax(m, chunkMax);
                }
                d += SumExp8(v, m);
                if ((flags & HasSmoothing) != 0)
                    smooth += (flags & HasWeight) != 0 ? v.Dot(weight[k]) : Sum8(v);
                if ((flags & WantArgmax) != 0 && (DeviceMath.Above(chunkMax, best) || bestIndex == int.MaxValue))
                {
                    best = chunkMax;
                    bestIndex = k * 8 + FirstIndexOf8(v, chunkMax);
                }
            }
            float wy = (flags & HasWeight) != 0 ? weightScalar[y] : 1f;
            var terms = FinishRow(m, d, smooth, best, bestIndex, xy, wy, totals, loss, zLoss, predicted, row, s, flags, ref phase);

            if ((flags & HasGradients) == 0)
                continue;

            // Pass 2: the gradient, g_i = (1 + 2 z lse)·softmax_i·(1 - ε) ... folded into e^(x_i - m)·P + B + W·w_i.
            int targetChunk = (int)(y >> 3), targetLane = (int)(y & 7);
            for (int k = Group.IdxX; k < chunks; k += Group.DimX)
            {
                Float8 raw = vc.Load(xs[rowStart + k]);
                Float8 w = (flags & HasWeight) != 0 ? weight[k] : default;
                Float8 g;
                g.V0 = Gradient(raw.V0, w.V0, terms, k == targetChunk && targetLane == 0, s, flags);
                g.V1 = Gradient(raw.V1, w.V1, terms, k == targetChunk && targetLane == 1, s, flags);
                g.V2 = Gradient(raw.V2, w.V2, terms, k == targetChunk && targetLane == 2, s, flags);
                g.V3 = Gradient(raw.V3, w.V3, terms, k == targetChunk && targetLane == 3, s, flags);
                g.V4 = Gradient(raw.V4, w.V4, terms, k == targetChunk && targetLane == 4, s, flags);
                g.V5 = Gradient(raw.V5, w.V5, terms, k == targetChunk && targetLane == 5, s, flags);
                g.V6 = Gradient(raw.V6, w.V6, terms, k == targetChunk && targetLane == 6, s, flags);
                g.V7 = Gradient(raw.V7, w.V7, terms, k == targetChunk && targetLane == 7, s, flags);
                gs[rowStart + k] = vc.Store(g);
            }
        }
    }

    /// <summary>The same computation element by element: any V, any alignment (and float16).</summary>
    internal static void Rows<T, TCodec>(
        ArrayView<T> logits, ArrayView<T> grad, ArrayView<long> target, ArrayView<float> weight, ArrayView<float> totals,
        ArrayView<float> loss, ArrayView<float> zLoss, ArrayView<long> predicted,
        CrossEntropySettings s, SpecializedValue<int> flagsValue)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        int flags = flagsValue.Value;
        TCodec codec = default;
        int firstRow = Grid.IdxX * s.RowsPerGroup;
        int endRow = Math.Min(s.Rows, firstRow + s.RowsPerGroup);
        int phase = 0; // alternates the reductions' shared slots (see GroupReduce.Sum)
        for (int row = firstRow; row < endRow; row++)
        {
            long y = target[row];
            long rowStart = (long)row * s.Vocab;
            if (y == s.IgnoreIndex || y < 0 || y >= s.Vocab)
            {
                float fill = y == s.IgnoreIndex ? 0f : float.NaN;
                if ((flags & HasGradients) != 0)
                {
                    if (y == s.IgnoreIndex)
                    {
                        float rowMax = NegativeMax;
                        for (int i = Group.IdxX; i < s.Vocab; i += Group.DimX)
                            rowMax = DeviceMath.NanMax(rowMax, codec.Load(logits[rowStart + i]));
                        fill = IgnoredGradient(GroupReduce.Max(rowMax, phase++), flags);
                    }
                    for (int i = Group.IdxX; i < s.Vocab; i += Group.DimX)
                        grad[rowStart + i] = codec.Store(fill);
                }
                if (Group.IsFirstThread)
                    StoreIgnored(loss, zLoss, predicted, row, y == s.IgnoreIndex ? 0f : float.NaN, flags);
                continue;
            }

            float m = NegativeMax, d = 0f, smooth = 0f; // see RowsVectorized for the start at -MaxValue
            int bestIndex = int.MaxValue;
            float xy = Capped(codec.Load(logits[rowStart + y]), s, flags);
            for (int i = Group.IdxX; i < s.Vocab; i += Group.DimX)
            {
                float v = Capped(codec.Load(logits[rowStart + i]), s, flags);
                bool above = DeviceMath.Above(v, m);
                if (above)
                {
                    d *= IntrinsicMath.CPUOnly.Exp2((m - v) * Log2E); // NaN once a NaN is seen
                    m = DeviceMath.NanMax(m, v);
                }
                if (above || bestIndex == int.MaxValue)
                    bestIndex = i; // strided ascending: the first index holding this thread's maximum (or first NaN)
                d += IntrinsicMath.CPUOnly.Exp2((v - m) * Log2E);
                if ((flags & HasSmoothing) != 0)
                    smooth += (flags & HasWeight) != 0 ? v * weight[i] : v;
            }
            float wy = (flags & HasWeight) != 0 ? weight[y] : 1f;
            var terms = FinishRow(m, d, smooth, m, bestIndex, xy, wy, totals, loss, zLoss, predicted, row, s, flags, ref phase);

            if ((flags & HasGradients) == 0)
                continue;
            for (int i = Group.IdxX; i < s.Vocab; i += Group.DimX)
            {
                float w = (flags & HasWeight) != 0 ? weight[i] : 0f;
                grad[rowStart + i] = codec.Store(Gradient(codec.Load(logits[rowStart + i]), w, terms, i == y, s, flags));
            }
        }
    }

    /// <summary>
    /// Multiplies gradient rows by the incoming gradient: one scalar for mean/sum (<paramref name="perRow"/> 0),
    /// one per row for reduction none. Skips work where the factor is exactly 1 (the usual loss.backward()),
    /// deciding on the device: no host synchronisation to read the factor.
    /// </summary>
    internal static void ScaleRows<TVec, TVecCodec>(ArrayView<TVec> grad, ArrayView<float> factor, int rows, int chunks, int perRow)
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        TVecCodec vc = default;
        var gs = grad.AsAligned(16);
        for (int row = Grid.IdxX; row < rows; row += Grid.DimX)
        {
            float f = factor[perRow != 0 ? row : 0];
            if (f == 1f)
            {
                if (perRow == 0)
                    return;
                continue;
            }
            for (int k = Group.IdxX; k < chunks; k += Group.DimX)
            {
                long i = (long)row * chunks + k;
                Float8 g = vc.Load(gs[i]);
                g.V0 *= f; g.V1 *= f; g.V2 *= f; g.V3 *= f; g.V4 *= f; g.V5 *= f; g.V6 *= f; g.V7 *= f;
                gs[i] = vc.Store(g);
            }
        }
    }

    /// <summary><see cref="ScaleRows{TVec, TVecCodec}"/> element by element, for any V.</summary>
    internal static void ScaleRowsScalar<T, TCodec>(ArrayView<T> grad, ArrayView<float> factor, int rows, int cols, int perRow)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        TCodec codec = default;
        for (int row = Grid.IdxX; row < rows; row += Grid.DimX)
        {
            float f = factor[perRow != 0 ? row : 0];
            if (f == 1f)
            {
                if (perRow == 0)
                    return;
                continue;
            }
            for (int c = Group.IdxX; c < cols; c += Group.DimX)
            {
                long i = (long)row * cols + c;
                grad[i] = codec.Store(codec.Load(grad[i]) * f);
            }
        }
    }

    // ---- the math of one row ----

    /// <summary>The running max's start: below every finite logit, above -inf (see RowsVectorized).</summary>
    private const float NegativeMax = -float.MaxValue;

    /// <summary>
    /// An ignored row's gradient: 0, or NaN where torch's is. torch backpropagates 0 through the row's
    /// log-softmax, 0 − e^(log p)·0, which is NaN exactly when the row's (soft-capped) max is not finite:
    /// a NaN, a +inf, or every logit −inf. The soft cap maps ±inf to ±c, so there only NaN counts.
    /// </summary>
    private static float IgnoredGradient(float rawMax, int flags)
    {
        bool bad = (flags & HasSoftcap) != 0 ? float.IsNaN(rawMax) : !(rawMax > NegativeMax && rawMax < float.PositiveInfinity);
        return bad ? float.NaN : 0f;
    }

    private static void StoreIgnored(ArrayView<float> loss, ArrayView<float> zLoss, ArrayView<long> predicted, int row, float fill, int flags)
    {
        loss[row] = fill;
        zLoss[row] = fill;
        if ((flags & WantArgmax) != 0)
            predicted[row] = -1;
    }

    /// <summary>
    /// Between the two passes of both kernel shapes: reduces the threads' running max, Σ e^(x − max),
    /// smoothing sum and argmax over the group (consecutive reductions alternate <paramref name="phase"/>),
    /// reads the normalisers from the device-side totals, stores the row's loss, and returns what the
    /// gradient pass needs.
    /// </summary>
    private static GradientTerms FinishRow(float m, float d, float smooth, float best, int bestIndex, float xy, float wy,
        ArrayView<float> totals, ArrayView<float> loss, ArrayView<float> zLoss, ArrayView<long> predicted, int row,
        CrossEntropySettings s, int flags, ref int phase)
    {
        float rowMax = GroupReduce.Max(m, phase++);
        float sumExp = GroupReduce.Sum(d * IntrinsicMath.CPUOnly.Exp2((m - rowMax) * Log2E), phase++);
        float lse = rowMax + IntrinsicMath.CPUOnly.Log2(sumExp) / Log2E;
        if ((flags & HasSmoothing) != 0)
            smooth = GroupReduce.Sum(smooth, phase++);
        if ((flags & WantArgmax) != 0)
            bestIndex = GroupReduce.ArgMax(best, bestIndex, phase++);

        float invN = 0f, invW = 0f;
        if ((flags & ReductionMean) != 0)
        {
            float n = totals[TotalCount];
            invN = n > 0f ? 1f / n : 0f;
            float w = totals[TotalTargetWeight];
            invW = (flags & HasWeight) != 0 ? (w != 0f ? 1f / w : 0f) : invN;
        }
        float weightSum = (flags & HasWeight) != 0 ? totals[TotalWeight] : 0f;
        if (Group.IsFirstThread)
            StoreLoss(loss, zLoss, predicted, row, lse, rowMax, xy, smooth, wy, weightSum, invN, invW, bestIndex, s, flags);
        return Terms(rowMax, sumExp, lse, wy, weightSum, invN, invW, s, flags);
    }

    /// <summary>
    /// loss = w_y·(lse − x_y), with smoothing (1 − ε)·that + ε/V·Σ_c w_c·(lse − x_c), divided by the number
    /// (or weight) of counted targets for mean; plus the z-loss scale·lse² (divided by the count for mean,
    /// not weighted, as Liger-Kernel defines it).
    /// </summary>
    private static void StoreLoss(ArrayView<float> loss, ArrayView<float> zLoss, ArrayView<long> predicted, int row,
        float lse, float rowMax, float xy, float smooth, float wy, float weightSum, float invN, float invW, int bestIndex,
        CrossEntropySettings s, int flags)
    {
        float value = (lse - xy) * wy;
        if ((flags & HasSmoothing) != 0)
        {
            float eps = s.LabelSmoothing / s.Vocab;
            float smoothLoss = (flags & HasWeight) != 0 ? eps * (lse * weightSum - smooth) : s.LabelSmoothing * lse - eps * smooth;
            value = value * (1f - s.LabelSmoothing) + smoothLoss;
        }
        // torch.logsumexp (the z-loss's reference) gives +inf for a row holding +inf (no NaN), where the
        // log-softmax behind the loss gives NaN (inf - inf); the z-loss follows logsumexp.
        float lseZ = rowMax == float.PositiveInfinity ? rowMax : lse;
        float z = s.LseSquareScale * lseZ * lseZ;
        if ((flags & ReductionMean) != 0)
        {
            value *= invW;
            z *= invN;
        }
        loss[row] = value + z;
        zLoss[row] = z;
        if ((flags & WantArgmax) != 0)
            predicted[row] = bestIndex;
    }

    private static GradientTerms Terms(float rowMax, float sumExp, float lse, float wy, float weightSum, float invN, float invW,
        CrossEntropySettings s, int flags)
    {
        bool mean = (flags & ReductionMean) != 0;
        float scaleW = mean ? invW : 1f, scaleN = mean ? invN : 1f;
        float eps = s.LabelSmoothing / s.Vocab;
        float softmaxFactor = ((1f - s.LabelSmoothing) * wy + eps * ((flags & HasWeight) != 0 ? weightSum : s.Vocab)) * scaleW
                              + 2f * s.LseSquareScale * lse * scaleN;
        GradientTerms t;
        t.Max = rowMax;
        t.P = softmaxFactor / sumExp;
        // Without weights the smoothing term is a constant -ε; with weights it is -ε·w_i.
        t.B = (flags & HasWeight) != 0 ? 0f : -eps * scaleW;
        t.W = (flags & HasWeight) != 0 ? -eps * scaleW : 0f;
        t.TargetDelta = -(1f - s.LabelSmoothing) * wy * scaleW;
        return t;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Gradient(float raw, float w, GradientTerms t, bool isTarget, CrossEntropySettings s, int flags)
    {
        float x = raw, capDerivative = 1f;
        if ((flags & HasSoftcap) != 0)
        {
            float th = DeviceMath.Tanh(raw / s.Softcap);
            x = s.Softcap * th;
            capDerivative = 1f - th * th;
        }
        float g = IntrinsicMath.CPUOnly.Exp2((x - t.Max) * Log2E) * t.P + t.B + t.W * w;
        if (isTarget)
            g += t.TargetDelta;
        return g * capDerivative;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Capped(float x, CrossEntropySettings s, int flags) =>
        (flags & HasSoftcap) != 0 ? s.Softcap * DeviceMath.Tanh(x / s.Softcap) : x;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Float8 Capped8(Float8 v, CrossEntropySettings s, int flags)
    {
        if ((flags & HasSoftcap) == 0)
            return v;
        v.V0 = Capped(v.V0, s, flags); v.V1 = Capped(v.V1, s, flags); v.V2 = Capped(v.V2, s, flags); v.V3 = Capped(v.V3, s, flags);
        v.V4 = Capped(v.V4, s, flags); v.V5 = Capped(v.V5, s, flags); v.V6 = Capped(v.V6, s, flags); v.V7 = Capped(v.V7, s, flags);
        return v;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Max8(Float8 v) =>
        DeviceMath.NanMax(DeviceMath.NanMax(DeviceMath.NanMax(v.V0, v.V1), DeviceMath.NanMax(v.V2, v.V3)),
            DeviceMath.NanMax(DeviceMath.NanMax(v.V4, v.V5), DeviceMath.NanMax(v.V6, v.V7)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Sum8(Float8 v) => v.V0 + v.V1 + v.V2 + v.V3 + v.V4 + v.V5 + v.V6 + v.V7;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float SumExp8(Float8 v, float m) =>
        IntrinsicMath.CPUOnly.Exp2((v.V0 - m) * Log2E) + IntrinsicMath.CPUOnly.Exp2((v.V1 - m) * Log2E)
        + IntrinsicMath.CPUOnly.Exp2((v.V2 - m) * Log2E) + IntrinsicMath.CPUOnly.Exp2((v.V3 - m) * Log2E)
        + IntrinsicMath.CPUOnly.Exp2((v.V4 - m) * Log2E) + IntrinsicMath.CPUOnly.Exp2((v.V5 - m) * Log2E)
        + IntrinsicMath.CPUOnly.Exp2((v.V6 - m) * Log2E) + IntrinsicMath.CPUOnly.Exp2((v.V7 - m) * Log2E);

    /// <summary>The first lane equal to <paramref name="max"/> (one of them is; the first NaN when it is NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int FirstIndexOf8(Float8 v, float max) =>
        Same(v.V0, max) ? 0 : Same(v.V1, max) ? 1 : Same(v.V2, max) ? 2 : Same(v.V3, max) ? 3 :
        Same(v.V4, max) ? 4 : Same(v.V5, max) ? 5 : Same(v.V6, max) ? 6 : 7;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Same(float a, float b) => a == b || (float.IsNaN(a) && float.IsNaN(b));

    private static Float8 Fill(float value)
    {
        Float8 f;
        f.V0 = f.V1 = f.V2 = f.V3 = f.V4 = f.V5 = f.V6 = f.V7 = value;
        return f;
    }
}
