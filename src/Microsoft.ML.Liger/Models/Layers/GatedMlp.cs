using Liger.Kernels.Ops;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models.Layers;

/// <summary>The gate activation of a gated MLP, from config.json's hidden_act.</summary>
internal enum GateActivation
{
    /// <summary>silu (SwiGLU).</summary>
    Silu,
    /// <summary>gelu with the tanh approximation, "gelu_pytorch_tanh" (GeGLU as Gemma and Liger compute it).</summary>
    GeluTanh,
    /// <summary>exact gelu (no Liger kernel: Liger's GeGLU is the tanh form).</summary>
    Gelu,
}

/// <summary>
/// down_proj(act(gate) * up), with gate and up from gate_proj and up_proj, or from one gate_up_proj
/// (Phi3, GLM: gate rows first). With Liger the product and down_proj run as one function
/// (<see cref="LigerSiLUMulLinearFunction"/>, <see cref="LigerGELUMulLinearFunction"/>) that does not keep the product.
/// </summary>
internal sealed class GatedMlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear? gateProj, upProj, gateUpProj;
    private readonly Linear downProj;

    /// <summary>Creates the MLP.</summary>
    public GatedMlp(long hiddenSize, long intermediateSize, bool fusedGateUp, bool bias, GateActivation activation,
        bool liger, ScalarType dtype, Device? device, (string Gate, string Up, string Down)? names = null)
        : base(nameof(GatedMlp))
    {
        var (gate, up, down) = names ?? ("gate_proj", "up_proj", "down_proj");
        Activation = activation;
        Liger = liger && activation != GateActivation.Gelu;
        if (fusedGateUp)
            register_module("gate_up_proj", gateUpProj = nn.Linear(hiddenSize, 2 * intermediateSize, hasBias: bias, device: device, dtype: dtype));
        else
        {
            register_module(gate, gateProj = nn.Linear(hiddenSize, intermediateSize, hasBias: bias, device: device, dtype: dtype));
            register_module(up, upProj = nn.Linear(hiddenSize, intermediateSize, hasBias: bias, device: device, dtype: dtype));
        }
        register_module(down, downProj = nn.Linear(intermediateSize, hiddenSize, hasBias: bias, device: device, dtype: dtype));
    }

    /// <summary>The gate activation.</summary>
    public GateActivation Activation { get; }
    /// <summary>Whether the gated product runs on a Liger kernel.</summary>
    public bool Liger { get; }

    /// <summary>With <see cref="Liger"/>: whether the product goes into down_proj through one function that recomputes it in
    /// the backward (default) rather than being kept by down_proj.</summary>
    public bool RecomputeProduct { get; init; } = true;

    /// <summary>The activation named by config.json's hidden_act.</summary>
    public static GateActivation ActivationFor(string hiddenAct) => hiddenAct switch
    {
        "silu" or "swish" => GateActivation.Silu,
        "gelu_pytorch_tanh" or "gelu_new" or "gelu_fast" => GateActivation.GeluTanh,
        "gelu" => GateActivation.Gelu,
        _ => throw new NotSupportedException($"config.json hidden_act \"{hiddenAct}\" is not supported; supported: silu, gelu_pytorch_tanh, gelu."),
    };

    /// <inheritdoc/>
    public override Tensor forward(Tensor x) => forward(x, null);

    /// <summary>The MLP over <paramref name="x"/>, normalised first by <paramref name="norm"/> when given: a norm on
    /// Liger's kernel runs with the gate and up projections as one function that does not keep the normalised x.</summary>
    internal Tensor forward(Tensor x, DecoderRMSNorm? norm)
    {
        using var scope = NewDisposeScope();
        bool fused = norm is { Liger: true };
        if (norm is not null && !fused)
            x = norm.forward(x);
        Tensor gate, up;
        if (gateUpProj is not null)
        {
            var halves = (fused ? norm!.ForwardLinears(x, gateUpProj)[0] : gateUpProj.forward(x)).chunk(2, -1);
            // Liger's kernels read contiguous rows; the halves of gate_up_proj's output are strided views.
            (gate, up) = Liger ? (halves[0].contiguous(), halves[1].contiguous()) : (halves[0], halves[1]);
        }
        else if (fused)
        {
            var projected = norm!.ForwardLinears(x, gateProj!, upProj!);
            (gate, up) = (projected[0], projected[1]);
        }
        else
            (gate, up) = (gateProj!.forward(x), upProj!.forward(x));
        if (Liger && !RecomputeProduct)
            // gate and up are private intermediates: the backward may overwrite them with their gradients.
            return downProj.forward(Activation == GateActivation.Silu
                ? LigerSiLUMulFunction.Apply(gate, up, inPlaceBackward: true)
                : LigerGELUMulFunction.Apply(gate, up, inPlaceBackward: true)).MoveToOuterDisposeScope();
        if (Liger)
            // The product goes straight into down_proj and is recomputed in the backward instead of kept.
            return (Activation == GateActivation.Silu
                ? LigerSiLUMulLinearFunction.Apply(gate, up, downProj.weight!, downProj.bias, inPlaceBackward: true)
                : LigerGELUMulLinearFunction.Apply(gate, up, downProj.weight!, downProj.bias, inPlaceBackward: true)).MoveToOuterDisposeScope();
        var product = Activation switch
        {
            GateActivation.Silu => nn.functional.silu(gate) * up,
            GateActivation.GeluTanh => nn.functional.gelu(gate, GELU.Approximate.tanh) * up,
            _ => nn.functional.gelu(gate) * up,
        };
        return downProj.forward(product).MoveToOuterDisposeScope();
    }
}
