using ILGPU;

namespace Liger.Kernels.Kernels;

/// <summary>
/// SwiGLU device code, elementwise over grid-stride loops: c = silu(a) * b. The backward recomputes
/// silu from a (nothing but a and b is saved) and rounds where eager torch rounds, so bf16 results
/// match the eager graph bit for bit up to the exp implementation.
/// </summary>
internal static class SwiGluKernels
{
    internal static void Forward<T, TCodec>(ArrayView<T> a, ArrayView<T> b, ArrayView<T> c, long n)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        TCodec codec = default;
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = (long)Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += stride)
        {
            float av = codec.Load(a[i]);
            float silu = av / (1f + DeviceMath.Exp(-av)); // torch's silu formula
            c[i] = codec.Store(codec.Round(silu) * codec.Load(b[i]));
        }
    }

    /// <summary>da and db may alias a and b (in-place backward): each index is read before it is written.</summary>
    internal static void Backward<T, TCodec>(
        ArrayView<T> dc, ArrayView<T> a, ArrayView<T> b, ArrayView<T> da, ArrayView<T> db, long n)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        TCodec codec = default;
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = (long)Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += stride)
        {
            float g = codec.Load(dc[i]);
            float av = codec.Load(a[i]);
            float bv = codec.Load(b[i]);
            float sig = DeviceMath.Sigmoid(av);
            float silu = av / (1f + DeviceMath.Exp(-av));
            // d/da silu(a) = sig * (1 + a * (1 - sig)); eager rounds dc*b before this product
            float gradSilu = codec.Round(g * bv);
            db[i] = codec.Store(g * codec.Round(silu));
            da[i] = codec.Store(gradSilu * (sig * (1f + av * (1f - sig))));
        }
    }
}
