using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace Liger.Kernels.Kernels;

/// <summary>
/// SwiGLU device code, elementwise over grid-stride loops: c = silu(a) * b. The backward recomputes
/// silu from a (nothing but a and b is saved) and rounds where eager torch rounds, so results match
/// the eager graph up to the exp implementation. Vectorised kernels move 8 elements per thread per
/// step (16-byte accesses for bf16); scalar kernels take any length and alignment.
/// </summary>
internal static class SwiGluKernels
{
    // ---- the math of one element ----

    /// <summary>silu(a) as torch computes it: a / (1 + e^-a).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Silu(float a) => a / (1f + DeviceMath.Exp(-a));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Out<TCodec, T>(TCodec c, float a, float b)
        where T : unmanaged where TCodec : struct, IElementCodec<T> => c.Round(Silu(a)) * b;

    /// <summary>db = dc * silu(a) (silu rounded as the forward stored it); da = round(dc * b) * silu'(a).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Grad<TCodec, T>(TCodec c, float g, float a, float b, out float da, out float db)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        float sig = DeviceMath.Sigmoid(a);
        db = g * c.Round(Silu(a));
        da = c.Round(g * b) * (sig * (1f + a * (1f - sig)));
    }

    // ---- vectorised: 8 elements per thread per step ----

    internal static void ForwardVectorized<T, TCodec, TVec, TVecCodec>(
        ArrayView<TVec> a, ArrayView<TVec> b, ArrayView<TVec> c, long chunks)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        TCodec e = default;
        TVecCodec vc = default;
        var (av, bv, cv) = (a.AsAligned(16), b.AsAligned(16), c.AsAligned(16));
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = (long)Grid.IdxX * Group.DimX + Group.IdxX; i < chunks; i += stride)
        {
            Float8 x = vc.Load(av[i]), y = vc.Load(bv[i]), o;
            o.V0 = Out<TCodec, T>(e, x.V0, y.V0); o.V1 = Out<TCodec, T>(e, x.V1, y.V1);
            o.V2 = Out<TCodec, T>(e, x.V2, y.V2); o.V3 = Out<TCodec, T>(e, x.V3, y.V3);
            o.V4 = Out<TCodec, T>(e, x.V4, y.V4); o.V5 = Out<TCodec, T>(e, x.V5, y.V5);
            o.V6 = Out<TCodec, T>(e, x.V6, y.V6); o.V7 = Out<TCodec, T>(e, x.V7, y.V7);
            cv[i] = vc.Store(o);
        }
    }

    /// <summary>da and db may alias a and b (in-place backward): each chunk is read before it is written.</summary>
    internal static void BackwardVectorized<T, TCodec, TVec, TVecCodec>(
        ArrayView<TVec> dc, ArrayView<TVec> a, ArrayView<TVec> b, ArrayView<TVec> da, ArrayView<TVec> db, long chunks)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        TCodec e = default;
        TVecCodec vc = default;
        var (dcv, av, bv, dav, dbv) = (dc.AsAligned(16), a.AsAligned(16), b.AsAligned(16), da.AsAligned(16), db.AsAligned(16));
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = (long)Grid.IdxX * Group.DimX + Group.IdxX; i < chunks; i += stride)
        {
            Float8 g = vc.Load(dcv[i]), x = vc.Load(av[i]), y = vc.Load(bv[i]), ga, gb;
            Grad<TCodec, T>(e, g.V0, x.V0, y.V0, out ga.V0, out gb.V0);
            Grad<TCodec, T>(e, g.V1, x.V1, y.V1, out ga.V1, out gb.V1);
            Grad<TCodec, T>(e, g.V2, x.V2, y.V2, out ga.V2, out gb.V2);
            Grad<TCodec, T>(e, g.V3, x.V3, y.V3, out ga.V3, out gb.V3);
            Grad<TCodec, T>(e, g.V4, x.V4, y.V4, out ga.V4, out gb.V4);
            Grad<TCodec, T>(e, g.V5, x.V5, y.V5, out ga.V5, out gb.V5);
            Grad<TCodec, T>(e, g.V6, x.V6, y.V6, out ga.V6, out gb.V6);
            Grad<TCodec, T>(e, g.V7, x.V7, y.V7, out ga.V7, out gb.V7);
            dav[i] = vc.Store(ga);
            dbv[i] = vc.Store(gb);
        }
    }

    // ---- scalar: any length ----

    internal static void Forward<T, TCodec>(ArrayView<T> a, ArrayView<T> b, ArrayView<T> c, long n)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        TCodec e = default;
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = (long)Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += stride)
            c[i] = e.Store(Out<TCodec, T>(e, e.Load(a[i]), e.Load(b[i])));
    }

    /// <summary>da and db may alias a and b (in-place backward): each index is read before it is written.</summary>
    internal static void Backward<T, TCodec>(
        ArrayView<T> dc, ArrayView<T> a, ArrayView<T> b, ArrayView<T> da, ArrayView<T> db, long n)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        TCodec e = default;
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = (long)Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += stride)
        {
            Grad<TCodec, T>(e, e.Load(dc[i]), e.Load(a[i]), e.Load(b[i]), out float ga, out float gb);
            da[i] = e.Store(ga);
            db[i] = e.Store(gb);
        }
    }
}
