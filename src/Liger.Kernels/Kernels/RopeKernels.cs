using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Liger.Kernels.Kernels;

/// <summary>
/// Shape and strides of one RoPE launch. Strides are in the view's units (elements for the scalar
/// kernel, 8-element vectors for the vectorised one); a dimension of size 1 has stride 0. Public only
/// because ILGPU's CPU backend builds types that take it as a kernel argument.
/// </summary>
internal struct RopeLayout
{
    /// <summary>batch × sequence: the rows the grid strides over.</summary>
    public long Rows;
    /// <summary>Sequence length T.</summary>
    public int Seq;
    /// <summary>1 (one cos row per position, shared by the batch) or the batch size.</summary>
    public int CosBatch;
    /// <summary>Heads of q and of k (either may be 0: its gradient took no part in the loss).</summary>
    public int QHeads, KHeads;
    /// <summary>Units in each half of the rotated dimensions (cos/sin rows hold two halves).</summary>
    public int Half;
#pragma warning disable CS1591 // strides of q in, q out, k in, k out over (batch, head, position)
    public long QInB, QInH, QInT, QOutB, QOutH, QOutT;
    public long KInB, KInH, KInT, KOutB, KOutH, KOutT;
#pragma warning restore CS1591
}

/// <summary>
/// RoPE device code in Hugging Face's rotate-half convention, for q (B, Hq, T, D) and k (B, Hkv, T, D)
/// at any strides over (batch, head, position) with head_dim contiguous, so the transposed view
/// q_proj(x).view(B, T, H, D).transpose(1, 2) is read and written where it lies. The first R dims of a
/// head rotate (R = cos/sin's last dim, the rest pass through untouched):
/// <code>
///   forward   y1 = x1·c1 − x2·s1     y2 = x2·c2 + x1·s2
///   backward  y1 = x1·c1 + x2·s2     y2 = x2·c2 − x1·s1   (the transpose: the rotation by −θ)
/// </code>
/// with c1, c2 (s1, s2) the two halves of the full-width cos (sin) row, used as given. Each product is
/// rounded to the tensor dtype before the sum, as eager torch rounds q·cos and rotate_half(q)·sin.
/// A thread owns one slice j of the half for a (b, t) row and walks the heads of q then k, so its cos
/// and sin values are loaded once per row and reused across all heads. out may alias in (in place):
/// every element is read by the thread that writes it, before it writes it.
/// </summary>
internal static class RopeKernels
{
    /// <summary>One output lane: round(x·c) + round(other·a), where a is ±sin (see the class summary).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Lane<TCodec, T>(TCodec codec, float x, float c, float other, float a)
        where T : unmanaged where TCodec : struct, IElementCodec<T> =>
        codec.Round(Multiply(x, c)) + codec.Round(Multiply(other, a));

    /// <summary>
    /// a·b rounded on its own. A plain PTX mul.f32 followed by add.f32 may be contracted by ptxas into one
    /// fma, which rounds once where eager torch (separate mul and add kernels) rounds twice: in float32
    /// that would change results. mul.rn is never contracted.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Multiply(float a, float b)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("mul.rn.f32 %0, %1, %2;", out float product, a, b);
            return product;
        }
        return a * b;
    }

    /// <summary>
    /// The sin factors of the two output halves: forward (−s1, s2), backward (s2, −s1). Negation is
    /// exact, so round(x2·(−s1)) = −round(x2·s1), the eager value of rotate_half(x)·sin.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SinFactors(float s1, float s2, bool backward, out float first, out float second)
    {
        first = backward ? s2 : -s1;
        second = backward ? -s1 : s2;
    }

    // ---- vectorised: 8 elements of each half per thread and head ----

    internal static void RotateVectorized<T, TCodec, TVec, TVecCodec>(
        ArrayView<TVec> qIn, ArrayView<TVec> qOut, ArrayView<TVec> kIn, ArrayView<TVec> kOut,
        ArrayView<TVec> cos, ArrayView<TVec> sin, RopeLayout layout, int backward)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        TVecCodec vc = default;
        var (cs, ss) = (cos.AsAligned(16), sin.AsAligned(16));
        int half = layout.Half;
        int items = (layout.QHeads + layout.KHeads) * half;
        bool back = backward != 0;
        for (long row = Grid.IdxX; row < layout.Rows; row += Grid.DimX)
        {
            long b = row / layout.Seq;
            long t = row - b * layout.Seq;
            long cosRow = ((layout.CosBatch == 1 ? 0 : b) * layout.Seq + t) * 2 * half;
            int loaded = -1;
            Float8 c1 = default, c2 = default, a1 = default, a2 = default;
            for (int item = Group.IdxX; item < items; item += Group.DimX)
            {
                int h = item / half;
                int j = item - h * half;
                if (j != loaded)
                {
                    // The group size is a multiple of the half wherever the half fits in a group, so
                    // this runs once per row: the row's cos and sin serve every head.
                    loaded = j;
                    c1 = vc.Load(cs[cosRow + j]);
                    c2 = vc.Load(cs[cosRow + half + j]);
                    Float8 s1 = vc.Load(ss[cosRow + j]), s2 = vc.Load(ss[cosRow + half + j]);
                    SinFactors8(s1, s2, back, out a1, out a2);
                }
                if (h < layout.QHeads)
                    RotateChunk<T, TCodec, TVec, TVecCodec>(qIn.AsAligned(16), qOut.AsAligned(16),
                        b * layout.QInB + h * layout.QInH + t * layout.QInT + j,
                        b * layout.QOutB + h * layout.QOutH + t * layout.QOutT + j, half, c1, c2, a1, a2);
                else
                {
                    long kh = h - layout.QHeads;
                    RotateChunk<T, TCodec, TVec, TVecCodec>(kIn.AsAligned(16), kOut.AsAligned(16),
                        b * layout.KInB + kh * layout.KInH + t * layout.KInT + j,
                        b * layout.KOutB + kh * layout.KOutH + t * layout.KOutT + j, half, c1, c2, a1, a2);
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SinFactors8(Float8 s1, Float8 s2, bool backward, out Float8 first, out Float8 second)
    {
        SinFactors(s1.V0, s2.V0, backward, out first.V0, out second.V0);
        SinFactors(s1.V1, s2.V1, backward, out first.V1, out second.V1);
        SinFactors(s1.V2, s2.V2, backward, out first.V2, out second.V2);
        SinFactors(s1.V3, s2.V3, backward, out first.V3, out second.V3);
        SinFactors(s1.V4, s2.V4, backward, out first.V4, out second.V4);
        SinFactors(s1.V5, s2.V5, backward, out first.V5, out second.V5);
        SinFactors(s1.V6, s2.V6, backward, out first.V6, out second.V6);
        SinFactors(s1.V7, s2.V7, backward, out first.V7, out second.V7);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RotateChunk<T, TCodec, TVec, TVecCodec>(ArrayView<TVec> input, ArrayView<TVec> output,
        long inAt, long outAt, int half, Float8 c1, Float8 c2, Float8 a1, Float8 a2)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        TCodec e = default;
        TVecCodec vc = default;
        Float8 x1 = vc.Load(input[inAt]), x2 = vc.Load(input[inAt + half]), y1, y2;
        y1.V0 = Lane<TCodec, T>(e, x1.V0, c1.V0, x2.V0, a1.V0); y2.V0 = Lane<TCodec, T>(e, x2.V0, c2.V0, x1.V0, a2.V0);
        y1.V1 = Lane<TCodec, T>(e, x1.V1, c1.V1, x2.V1, a1.V1); y2.V1 = Lane<TCodec, T>(e, x2.V1, c2.V1, x1.V1, a2.V1);
        y1.V2 = Lane<TCodec, T>(e, x1.V2, c1.V2, x2.V2, a1.V2); y2.V2 = Lane<TCodec, T>(e, x2.V2, c2.V2, x1.V2, a2.V2);
        y1.V3 = Lane<TCodec, T>(e, x1.V3, c1.V3, x2.V3, a1.V3); y2.V3 = Lane<TCodec, T>(e, x2.V3, c2.V3, x1.V3, a2.V3);
        y1.V4 = Lane<TCodec, T>(e, x1.V4, c1.V4, x2.V4, a1.V4); y2.V4 = Lane<TCodec, T>(e, x2.V4, c2.V4, x1.V4, a2.V4);
        y1.V5 = Lane<TCodec, T>(e, x1.V5, c1.V5, x2.V5, a1.V5); y2.V5 = Lane<TCodec, T>(e, x2.V5, c2.V5, x1.V5, a2.V5);
        y1.V6 = Lane<TCodec, T>(e, x1.V6, c1.V6, x2.V6, a1.V6); y2.V6 = Lane<TCodec, T>(e, x2.V6, c2.V6, x1.V6, a2.V6);
        y1.V7 = Lane<TCodec, T>(e, x1.V7, c1.V7, x2.V7, a1.V7); y2.V7 = Lane<TCodec, T>(e, x2.V7, c2.V7, x1.V7, a2.V7);
        output[outAt] = vc.Store(y1);
        output[outAt + half] = vc.Store(y2);
    }

    // ---- scalar: any even rotary dim, any alignment ----

    internal static void Rotate<T, TCodec>(
        ArrayView<T> qIn, ArrayView<T> qOut, ArrayView<T> kIn, ArrayView<T> kOut,
        ArrayView<T> cos, ArrayView<T> sin, RopeLayout layout, int backward)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        TCodec e = default;
        int half = layout.Half;
        int items = (layout.QHeads + layout.KHeads) * half;
        bool back = backward != 0;
        for (long row = Grid.IdxX; row < layout.Rows; row += Grid.DimX)
        {
            long b = row / layout.Seq;
            long t = row - b * layout.Seq;
            long cosRow = ((layout.CosBatch == 1 ? 0 : b) * layout.Seq + t) * 2 * half;
            int loaded = -1;
            float c1 = 0f, c2 = 0f, a1 = 0f, a2 = 0f;
            for (int item = Group.IdxX; item < items; item += Group.DimX)
            {
                int h = item / half;
                int j = item - h * half;
                if (j != loaded)
                {
                    loaded = j;
                    c1 = e.Load(cos[cosRow + j]);
                    c2 = e.Load(cos[cosRow + half + j]);
                    SinFactors(e.Load(sin[cosRow + j]), e.Load(sin[cosRow + half + j]), back, out a1, out a2);
                }
                if (h < layout.QHeads)
                    RotatePair<T, TCodec>(qIn, qOut,
                        b * layout.QInB + h * layout.QInH + t * layout.QInT + j,
                        b * layout.QOutB + h * layout.QOutH + t * layout.QOutT + j, half, c1, c2, a1, a2);
                else
                {
                    long kh = h - layout.QHeads;
                    RotatePair<T, TCodec>(kIn, kOut,
                        b * layout.KInB + kh * layout.KInH + t * layout.KInT + j,
                        b * layout.KOutB + kh * layout.KOutH + t * layout.KOutT + j, half, c1, c2, a1, a2);
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RotatePair<T, TCodec>(ArrayView<T> input, ArrayView<T> output, long inAt, long outAt, int half,
        float c1, float c2, float a1, float a2)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        TCodec e = default;
        float x1 = e.Load(input[inAt]), x2 = e.Load(input[inAt + half]);
        output[outAt] = e.Store(Lane<TCodec, T>(e, x1, c1, x2, a1));
        output[outAt + half] = e.Store(Lane<TCodec, T>(e, x2, c2, x1, a2));
    }
}
