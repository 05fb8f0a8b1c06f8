using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>LayerNorm's exact results: output and the gradients of every input.</summary>
/// <param name="Y">Output.</param>
/// <param name="Dx">Gradient of x.</param>
/// <param name="Dw">Gradient of the weight.</param>
/// <param name="Db">Gradient of the bias (computed whether or not the op under test has one: it is Σ dy).</param>
/// <param name="DxScale">rstd·dy·w, the size of the terms dx cancels (dx = rstd·(w·dy − mean(w·dy) − xhat·mean(w·dy·xhat))).</param>
/// <param name="DwScale">Per feature, sqrt(Σ_rows (dy·xhat)²): the rounding error of a sum of rounded terms.</param>
/// <param name="DwTerms">Per feature, Σ_rows |dy·xhat|.</param>
/// <param name="DbScale">Per feature, sqrt(Σ_rows dy²).</param>
/// <param name="DbTerms">Per feature, Σ_rows |dy|.</param>
public sealed record LayerNormReference(Tensor Y, Tensor Dx, Tensor Dw, Tensor Db, Tensor DxScale, Tensor DwScale,
    Tensor DwTerms, Tensor DbScale, Tensor DbTerms);

public static partial class References
{
    /// <summary>
    /// y = (x − mean) / sqrt(var + eps) · w (+ b) over the last dimension, the variance biased (divided by H),
    /// as the textbook formula in float64 (not torch's layer_norm), backpropagated from <paramref name="dy"/>.
    /// </summary>
    public static LayerNormReference LayerNorm(Tensor x, Tensor weight, Tensor? bias, Tensor dy, double eps)
    {
        using var scope = NewDisposeScope();
        var x64 = Leaf64(x);
        var w64 = Leaf64(weight);
        var b64 = bias is null ? zeros(weight.shape, ScalarType.Float64).requires_grad_(true) : Leaf64(bias);
        var dy64 = dy.detach().cpu().to(ScalarType.Float64);
        var centered = x64 - x64.mean([-1L], keepdim: true);
        var rstd = rsqrt(centered.Squared().mean([-1L], keepdim: true).Plus(eps));
        var xhat = centered * rstd;
        var y = (xhat * w64).Plus(b64);
        y.backward([dy64]);
        long features = x.shape[^1];
        var dwTerms = (dy64 * xhat).detach().reshape(-1, features);
        var dbTerms = dy64.reshape(-1, features);
        return new LayerNormReference(
            y.detach().MoveToOuterDisposeScope(),
            x64.grad!.detach().MoveToOuterDisposeScope(),
            w64.grad!.detach().MoveToOuterDisposeScope(),
            b64.grad!.detach().MoveToOuterDisposeScope(),
            (rstd * dy64 * w64).detach().MoveToOuterDisposeScope(),
            dwTerms.Squared().sum([0L]).sqrt().MoveToOuterDisposeScope(),
            dwTerms.abs().sum([0L]).MoveToOuterDisposeScope(),
            dbTerms.Squared().sum([0L]).sqrt().MoveToOuterDisposeScope(),
            dbTerms.abs().sum([0L]).MoveToOuterDisposeScope());
    }
}
