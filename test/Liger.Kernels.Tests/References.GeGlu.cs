using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>gelu_tanh(a)·b's exact results.</summary>
public sealed record GeGluReference(Tensor C, Tensor Da, Tensor Db);

public static partial class References
{
    /// <summary>sqrt(2/pi) and the cubic coefficient of the tanh form of GELU.</summary>
    private const double GeluBeta = 0.79788456080286535588, GeluKappa = 0.044715;

    /// <summary>
    /// c = gelu_tanh(a) · b, backpropagated from <paramref name="dc"/>, with gelu_tanh(a) written out from
    /// its definition (not torch's gelu kernel) as a · sigmoid(2 sqrt(2/pi) (a + 0.044715 a³)): the same
    /// function as 0.5 a (1 + tanh(·)), without that form's cancellation for negative a.
    /// </summary>
    public static GeGluReference GeGlu(Tensor a, Tensor b, Tensor dc)
    {
        using var scope = NewDisposeScope();
        var a64 = Leaf64(a);
        var b64 = Leaf64(b);
        var c = GeluTanh64(a64) * b64;
        c.backward([dc.detach().cpu().to(ScalarType.Float64)]);
        return new GeGluReference(c.detach().MoveToOuterDisposeScope(), a64.grad!.detach().MoveToOuterDisposeScope(),
            b64.grad!.detach().MoveToOuterDisposeScope());
    }

    /// <summary>gelu_tanh of a float64 tensor, differentiable.</summary>
    public static Tensor GeluTanh64(Tensor a64) => a64 * sigmoid(2 * GeluBeta * (a64 + GeluKappa * a64.pow(3)));

    /// <summary>gelu_tanh'(a) in float64, from its closed form (σ = sigmoid(2u), u = sqrt(2/pi)(a + 0.044715 a³)):
    /// σ + 2a σ (1 − σ) u'.</summary>
    public static Tensor GeluTanhDerivative64(Tensor a64)
    {
        using var scope = NewDisposeScope();
        var u = GeluBeta * (a64 + GeluKappa * a64.pow(3));
        var s = sigmoid(2 * u);
        var du = GeluBeta * (1 + 3 * GeluKappa * a64.square());
        return (s + 2 * a64 * s * sigmoid(-2 * u) * du).MoveToOuterDisposeScope();
    }
}
