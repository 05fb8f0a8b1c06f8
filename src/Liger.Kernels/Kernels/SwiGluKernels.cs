using System.Runtime.CompilerServices;

namespace Liger.Kernels.Kernels;

/// <summary>
/// SwiGLU's gate, silu(a) = a / (1 + e^-a), as torch computes it; the kernels are
/// <see cref="GatedKernels"/> specialised for it.
/// </summary>
internal readonly struct SiLU : IGateActivation
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Value(float a) => a / (1f + DeviceMath.Exp(-a));

    /// <summary>silu'(a) = sig(a) * (1 + a * (1 - sig(a))), as torch's silu backward.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Derivative(float a, out float value)
    {
        float denominator = 1f + DeviceMath.Exp(-a);
        value = a / denominator;
        float sig = 1f / denominator;
        return sig * (1f + a * (1f - sig));
    }
}
