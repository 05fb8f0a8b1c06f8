using ILGPU;

namespace Liger.Kernels.Kernels;

/// <summary>
/// RMSNorm device code: y = x * rstd * (offset + w), rstd = 1 / sqrt(mean(x^2) + eps), per row.
/// Casting modes follow Liger-Kernel: 0 = llama (x*rstd rounded to the input dtype before the weight),
/// 1 = gemma (all fp32, one rounding at the end), 2 = none (also rstd rounded to the input dtype).
/// </summary>
internal static class RmsNormKernels
{
    internal const int Llama = 0, Gemma = 1, None = 2;

    /// <summary>One group per row. Writes y and the row's fp32 rstd.</summary>
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
        sumSquares = GroupReduce.Sum(sumSquares);
        float r = DeviceMath.Rsqrt(sumSquares / cols + eps);
        if (Group.IsFirstThread)
            rstd[row] = r;

        float rScaled = mode == None ? codec.Round(r) : r;
        for (int c = Group.IdxX; c < cols; c += Group.DimX)
        {
            float v = codec.Load(x[start + c]);
            float w = codec.Load(weight[c]);
            float outValue = mode == Gemma
                ? v * r * (offset + w)
                : codec.Round(v * rScaled) * codec.Round(offset + w);
            y[start + c] = codec.Store(outValue);
        }
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
        where T : unmanaged where TCodec : struct, IElementCodec<T>
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

            // dot = sum_c m_c * x_c, with m = dy * (offset + w) in the mode's precision
            float dot = 0f;
            for (int c = Group.IdxX; c < cols; c += Group.DimX)
                dot += UpstreamTimesWeight(codec, dy[start + c], weight[c], offset, mode) * codec.Load(x[start + c]);
            dot = GroupReduce.Sum(dot);

            float correction = r * r * dot / cols;
            float rScaled = mode == None ? codec.Round(r) : r;
            for (int c = Group.IdxX; c < cols; c += Group.DimX)
            {
                T dyRaw = dy[start + c];
                float v = codec.Load(x[start + c]);
                float m = UpstreamTimesWeight(codec, dyRaw, weight[c], offset, mode);
                if (accumulate)
                {
                    float g = codec.Load(dyRaw);
                    dwAccumulator[c] += mode == Gemma ? g * (v * r) : codec.Round(g * codec.Round(v * rScaled));
                }
                dx[start + c] = codec.Store(r * (m - correction * v));
            }
        }

        if (accumulate)
            for (int c = Group.IdxX; c < cols; c += Group.DimX)
                weightGradPartials[(long)Grid.IdxX * cols + c] = dwAccumulator[c];
    }

    private static float UpstreamTimesWeight<T, TCodec>(TCodec codec, T dy, T weight, float offset, int mode)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        float g = codec.Load(dy);
        float w = codec.Load(weight);
        return mode == Gemma ? g * (offset + w) : codec.Round(g * codec.Round(offset + w));
    }
}
