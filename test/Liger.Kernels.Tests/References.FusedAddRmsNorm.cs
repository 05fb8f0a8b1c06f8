using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>Fused add + RMSNorm's exact results: both outputs and the gradients of every input.</summary>
/// <param name="Y">RMSNorm(residual + x).</param>
/// <param name="H">residual + x.</param>
/// <param name="Dx">Gradient of x.</param>
/// <param name="Dresidual">Gradient of the residual (equal to <paramref name="Dx"/> in exact arithmetic; computed on its own).</param>
/// <param name="Dw">Gradient of the weight.</param>
/// <param name="DxScale">Elementwise sqrt((rstd·dy·(offset + w))² + dh²): the size of the terms dx is made of
/// (RMSNorm's cancelling terms, plus the gradient that reached h directly).</param>
/// <param name="DwScale">Per feature, sqrt(Σ_rows (dy·h·rstd)²).</param>
/// <param name="DwTerms">Per feature, Σ_rows |dy·h·rstd|.</param>
public sealed record FusedAddRmsNormReference(Tensor Y, Tensor H, Tensor Dx, Tensor Dresidual, Tensor Dw, Tensor DxScale,
    Tensor DwScale, Tensor DwTerms);

public static partial class References
{
    /// <summary>
    /// h = x + residual, y = h · rsqrt(mean(h², -1) + eps) · (offset + w) in float64 (h not rounded), backpropagated
    /// from <paramref name="dy"/> into y and from <paramref name="dh"/> (when given) into h.
    /// </summary>
    public static FusedAddRmsNormReference FusedAddRmsNorm(Tensor x, Tensor residual, Tensor weight, Tensor dy, Tensor? dh,
        double eps, double offset)
    {
        using var scope = NewDisposeScope();
        var x64 = Leaf64(x);
        var r64 = Leaf64(residual);
        var w64 = Leaf64(weight);
        var dy64 = dy.detach().cpu().to(ScalarType.Float64);
        var h = x64.Plus(r64);
        var rstd = rsqrt(h.Squared().mean([-1L], keepdim: true).Plus(eps));
        var y = h * rstd * (w64.Plus(offset));
        if (dh is null)
            y.backward([dy64]);
        else
            autograd.backward([y, h], [dy64, dh.detach().cpu().to(ScalarType.Float64)]);
        var normTerms = (rstd * dy64 * (w64.Plus(offset))).detach();
        var dxScale = dh is null ? normTerms : (normTerms.Squared().Plus(dh.detach().cpu().to(ScalarType.Float64).Squared())).sqrt();
        long features = x.shape[^1];
        var dwTerms = (dy64 * h * rstd).detach().reshape(-1, features);
        return new FusedAddRmsNormReference(
            y.detach().MoveToOuterDisposeScope(),
            h.detach().MoveToOuterDisposeScope(),
            x64.grad!.detach().MoveToOuterDisposeScope(),
            r64.grad!.detach().MoveToOuterDisposeScope(),
            w64.grad!.detach().MoveToOuterDisposeScope(),
            dxScale.MoveToOuterDisposeScope(),
            dwTerms.Squared().sum([0L]).sqrt().MoveToOuterDisposeScope(),
            dwTerms.abs().sum([0L]).MoveToOuterDisposeScope());
    }
}
