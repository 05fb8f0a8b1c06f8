using Liger.Kernels.Runtime;
using Liger.Kernels.Ops;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models.Layers;

/// <summary>
/// A decoder's RMSNorm (state-dict name <c>weight</c>), on Liger's kernel or as Hugging Face's eager
/// LlamaRMSNorm / GemmaRMSNorm. Gemma stores the weight minus one and computes everything in float32
/// (Liger's Gemma casting mode); Llama rounds the normalised input to the model dtype before the weight.
/// </summary>
internal sealed class DecoderRMSNorm : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // Hugging Face state-dict name
    /// <summary>The scale.</summary>
    public Parameter weight;
#pragma warning restore IDE1006

    /// <summary>Creates the norm.</summary>
    public DecoderRMSNorm(long size, double eps, bool gemma, bool liger, ScalarType dtype, Device? device)
        : base(nameof(DecoderRMSNorm))
    {
        Eps = eps;
        Gemma = gemma;
        Liger = liger;
        weight = new Parameter(gemma ? zeros(size, dtype: dtype, device: device) : ones(size, dtype: dtype, device: device));
        register_parameter(nameof(weight), weight);
    }

    /// <summary>rms_norm_eps.</summary>
    public double Eps { get; }
    /// <summary>Gemma's offset-one, all-float32 variant.</summary>
    public bool Gemma { get; }
    /// <summary>Runs on Liger's kernel.</summary>
    public bool Liger { get; }

    /// <summary>
    /// linear(norm(input)) for each of <paramref name="layers"/>, with the normalised input recomputed in the backward
    /// instead of kept (<see cref="LigerRMSNormLinearsFunction"/>). Only for a norm on Liger's kernel.
    /// </summary>
    internal Tensor[] ForwardLinears(Tensor input, params Linear[] layers)
    {
        if (!Liger)
            throw new InvalidOperationException("ForwardLinears runs on Liger's kernel; this norm is eager.");
        return LigerRMSNormLinearsFunction.Apply(input.contiguous(), weight, layers.Select(l => (Tensor)l.weight!).ToArray(),
            layers.Select(l => (Tensor?)l.bias).ToArray(), Eps, Gemma ? 1.0 : 0.0, Gemma ? RmsNormCastingMode.Gemma : RmsNormCastingMode.Llama);
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        if (Liger)
            return LigerRMSNormFunction.Apply(input.contiguous(), weight, Eps, Gemma ? 1.0 : 0.0,
                Gemma ? RmsNormCastingMode.Gemma : RmsNormCastingMode.Llama);
        using var scope = NewDisposeScope();
        var x = input.to(ScalarType.Float32);
        var normed = x * x.Squared().mean([-1L], keepdim: true).Plus(Eps).rsqrt();
        var output = Gemma
            ? (normed * weight.to(ScalarType.Float32).Plus(1.0)).to(input.dtype)
            : weight * normed.to(input.dtype);
        return output.MoveToOuterDisposeScope();
    }
}
