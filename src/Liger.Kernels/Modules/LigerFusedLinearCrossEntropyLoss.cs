using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Modules;

/// <summary>
/// lm_head and cross-entropy in one: loss(hidden · weightᵀ + bias, target) without materialising the
/// logits of all tokens (see <see cref="LigerFusedLinearCrossEntropyFunction"/>). Arguments in the
/// function's order, hidden states first as everywhere in this library (Liger-Kernel's Python module takes
/// lm_head's weight first; see docs/design.md, Conventions): hidden states (..., H), lm_head's weight (V, H),
/// int64 targets (...), bias (V). The inputs are left untouched.
/// </summary>
public sealed class LigerFusedLinearCrossEntropyLoss : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    /// <summary>Creates the loss with <paramref name="options"/> (defaults: mean, ignore index -100, 1 GiB chunks).</summary>
    public LigerFusedLinearCrossEntropyLoss(FusedLinearCrossEntropyOptions? options = null) : base(nameof(LigerFusedLinearCrossEntropyLoss))
    {
        Options = options ?? new FusedLinearCrossEntropyOptions();
    }

    /// <summary>The options every call uses.</summary>
    public FusedLinearCrossEntropyOptions Options { get; }

    /// <inheritdoc/>
    public override Tensor forward(Tensor hidden, Tensor weight, Tensor target) =>
        LigerFusedLinearCrossEntropyFunction.Apply(hidden, weight, target, null, Options);

    /// <summary>The loss with lm_head's bias.</summary>
    public Tensor forward(Tensor hidden, Tensor weight, Tensor target, Tensor? bias) =>
        LigerFusedLinearCrossEntropyFunction.Apply(hidden, weight, target, bias, Options);

    /// <summary>The loss and the extras the cross-entropy options ask for (z-loss, accuracy, predicted tokens).</summary>
    public CrossEntropyResult ForwardWithExtras(Tensor hidden, Tensor weight, Tensor target, Tensor? bias = null) =>
        LigerFusedLinearCrossEntropyFunction.ApplyWithExtras(hidden, weight, target, bias, Options);
}
