using Liger.Kernels.Kernels;
using Liger.Kernels.Runtime;
using static TorchSharp.torch;

namespace Liger.Kernels.Ops;

/// <summary>
/// silu(a) * b as a differentiable function (the gate of SwiGLU MLPs). The forward saves only a and b;
/// the backward recomputes silu(a) in the kernel.
/// </summary>
public static class LigerSiLUMulFunction
{
    /// <summary>Applies silu(a) * b elementwise. a and b: same shape, dtype and device, contiguous.</summary>
    /// <param name="a">The gate input (gate_proj's output).</param>
    /// <param name="b">The value input (up_proj's output).</param>
    /// <param name="inPlaceBackward">Write da and db into a's and b's buffers, as Liger-Kernel does: no extra
    /// memory in the backward, but a and b are destroyed, so only for intermediates nothing else reads
    /// (as inside <see cref="Modules.LigerSwiGLUMLP"/>).</param>
    public static Tensor Apply(Tensor a, Tensor b, bool inPlaceBackward = false)
    {
        SwiGluOp.Validate(a, b);
        return AutogradOutputCache.Release(SwiGluAutograd.apply(a, b, inPlaceBackward))[0];
    }
}

/// <summary>The autograd node of <see cref="LigerSiLUMulFunction"/>.</summary>
internal sealed class SwiGluAutograd : GatedAutograd<SwiGluAutograd, SwiGluCpu, SiLU>
{
    public override string Name => "LigerSiLUMulBackward";
}

/// <summary>Host side of SwiGLU: argument checks, kernel launches, and the CPU path (all shared with GeGLU
/// through <see cref="GatedOp{TCpu, TActivation}"/>; silu itself is <see cref="SiLU"/> and <see cref="SwiGluCpu"/>).</summary>
internal static class SwiGluOp
{
    internal static void Validate(Tensor a, Tensor b) => GatedOp<SwiGluCpu, SiLU>.Validate(a, b);

    /// <summary>c = silu(a) * b.</summary>
    public static Tensor Forward(Tensor a, Tensor b) => GatedOp<SwiGluCpu, SiLU>.Forward(a, b);

    /// <summary>da, db from dc; written into a and b when <paramref name="inPlace"/>.</summary>
    public static (Tensor Da, Tensor Db) Backward(Tensor dc, Tensor a, Tensor b, bool inPlace) =>
        GatedOp<SwiGluCpu, SiLU>.Backward(dc, a, b, inPlace);
}
