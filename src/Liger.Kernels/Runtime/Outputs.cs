using TorchSharp;

namespace Liger.Kernels.Runtime;

/// <summary>Allocation of op outputs, with optional poisoning so tests can prove every element is written.</summary>
internal static class Outputs
{
    /// <summary>
    /// When set, every output an op allocates for a kernel is filled with NaN before the kernel runs, so
    /// an element the kernel fails to write shows up in the result. For tests; costs a fill per output.
    /// </summary>
    internal static bool Poison { get; set; } =
        Environment.GetEnvironmentVariable("LIGER_POISON_OUTPUTS") == "1";

    internal static torch.Tensor Empty(long[] shape, torch.ScalarType dtype, torch.Device device)
    {
        var tensor = torch.empty(shape, dtype: dtype, device: device);
        if (Poison)
            tensor.FillInPlace(double.NaN);
        return tensor;
    }

    internal static torch.Tensor EmptyLike(torch.Tensor like) => Empty(like.shape, like.dtype, like.device);
}
