using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace Liger.Kernels.Kernels;

/// <summary>
/// The activation f of a gated unit c = f(a) * b, as device code. Kernels take it as a struct type
/// parameter, like the codecs, so each activation gets its own specialised kernel with the calls inlined.
/// </summary>
internal interface IGateActivation
{
    /// <summary>f(a), computed in the order torch computes it.</summary>
    float Value(float a);

    /// <summary>f'(a) as torch's backward of f computes it, and f(a) from the same intermediates.</summary>
    float Derivative(float a, out float value);
}

/// <summary>
/// Gated elementwise device code over grid-stride loops: c = f(a) * b and its backward, for any
/// <see cref="IGateActivation"/> (SwiGLU: <see cref="SiLU"/>, GeGLU: <see cref="GeluTanh"/>). The backward
/// recomputes f from a (nothing but a and b is saved) and rounds where the eager graph f(a) * b rounds,
/// so results match eager torch up to the activation's own rounding. Vectorised kernels move 8 elements
/// per thread per step (16-byte accesses for bf16); scalar kernels take any length and alignment.
/// </summary>
internal static class GatedKernels
{
    // ---- the math of one element ----

    /// <summary>round(f(a)) * b: eager torch stores f(a) in the tensor dtype before the product.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Out<T, TCodec, TActivation>(float a, float b)
        where T : unmanaged where TCodec : struct, IElementCodec<T> where TActivation : struct, IGateActivation =>
        default(TCodec).Round(default(TActivation).Value(a)) * b;

    /// <summary>db = dc * round(f(a)) (f rounded as the forward stored it); da = round(dc * b) * f'(a), as eager's
    /// product backward hands a rounded dc * b to f's backward. Returns c = round(f(a)) * b as the forward computed
    /// it (the activations' Derivative computes f(a) with the same operations as their Value).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float GradAndOut<T, TCodec, TActivation>(float g, float a, float b, out float da, out float db)
        where T : unmanaged where TCodec : struct, IElementCodec<T> where TActivation : struct, IGateActivation
    {
        TCodec c = default;
        float derivative = default(TActivation).Derivative(a, out float value);
        float rounded = c.Round(value);
        db = g * rounded;
        da = c.Round(g * b) * derivative;
        return rounded * b;
    }

    // ---- vectorised: 8 elements per thread per step ----

    internal static void ForwardVectorized<T, TCodec, TVec, TVecCodec, TActivation>(
        ArrayView<TVec> a, ArrayView<TVec> b, ArrayView<TVec> c, long chunks)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
        where TActivation : struct, IGateActivation
    {
        TVecCodec vc = default;
        var (av, bv, cv) = (a.AsAligned(16), b.AsAligned(16), c.AsAligned(16));
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = (long)Grid.IdxX * Group.DimX + Group.IdxX; i < chunks; i += stride)
        {
            Float8 x = vc.Load(av[i]), y = vc.Load(bv[i]), o;
            o.V0 = Out<T, TCodec, TActivation>(x.V0, y.V0); o.V1 = Out<T, TCodec, TActivation>(x.V1, y.V1);
            o.V2 = Out<T, TCodec, TActivation>(x.V2, y.V2); o.V3 = Out<T, TCodec, TActivation>(x.V3, y.V3);
            o.V4 = Out<T, TCodec, TActivation>(x.V4, y.V4); o.V5 = Out<T, TCodec, TActivation>(x.V5, y.V5);
            o.V6 = Out<T, TCodec, TActivation>(x.V6, y.V6); o.V7 = Out<T, TCodec, TActivation>(x.V7, y.V7);
            cv[i] = vc.Store(o);
        }
    }

    /// <summary>
    /// da and db may alias a and b (in-place backward): each chunk is read before it is written. With
    /// <see cref="ProductOverDc"/> the kernel also writes c = round(f(a)) * b, recomputed from the same f(a), over dc
    /// (for a linear layer after the gate that did not keep c: its weight gradient then reads c where dc was).
    /// </summary>
    internal static void BackwardVectorized<T, TCodec, TVec, TVecCodec, TActivation, TProduct>(
        ArrayView<TVec> dc, ArrayView<TVec> a, ArrayView<TVec> b, ArrayView<TVec> da, ArrayView<TVec> db, long chunks)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
        where TActivation : struct, IGateActivation where TProduct : struct, IProductOutput
    {
        TVecCodec vc = default;
        var (dcv, av, bv, dav, dbv) = (dc.AsAligned(16), a.AsAligned(16), b.AsAligned(16), da.AsAligned(16), db.AsAligned(16));
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = (long)Grid.IdxX * Group.DimX + Group.IdxX; i < chunks; i += stride)
        {
            Float8 g = vc.Load(dcv[i]), x = vc.Load(av[i]), y = vc.Load(bv[i]), ga, gb, o;
            o.V0 = GradAndOut<T, TCodec, TActivation>(g.V0, x.V0, y.V0, out ga.V0, out gb.V0);
            o.V1 = GradAndOut<T, TCodec, TActivation>(g.V1, x.V1, y.V1, out ga.V1, out gb.V1);
            o.V2 = GradAndOut<T, TCodec, TActivation>(g.V2, x.V2, y.V2, out ga.V2, out gb.V2);
            o.V3 = GradAndOut<T, TCodec, TActivation>(g.V3, x.V3, y.V3, out ga.V3, out gb.V3);
            o.V4 = GradAndOut<T, TCodec, TActivation>(g.V4, x.V4, y.V4, out ga.V4, out gb.V4);
            o.V5 = GradAndOut<T, TCodec, TActivation>(g.V5, x.V5, y.V5, out ga.V5, out gb.V5);
            o.V6 = GradAndOut<T, TCodec, TActivation>(g.V6, x.V6, y.V6, out ga.V6, out gb.V6);
            o.V7 = GradAndOut<T, TCodec, TActivation>(g.V7, x.V7, y.V7, out ga.V7, out gb.V7);
            dav[i] = vc.Store(ga);
            dbv[i] = vc.Store(gb);
            if (default(TProduct).Writes)
                dcv[i] = vc.Store(o);
        }
    }

    // ---- scalar: any length ----

    internal static void Forward<T, TCodec, TActivation>(ArrayView<T> a, ArrayView<T> b, ArrayView<T> c, long n)
        where T : unmanaged where TCodec : struct, IElementCodec<T> where TActivation : struct, IGateActivation
    {
        TCodec e = default;
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = (long)Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += stride)
            c[i] = e.Store(Out<T, TCodec, TActivation>(e.Load(a[i]), e.Load(b[i])));
    }

    /// <summary>Scalar form of <see cref="BackwardVectorized{T, TCodec, TVec, TVecCodec, TActivation, TProduct}"/>: each
    /// index is read before it is written.</summary>
    internal static void Backward<T, TCodec, TActivation, TProduct>(
        ArrayView<T> dc, ArrayView<T> a, ArrayView<T> b, ArrayView<T> da, ArrayView<T> db, long n)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TActivation : struct, IGateActivation where TProduct : struct, IProductOutput
    {
        TCodec e = default;
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = (long)Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += stride)
        {
            float c = GradAndOut<T, TCodec, TActivation>(e.Load(dc[i]), e.Load(a[i]), e.Load(b[i]), out float ga, out float gb);
            da[i] = e.Store(ga);
            db[i] = e.Store(gb);
            if (default(TProduct).Writes)
                dc[i] = e.Store(c);
        }
    }
}

/// <summary>Whether a gated backward kernel also writes the recomputed product over dc (a type parameter, so the
/// choice is compiled into each kernel rather than branched on per element).</summary>
internal interface IProductOutput
{
    /// <summary>Writes c over dc.</summary>
    bool Writes { get; }
}

/// <summary>The plain gated backward: dc is left as it was.</summary>
internal readonly struct KeepDc : IProductOutput
{
    /// <inheritdoc/>
    public bool Writes => false;
}

/// <summary>The backward of a gated product that a linear layer did not keep: c is written over dc.</summary>
internal readonly struct ProductOverDc : IProductOutput
{
    /// <inheritdoc/>
    public bool Writes => true;
}
