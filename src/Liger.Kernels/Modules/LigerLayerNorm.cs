using Liger.Kernels.Ops;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Liger.Kernels.Modules;

/// <summary>
/// LayerNorm over the last dimension with a learned scale <c>weight</c> and, unless created without one,
/// a learned shift <c>bias</c> (PyTorch's and Hugging Face's names), computed by Liger kernels. Initialised
/// as torch's LayerNorm: weight ones, bias zeros.
/// </summary>
public sealed class LigerLayerNorm : nn.Module<Tensor, Tensor>
{
    /// <summary>The scale, one per feature (state-dict name "weight").</summary>
    public Parameter weight;

    /// <summary>The shift, one per feature (state-dict name "bias"); null when created with <c>bias: false</c>.</summary>
    public Parameter? bias;

    /// <summary>Creates the norm.</summary>
    /// <param name="hiddenSize">Size of the normalised (last) dimension.</param>
    /// <param name="eps">Added to the variance (torch's default 1e-5).</param>
    /// <param name="bias">Whether to learn a shift (torch's <c>bias=True</c>).</param>
    /// <param name="dtype">Parameter dtype.</param>
    /// <param name="device">Parameter device.</param>
    public LigerLayerNorm(long hiddenSize, double eps = 1e-5, bool bias = true, ScalarType dtype = ScalarType.Float32,
        Device? device = null)
        : base(nameof(LigerLayerNorm))
    {
        if (hiddenSize < 1)
            throw new ArgumentOutOfRangeException(nameof(hiddenSize), hiddenSize, "'hiddenSize' must be at least 1.");
        Eps = eps;
        weight = new Parameter(ones(hiddenSize, dtype: dtype, device: device));
        this.bias = bias ? new Parameter(zeros(hiddenSize, dtype: dtype, device: device)) : null;
        RegisterComponents();
    }

    /// <summary>Added to the variance.</summary>
    public double Eps { get; }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input) => LigerLayerNormFunction.Apply(input, weight, bias, Eps);
}
