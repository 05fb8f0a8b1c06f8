using System.Runtime.CompilerServices;

namespace Liger.Kernels.Kernels;

/// <summary>
/// GeGLU's gate (Gemma's MLP): the tanh form of GELU, gelu(a) = 0.5 a (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3))),
/// with torch's operation order in the forward and in its backward, so the kernels
/// (<see cref="GatedKernels"/> specialised for it) match torch's gelu(a, approximate: tanh) up to the
/// rounding of tanh itself (<see cref="DeviceMath.Tanh"/>).
/// </summary>
internal readonly struct GeluTanh : IGateActivation
{
    /// <summary>sqrt(2/pi), as torch's M_SQRT2 * M_2_SQRTPI * 0.5 rounded to fp32.</summary>
    private const float Beta = 0.7978845608028654f;
    private const float Kappa = 0.044715f;

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Value(float a)
    {
        float inner = Beta * (a + Kappa * (a * a * a));
        return 0.5f * a * (1f + DeviceMath.Tanh(inner));
    }

    /// <summary>
    /// gelu'(a) = 0.5 (1 + t) + 0.5 a (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 a^2) with t = tanh(inner),
    /// term by term as torch's gelu backward. 1 - t^2 is not refactored as (1 - t)(1 + t): torch's
    /// rounding, not a more accurate one, is the target.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Derivative(float a, out float value)
    {
        float square = a * a;
        float inner = Beta * (a + Kappa * (square * a));
        float t = DeviceMath.Tanh(inner);
        float left = 0.5f * a;
        float right = 1f + t;
        value = left * right;
        float innerDerivative = Beta * (1f + 3f * Kappa * square);
        return 0.5f * right + left * (1f - t * t) * innerDerivative;
    }
}
