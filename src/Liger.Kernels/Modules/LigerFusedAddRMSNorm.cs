using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Liger.Kernels.Modules;

/// <summary>
/// A decoder layer's residual add followed by its RMSNorm (<c>residual = residual + hidden_states</c>,
/// then <c>norm(residual)</c>) as one Liger op. The learned scale is named <c>weight</c>, as Hugging Face's
/// RMSNorm, so a checkpoint's norm weight loads into it by name. <see cref="forward"/> returns the normed
/// output and the new residual stream.
/// </summary>
public sealed class LigerFusedAddRMSNorm : nn.Module<Tensor, Tensor, (Tensor Output, Tensor Residual)>
{
    /// <summary>The scale, one per feature (state-dict name "weight").</summary>
    public Parameter weight;

    /// <summary>Creates the fused add + norm.</summary>
    /// <param name="hiddenSize">Size of the normalised (last) dimension.</param>
    /// <param name="eps">Added to the mean square.</param>
    /// <param name="offset">Added to the weight in the product (Gemma: 1).</param>
    /// <param name="castingMode">Where intermediates are rounded (see <see cref="RmsNormCastingMode"/>).</param>
    /// <param name="initValue">Initial weight value (1; 0 for Gemma, whose weight is stored minus one).</param>
    /// <param name="dtype">Weight dtype.</param>
    /// <param name="device">Weight device.</param>
    public LigerFusedAddRMSNorm(long hiddenSize, double eps = 1e-6, double offset = 0.0,
        RmsNormCastingMode castingMode = RmsNormCastingMode.Llama, double initValue = 1.0,
        ScalarType dtype = ScalarType.Float32, Device? device = null)
        : base(nameof(LigerFusedAddRMSNorm))
    {
        if (hiddenSize < 1)
            throw new ArgumentOutOfRangeException(nameof(hiddenSize), hiddenSize, "'hiddenSize' must be at least 1.");
        Eps = eps;
        Offset = offset;
        CastingMode = castingMode;
        weight = new Parameter(ScalarArithmetic.Full([hiddenSize], initValue, dtype, device));
        RegisterComponents();
    }

    /// <summary>Added to the mean square.</summary>
    public double Eps { get; }

    /// <summary>Added to the weight in the product.</summary>
    public double Offset { get; }

    /// <summary>Where intermediates are rounded.</summary>
    public RmsNormCastingMode CastingMode { get; }

    /// <summary>Returns (RMSNorm(residual + hiddenStates), residual + hiddenStates).</summary>
    /// <param name="hiddenStates">The sub-layer's output.</param>
    /// <param name="residual">The residual stream.</param>
    public override (Tensor Output, Tensor Residual) forward(Tensor hiddenStates, Tensor residual) =>
        LigerFusedAddRMSNormFunction.Apply(hiddenStates, residual, weight, Eps, Offset, CastingMode);
}
