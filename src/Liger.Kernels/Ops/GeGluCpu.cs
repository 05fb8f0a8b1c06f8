using System.Numerics.Tensors;
using TorchSharp.Modules;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace Liger.Kernels.Ops;

/// <summary>
/// GeGLU's activation on the CPU: gelu(a) = 0.5 a (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3))) and torch's
/// derivative of it, operation by operation as torch's CPU kernels order them (tanh is
/// System.Numerics.Tensors', within an ulp or two of torch's). Built from torch ops the backward would
/// recompute gelu and pay four tensor passes to eager's three; fused in <see cref="GatedCpu"/> it reads
/// each input once.
/// </summary>
internal readonly struct GeGluCpu : IGatedCpuActivation
{
    private const float Beta = 0.7978845608028654f, Kappa = 0.044715f;

    public static string Op => "gelu_mul";

    public static Tensor Torch(Tensor a) => nn.functional.gelu(a, GELU.Approximate.tanh);

    public static void Value(ReadOnlySpan<float> a, Span<float> value, Span<float> scratch)
    {
        Tanh(a, square: scratch, tanh: scratch);
        TensorPrimitives.Add(scratch, 1f, scratch);              // 1 + t
        TensorPrimitives.Multiply(a, 0.5f, value);
        TensorPrimitives.Multiply(value, scratch, value);        // 0.5 a (1 + t)
    }

    /// <summary>gelu'(a) = 0.5 (1 + t) + 0.5 a (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 a^2), term by term as torch's.</summary>
    public static void ValueAndDerivative(ReadOnlySpan<float> a, Span<float> value, Span<float> derivative, Span<float> scratch)
    {
        Tanh(a, square: derivative, tanh: scratch);
        TensorPrimitives.Multiply(derivative, 3f * Kappa, derivative);
        TensorPrimitives.Add(derivative, 1f, derivative);
        TensorPrimitives.Multiply(derivative, Beta, derivative);     // inner'
        TensorPrimitives.Multiply(scratch, scratch, value);
        TensorPrimitives.Subtract(1f, value, value);                 // 1 - t^2
        // (0.5 a)(1 - t^2) as torch, with the exact halving last: the same number.
        TensorPrimitives.Multiply(value, a, value);
        TensorPrimitives.Multiply(value, 0.5f, value);
        TensorPrimitives.Multiply(value, derivative, derivative);    // 0.5 a (1 - t^2) inner'
        TensorPrimitives.Add(scratch, 1f, scratch);                  // 1 + t
        TensorPrimitives.MultiplyAdd(scratch, 0.5f, derivative, derivative);
        TensorPrimitives.Multiply(a, 0.5f, value);
        TensorPrimitives.Multiply(value, scratch, value);            // 0.5 a (1 + t)
    }

    /// <summary>t = tanh(sqrt(2/pi) (a + 0.044715 a^3)), a^3 as (a a) a; leaves a^2 in <paramref name="square"/>
    /// (which may be <paramref name="tanh"/>, when a^2 is not needed).</summary>
    private static void Tanh(ReadOnlySpan<float> a, Span<float> square, Span<float> tanh)
    {
        TensorPrimitives.Multiply(a, a, square);
        TensorPrimitives.Multiply(square, a, tanh);
        TensorPrimitives.MultiplyAdd(tanh, Kappa, a, tanh);          // a + 0.044715 a^3
        TensorPrimitives.Multiply(tanh, Beta, tanh);
        TensorPrimitives.Tanh(tanh, tanh);
    }
}
