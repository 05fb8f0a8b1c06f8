using Liger.Kernels.Runtime;
using static TorchSharp.torch;

namespace Liger.Kernels.Ops;

/// <summary>
/// The norms over rows of no feature (H = 0): nothing to normalise, and a (..., 0) tensor cannot be viewed
/// as (-1, 0) rows for the kernels. torch's result is the empty tensor, with autograd giving an empty dx
/// and zero (empty) parameter gradients: the same tensors an elementwise product with the (empty)
/// parameters gives, so that product is returned.
/// </summary>
internal static class EmptyRows
{
    /// <summary>x · weight (+ bias): (..., 0), with autograd to every input.</summary>
    internal static Tensor Normalized(Tensor x, Tensor weight, Tensor? bias = null)
    {
        var scaled = x.mul(weight);
        if (bias is null)
            return scaled;
        using (scaled)
            return scaled.Plus(bias);
    }
}
