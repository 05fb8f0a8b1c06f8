using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ILGPU;

namespace Liger.Kernels.Kernels;

/// <summary>Eight fp32 lanes: the compute type of vectorised kernels, and the storage of 8 float32 (32 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct Float8
{
#pragma warning disable CS1591 // lanes
    public float V0, V1, V2, V3, V4, V5, V6, V7;
#pragma warning restore CS1591

    /// <summary>Sum of the lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly float Sum() => V0 + V1 + V2 + V3 + V4 + V5 + V6 + V7;

    /// <summary>Sum of the lanes' squares.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly float SumSquares() =>
        V0 * V0 + V1 * V1 + V2 * V2 + V3 * V3 + V4 * V4 + V5 * V5 + V6 * V6 + V7 * V7;

    /// <summary>Dot product with another eight lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly float Dot(Float8 o) =>
        V0 * o.V0 + V1 * o.V1 + V2 * o.V2 + V3 * o.V3 + V4 * o.V4 + V5 * o.V5 + V6 * o.V6 + V7 * o.V7;
}

/// <summary>Eight bfloat16 values in 16 bytes (one vector load), two per 32-bit word, low half first.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct BFloat16x8
{
#pragma warning disable CS1591 // packed pairs
    public uint P0, P1, P2, P3;
#pragma warning restore CS1591
}

/// <summary>Conversion between a packed 8-element vector and <see cref="Float8"/>.</summary>
internal interface IVectorCodec<TVec> where TVec : unmanaged
{
    /// <summary>Unpacks eight values to fp32.</summary>
    Float8 Load(TVec packed);

    /// <summary>Packs eight fp32 values, rounding to nearest even.</summary>
    TVec Store(Float8 values);
}

/// <summary>float32: eight values are already a <see cref="Float8"/> (two 16-byte loads).</summary>
internal readonly struct Float32x8Codec : IVectorCodec<Float8>
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public Float8 Load(Float8 packed) => packed;
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public Float8 Store(Float8 values) => values;
}

/// <summary>bfloat16: a bf16 is the upper half of an fp32, so unpacking is a shift or a mask.</summary>
internal readonly struct BFloat16x8Codec : IVectorCodec<BFloat16x8>
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load(BFloat16x8 p)
    {
        Float8 f;
        f.V0 = Interop.IntAsFloat(p.P0 << 16); f.V1 = Interop.IntAsFloat(p.P0 & 0xffff0000u);
        f.V2 = Interop.IntAsFloat(p.P1 << 16); f.V3 = Interop.IntAsFloat(p.P1 & 0xffff0000u);
        f.V4 = Interop.IntAsFloat(p.P2 << 16); f.V5 = Interop.IntAsFloat(p.P2 & 0xffff0000u);
        f.V6 = Interop.IntAsFloat(p.P3 << 16); f.V7 = Interop.IntAsFloat(p.P3 & 0xffff0000u);
        return f;
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public BFloat16x8 Store(Float8 f)
    {
        BFloat16x8 p;
        p.P0 = BFloat16Codec.Pack(f.V0, f.V1);
        p.P1 = BFloat16Codec.Pack(f.V2, f.V3);
        p.P2 = BFloat16Codec.Pack(f.V4, f.V5);
        p.P3 = BFloat16Codec.Pack(f.V6, f.V7);
        return p;
    }
}
