using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Modules;

/// <summary>
/// Cross-entropy over logits (..., V) and int64 targets (...), as torch.nn.CrossEntropyLoss with Liger's
/// extras (z-loss, soft cap, in-place gradient). By default the gradient is written over the logits in
/// the forward: give it logits nothing else reads (lm_head's output), or set
/// <see cref="CrossEntropyOptions.InPlaceGradient"/> to false.
/// </summary>
public sealed class LigerCrossEntropyLoss : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>Creates the loss with <paramref name="options"/> (defaults: mean, ignore index -100).</summary>
    public LigerCrossEntropyLoss(CrossEntropyOptions? options = null) : base(nameof(LigerCrossEntropyLoss))
    {
        Options = options ?? new CrossEntropyOptions();
    }

    /// <summary>The options every call uses.</summary>
    public CrossEntropyOptions Options { get; }

    /// <inheritdoc/>
    public override Tensor forward(Tensor logits, Tensor target) => LigerCrossEntropyFunction.Apply(logits, target, Options);

    /// <summary>The loss and the extras the options ask for (z-loss, accuracy, predicted tokens).</summary>
    public CrossEntropyResult ForwardWithExtras(Tensor logits, Tensor target) =>
        LigerCrossEntropyFunction.ApplyWithExtras(logits, target, Options);
}
