using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Liger.Kernels.Modules;

/// <summary>
/// RMSNorm over the last dimension with a learned scale named <c>weight</c>, as Hugging Face's
/// LlamaRMSNorm, computed by Liger kernels.
/// </summary>
public class LigerRMSNorm : nn.Module<Tensor, Tensor>
{
    /// <summary>The scale, one per feature (state-dict name "weight").</summary>
    public Parameter weight;

    /// <summary>Creates the norm.</summary>
    /// <param name="hiddenSize">Size of the normalised (last) dimension.</param>
    /// <param name="eps">Added to the mean square.</param>
    /// <param name="offset">Added to the weight in the product (Gemma: 1).</param>
    /// <param name="castingMode">Where intermediates are rounded (see <see cref="RmsNormCastingMode"/>).</param>
    /// <param name="initValue">Initial weight value (1 for Llama; 0 for Gemma, whose weight is stored minus one).</param>
    /// <param name="inPlaceBackward">Write dx into the incoming gradient (off by default: unsafe on residual streams).</param>
    /// <param name="dtype">Weight dtype.</param>
    /// <param name="device">Weight device.</param>
    public LigerRMSNorm(long hiddenSize, double eps = 1e-6, double offset = 0.0,
        RmsNormCastingMode castingMode = RmsNormCastingMode.Llama, double initValue = 1.0,
        bool inPlaceBackward = false, ScalarType dtype = ScalarType.Float32, Device? device = null)
        : base(nameof(LigerRMSNorm))
    {
        if (hiddenSize < 1)
            throw new ArgumentOutOfRangeException(nameof(hiddenSize), hiddenSize, "'hiddenSize' must be at least 1.");
        Eps = eps;
        Offset = offset;
        CastingMode = castingMode;
        InPlaceBackward = inPlaceBackward;
        weight = new Parameter(ScalarArithmetic.Full([hiddenSize], initValue, dtype, device));
        RegisterComponents();
    }

    /// <summary>Added to the mean square.</summary>
    public double Eps { get; }

    /// <summary>Added to the weight in the product.</summary>
    public double Offset { get; }

    /// <summary>Where intermediates are rounded.</summary>
    public RmsNormCastingMode CastingMode { get; }

    /// <summary>Whether the backward writes dx into the incoming gradient's buffer.</summary>
    public bool InPlaceBackward { get; }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input) =>
        LigerRMSNormFunction.Apply(input, weight, Eps, Offset, CastingMode, InPlaceBackward);
}

/// <summary>Gemma's RMSNorm: offset 1, all-fp32 casting, weight initialised to zero (stored minus one).</summary>
public sealed class LigerRMSNormForGemma : LigerRMSNorm
{
    /// <summary>Creates the norm with Gemma's defaults.</summary>
    public LigerRMSNormForGemma(long hiddenSize, double eps = 1e-6, ScalarType dtype = ScalarType.Float32, Device? device = null)
        : base(hiddenSize, eps, offset: 1.0, castingMode: RmsNormCastingMode.Gemma, initValue: 0.0,
               inPlaceBackward: false, dtype: dtype, device: device)
    {
    }
}
