using Liger.Kernels.Ops;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Liger.Kernels.Modules;

/// <summary>
/// The SwiGLU MLP of Llama-family models, down_proj(silu(gate_proj(x)) * up_proj(x)), with the gate
/// computed by the Liger kernel. Submodule names match Hugging Face, so checkpoints load by name.
/// </summary>
public sealed class LigerSwiGLUMLP : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // names are the Hugging Face state-dict names
    /// <summary>hidden → intermediate, the gate branch.</summary>
    public Linear gate_proj;
    /// <summary>hidden → intermediate, the value branch.</summary>
    public Linear up_proj;
    /// <summary>intermediate → hidden.</summary>
    public Linear down_proj;
#pragma warning restore IDE1006

    /// <summary>Creates the MLP.</summary>
    public LigerSwiGLUMLP(long hiddenSize, long intermediateSize, bool bias = false,
        ScalarType dtype = ScalarType.Float32, Device? device = null)
        : base(nameof(LigerSwiGLUMLP))
    {
        gate_proj = nn.Linear(hiddenSize, intermediateSize, hasBias: bias, device: device, dtype: dtype);
        up_proj = nn.Linear(hiddenSize, intermediateSize, hasBias: bias, device: device, dtype: dtype);
        down_proj = nn.Linear(intermediateSize, hiddenSize, hasBias: bias, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        // gate and up are private intermediates: the backward may overwrite them with their gradients. The gated
        // product goes straight into down_proj and is recomputed in the backward rather than kept.
        return LigerSiLUMulLinearFunction.Apply(gate_proj.forward(x), up_proj.forward(x), down_proj.weight!, down_proj.bias, inPlaceBackward: true)
            .MoveToOuterDisposeScope();
    }
}
