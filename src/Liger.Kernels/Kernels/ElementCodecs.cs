using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime.Cuda;

namespace Liger.Kernels.Kernels;

/// <summary>
/// Device-side conversion between a stored element type and fp32, the type all kernels compute in.
/// Kernels take the codec as a struct type parameter, so one kernel body serves every dtype.
/// </summary>
internal interface IElementCodec<T> where T : unmanaged
{
    /// <summary>The stored value as fp32 (exact for every supported type).</summary>
    float Load(T value);

    /// <summary>An fp32 value rounded to nearest-even in the stored type.</summary>
    T Store(float value);

    /// <summary>An fp32 value rounded to the stored type's precision, kept as fp32 (models torch's intermediate casts).</summary>
    float Round(float value);
}

/// <summary>float32 tensors.</summary>
internal readonly struct Float32Codec : IElementCodec<float>
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public float Load(float value) => value;
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public float Store(float value) => value;
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public float Round(float value) => value;
}

/// <summary>
/// bfloat16 tensors, carried as the upper 16 bits of an fp32 (ILGPU has no bf16 type). On CUDA the
/// rounding is the hardware conversion (cvt.rn.bf16x2.f32, sm_80 and newer); elsewhere the same
/// round-to-nearest-even in integer arithmetic, as torch does it.
/// </summary>
internal readonly struct BFloat16Codec : IElementCodec<ushort>
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(ushort value) => Interop.IntAsFloat((uint)value << 16);

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ushort Store(float value) => (ushort)(RoundToBits(value) >> 16);

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Round(float value) => Interop.IntAsFloat(RoundToBits(value) & 0xffff0000u);

    /// <summary>Two values rounded and packed: <paramref name="low"/> in bits 0-15, <paramref name="high"/> in 16-31.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Pack(float low, float high)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("cvt.rn.bf16x2.f32 %0, %1, %2;", out uint packed, high, low);
            return packed;
        }
        return (RoundToBits(low) >> 16) | (RoundToBits(high) & 0xffff0000u);
    }

    /// <summary>The fp32 bit pattern of <paramref name="value"/> rounded to bf16 (low 16 bits undefined).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint RoundToBits(float value)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("cvt.rn.bf16x2.f32 %0, %1, %1;", out uint packed, value);
            return packed;
        }
        uint bits = Interop.FloatAsInt(value);
        if ((bits & 0x7fffffffu) > 0x7f800000u)
            return bits | 0x00400000u;                        // NaN stays a (quiet) NaN
        return bits + 0x7fffu + ((bits >> 16) & 1u);          // round to nearest, ties to even
    }
}

/// <summary>
/// float16 tensors, carried as raw bits in a <see cref="ushort"/>. The conversions are integer and fp32
/// arithmetic only, so the GPU and the CPU emulator round identically (ILGPU's own Half conversion on
/// the CPU accelerator does not round to nearest even, so it disagreed with torch there).
/// </summary>
internal readonly struct Float16Codec : IElementCodec<ushort>
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(ushort value)
    {
        uint sign = (uint)(value & 0x8000) << 16;
        uint exponent = (uint)(value >> 10) & 0x1fu;
        uint mantissa = value & 0x3ffu;
        if (exponent == 0)
        {
            // zero or subnormal: mantissa * 2^-24, exact in fp32
            float magnitude = mantissa * 5.9604644775390625e-8f;
            return sign != 0 ? -magnitude : magnitude;
        }
        if (exponent == 31)
            return Interop.IntAsFloat(sign | 0x7f800000u | (mantissa << 13)); // inf or NaN
        return Interop.IntAsFloat(sign | ((exponent + 112u) << 23) | (mantissa << 13));
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ushort Store(float value)
    {
        // Round to nearest even (the method of F. Giesen's float_to_half_fast3_rtne).
        uint bits = Interop.FloatAsInt(value);
        uint sign = (bits >> 16) & 0x8000u;
        bits &= 0x7fffffffu;
        uint half;
        if (bits >= 0x47800000u)                       // >= 65536, inf or NaN
            half = bits > 0x7f800000u ? 0x7e00u : 0x7c00u;
        else if (bits < 0x38800000u)                   // below 2^-14: subnormal or zero
        {
            // Adding 0.5 makes the fp32 adder round the value at the half subnormal's precision.
            float shifted = Interop.IntAsFloat(bits) + 0.5f;
            half = Interop.FloatAsInt(shifted) - 0x3f000000u;
        }
        else
        {
            uint mantissaOdd = (bits >> 13) & 1u;
            bits += 0xc8000fffu + mantissaOdd;             // rebias the exponent (-112 << 23) and round
            half = bits >> 13;
        }
        return (ushort)(half | sign);
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Round(float value) => Load(Store(value));
}
