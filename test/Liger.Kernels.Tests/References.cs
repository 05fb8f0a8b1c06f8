using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>RMSNorm's exact results: output and the gradients of both inputs.</summary>
/// <param name="Y">Output.</param>
/// <param name="Dx">Gradient of x.</param>
/// <param name="Dw">Gradient of the weight.</param>
/// <param name="DxScale">rstd·dy·(offset + w), the size of the terms dx cancels (for tolerances).</param>
/// <param name="DwScale">Per feature, sqrt(Σ_rows (dy·x·rstd)²): the size of the rounding error of a sum over
/// rows of rounded terms, which a sum over few rows that cancels can exceed relative to dW itself.</param>
/// <param name="DwTerms">Per feature, Σ_rows |dy·x·rstd|: a rounding flip in any one term (an intermediate that
/// two implementations round differently at a tie) moves dW by a few ulps of that term, not of dW.</param>
public sealed record RmsNormReference(Tensor Y, Tensor Dx, Tensor Dw, Tensor DxScale, Tensor DwScale, Tensor DwTerms);

/// <summary>silu(a)·b's exact results.</summary>
public sealed record GatedReference(Tensor C, Tensor Da, Tensor Db);

/// <summary>
/// Independent eager references in float64 on the CPU: the inputs are upcast to float64 and the result
/// and gradients come from plain TorchSharp ops and autograd, sharing no code with the ops under test.
/// </summary>
public static partial class References
{
    /// <summary>y = x · rsqrt(mean(x², -1) + eps) · (offset + w), backpropagated from <paramref name="dy"/>.</summary>
    public static RmsNormReference RmsNorm(Tensor x, Tensor weight, Tensor dy, double eps, double offset)
    {
        using var scope = NewDisposeScope();
        var x64 = Leaf64(x);
        var w64 = Leaf64(weight);
        var dy64 = dy.detach().cpu().to(ScalarType.Float64);
        var rstd = rsqrt(x64.Squared().mean([-1L], keepdim: true).Plus(eps));
        var y = x64 * rstd * (w64.Plus(offset));
        y.backward([dy64]);
        var dxScale = (rstd * dy64 * (w64.Plus(offset))).detach();
        long features = x.shape[^1];
        var dwTerms = (dy64 * x64 * rstd).detach().reshape(-1, features);
        var dwScale = dwTerms.Squared().sum([0L]).sqrt();
        var dwAbs = dwTerms.abs().sum([0L]);
        return new RmsNormReference(y.detach().MoveToOuterDisposeScope(), x64.grad!.detach().MoveToOuterDisposeScope(),
            w64.grad!.detach().MoveToOuterDisposeScope(), dxScale.MoveToOuterDisposeScope(), dwScale.MoveToOuterDisposeScope(),
            dwAbs.MoveToOuterDisposeScope());
    }

    /// <summary>c = silu(a) · b, backpropagated from <paramref name="dc"/>.</summary>
    public static GatedReference SwiGlu(Tensor a, Tensor b, Tensor dc)
    {
        using var scope = NewDisposeScope();
        var a64 = Leaf64(a);
        var b64 = Leaf64(b);
        var c = nn.functional.silu(a64) * b64;
        c.backward([dc.detach().cpu().to(ScalarType.Float64)]);
        return new GatedReference(c.detach().MoveToOuterDisposeScope(), a64.grad!.detach().MoveToOuterDisposeScope(),
            b64.grad!.detach().MoveToOuterDisposeScope());
    }

    private static Tensor Leaf64(Tensor t) => t.detach().cpu().to(ScalarType.Float64).requires_grad_(true);
}
