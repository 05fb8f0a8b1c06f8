using Liger.Kernels.Kernels;
using Liger.Kernels.Runtime;
using static TorchSharp.torch;

namespace Liger.Kernels.Ops;

/// <summary>
/// gelu(a) * b with the tanh form of GELU, as differentiable function (the gate of GeGLU MLPs: Gemma).
/// Matches torch's gelu(a, approximate: "tanh") * b up to rounding, forward and backward. The forward
/// saves only a and b; the backward recomputes gelu(a) in the kernel.
/// </summary>
public static class LigerGELUMulFunction
{
    /// <summary>Applies gelu_tanh(a) * b elementwise. a and b: same shape, dtype and device, contiguous.</summary>
    /// <param name="a">The gate input (gate_proj's output).</param>
    /// <param name="b">The value input (up_proj's output).</param>
    /// <param name="inPlaceBackward">Write da and db into a's and b's buffers, as Liger-Kernel does: no extra
    /// memory in the backward, but a and b are destroyed, so only for intermediates nothing else reads
    /// (as inside <see cref="Modules.LigerGEGLUMLP"/>).</param>
    public static Tensor Apply(Tensor a, Tensor b, bool inPlaceBackward = false)
    {
        GeGluOp.Validate(a, b);
        return AutogradOutputCache.Release(GeGluAutograd.apply(a, b, inPlaceBackward))[0];
    }
}

/// <summary>The autograd node of <see cref="LigerGELUMulFunction"/>.</summary>
internal sealed class GeGluAutograd : GatedAutograd<GeGluAutograd, GeGluCpu, GeluTanh>
{
    public override string Name => "LigerGELUMulBackward";
}

/// <summary>Host side of GeGLU: argument checks, kernel launches, and the CPU path (all shared with SwiGLU
/// through <see cref="GatedOp{TCpu, TActivation}"/>; GELU itself is <see cref="GeluTanh"/> and <see cref="GeGluCpu"/>).</summary>
internal static class GeGluOp
{
    internal static void Validate(Tensor a, Tensor b) => GatedOp<GeGluCpu, GeluTanh>.Validate(a, b);

    /// <summary>c = gelu_tanh(a) * b.</summary>
    public static Tensor Forward(Tensor a, Tensor b) => GatedOp<GeGluCpu, GeluTanh>.Forward(a, b);

    /// <summary>da, db from dc; written into a and b when <paramref name="inPlace"/>.</summary>
    public static (Tensor Da, Tensor Db) Backward(Tensor dc, Tensor a, Tensor b, bool inPlace) =>
        GatedOp<GeGluCpu, GeluTanh>.Backward(dc, a, b, inPlace);
}
