using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

public static partial class References
{
    /// <summary>sqrt(2/pi) and the cubic coefficient of the tanh form of GELU.</summary>
    private const double GeluBeta = 0.79788456080286535588, GeluKappa = 0.044715;

    /// <summary>
    /// c = gelu_tanh(a) · b, backpropagated from <paramref name="dc"/>, with gelu_tanh(a) written out from
    /// its definition (not torch's gelu kernel) as a · sigmoid(2 sqrt(2/pi) (a + 0.044715 a³)): the same
    /// function as 0.5 a (1 + tanh(·)), without that form's cancellation for negative a.
    /// </summary>
    public static GatedReference GeGlu(Tensor a, Tensor b, Tensor dc)
    {
        using var scope = NewDisposeScope();
        var a64 = Leaf64(a);
        var b64 = Leaf64(b);
        var c = GeluTanh64(a64) * b64;
        c.backward([dc.detach().cpu().to(ScalarType.Float64)]);
        return new GatedReference(c.detach().MoveToOuterDisposeScope(), a64.grad!.detach().MoveToOuterDisposeScope(),
            b64.grad!.detach().MoveToOuterDisposeScope());
    }

    /// <summary>gelu_tanh of a float64 tensor, differentiable.</summary>
    public static Tensor GeluTanh64(Tensor a64) => a64 * sigmoid(a64.Plus(a64.Power(3).Times(GeluKappa)).Times(2 * GeluBeta));

    /// <summary>gelu_tanh'(a) in float64, from its closed form (σ = sigmoid(2u), u = sqrt(2/pi)(a + 0.044715 a³)):
    /// σ + 2a σ (1 − σ) u'.</summary>
    public static Tensor GeluTanhDerivative64(Tensor a64)
    {
        using var scope = NewDisposeScope();
        var u = (a64.Plus(a64.Power(3).Times(GeluKappa))).Times(GeluBeta);
        var s = sigmoid(u.Times(2));
        var du = a64.Squared().Times(3 * GeluKappa).Plus(1).Times(GeluBeta);
        return (s.Plus(a64.Times(2) * s * sigmoid(u.Times(-2)) * du)).MoveToOuterDisposeScope();
    }
}
