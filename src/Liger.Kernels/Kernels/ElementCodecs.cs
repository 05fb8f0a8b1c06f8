using System.Runtime.CompilerServices;
using ILGPU;

namespace Liger.Kernels.Kernels;

/// <summary>
/// Device-side conversion between a stored element type and fp32, the type all kernels compute in.
/// Kernels take the codec as a struct type parameter, so one kernel body serves every dtype.
/// </summary>
public interface IElementCodec<T> where T : unmanaged
{
    /// <summary>The stored value as fp32 (exact for every supported type).</summary>
    float Load(T value);

    /// <summary>An fp32 value rounded to nearest-even in the stored type.</summary>
    T Store(float value);

    /// <summary>An fp32 value rounded to the stored type's precision, kept as fp32 (models torch's intermediate casts).</summary>
    float Round(float value);
}

/// <summary>float32 tensors.</summary>
public readonly struct Float32Codec : IElementCodec<float>
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public float Load(float value) => value;
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public float Store(float value) => value;
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public float Round(float value) => value;
}

/// <summary>bfloat16 tensors, carried as the upper 16 bits of an fp32 (ILGPU has no bf16 type).</summary>
public readonly struct BFloat16Codec : IElementCodec<ushort>
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(ushort value) => Interop.IntAsFloat((uint)value << 16);

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ushort Store(float value)
    {
        uint bits = Interop.FloatAsInt(value);
        if ((bits & 0x7fffffffu) > 0x7f800000u)
            return (ushort)((bits >> 16) | 0x40u); // NaN stays a (quiet) NaN
        bits += 0x7fffu + ((bits >> 16) & 1u);     // round to nearest, ties to even, as torch does
        return (ushort)(bits >> 16);
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Round(float value) => Load(Store(value));
}

/// <summary>float16 tensors, through <see cref="ILGPU.Half"/>.</summary>
public readonly struct Float16Codec : IElementCodec<ILGPU.Half>
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public float Load(ILGPU.Half value) => value;
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public ILGPU.Half Store(float value) => (ILGPU.Half)value;
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public float Round(float value) => (ILGPU.Half)value;
}
