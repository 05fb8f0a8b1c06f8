using TorchSharp;

namespace Liger.Kernels.Runtime;

/// <summary>Argument checks that name the argument and say what was expected.</summary>
internal static class TensorChecks
{
    internal static readonly torch.ScalarType[] FloatingTypes =
        [torch.ScalarType.Float32, torch.ScalarType.BFloat16, torch.ScalarType.Float16];

    internal static void NotNull(torch.Tensor? tensor, string name)
    {
        if (tensor is null || tensor.IsInvalid)
            throw new ArgumentNullException(name, $"'{name}' must be a live tensor.");
    }

    internal static void FloatingPoint(torch.Tensor tensor, string name)
    {
        if (Array.IndexOf(FloatingTypes, tensor.dtype) < 0)
            throw new ArgumentException($"'{name}' must be float32, bfloat16 or float16; got {tensor.dtype}.", name);
    }

    internal static void Contiguous(torch.Tensor tensor, string name)
    {
        if (!tensor.is_contiguous())
            throw new ArgumentException($"'{name}' must be contiguous (call .contiguous() first); its strides are [{string.Join(", ", tensor.stride())}].", name);
    }

    internal static void SameDtype(torch.Tensor tensor, string name, torch.Tensor reference, string referenceName)
    {
        if (tensor.dtype != reference.dtype)
            throw new ArgumentException($"'{name}' must have the dtype of '{referenceName}' ({reference.dtype}); got {tensor.dtype}.", name);
    }

    internal static void SameDevice(torch.Tensor tensor, string name, torch.Tensor reference, string referenceName)
    {
        if (tensor.device.type != reference.device.type || tensor.device.index != reference.device.index)
            throw new ArgumentException($"'{name}' must be on the device of '{referenceName}' ({reference.device}); got {tensor.device}.", name);
    }

    internal static void SameShape(torch.Tensor tensor, string name, torch.Tensor reference, string referenceName)
    {
        if (!tensor.shape.SequenceEqual(reference.shape))
            throw new ArgumentException($"'{name}' must have the shape of '{referenceName}' [{string.Join(", ", reference.shape)}]; got [{string.Join(", ", tensor.shape)}].", name);
    }

    internal static void Shape(torch.Tensor tensor, string name, params long[] expected)
    {
        if (!tensor.shape.SequenceEqual(expected))
            throw new ArgumentException($"'{name}' must have shape [{string.Join(", ", expected)}]; got [{string.Join(", ", tensor.shape)}].", name);
    }

    internal static void AtLeastOneDim(torch.Tensor tensor, string name)
    {
        if (tensor.dim() < 1)
            throw new ArgumentException($"'{name}' must have at least one dimension; got a scalar.", name);
    }

    internal static void Finite(double value, string name, double min = double.NegativeInfinity)
    {
        if (!double.IsFinite(value) || value < min)
            throw new ArgumentOutOfRangeException(name, value, $"'{name}' must be finite and at least {min}.");
    }
}
