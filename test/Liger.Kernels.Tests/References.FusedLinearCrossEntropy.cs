using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>Fused linear cross-entropy's exact results: the cross-entropy's, plus the gradients of the linear layer's inputs.</summary>
public sealed record FusedLinearCrossEntropyReference(CrossEntropyReference CrossEntropy, Tensor GradHidden, Tensor GradWeight, Tensor GradBias);

public static partial class References
{
    /// <summary>
    /// In float64 with the full logits materialised: logits = hidden · weightᵀ + bias, the cross-entropy
    /// reference over them, and the chain rule through the linear layer by eager matmuls
    /// (d hidden = G · W, d weight = Gᵀ · hidden, d bias = Σ_tokens G, G the logits' gradient).
    /// </summary>
    public static FusedLinearCrossEntropyReference FusedLinearCrossEntropy(Tensor hidden, Tensor weight, Tensor? bias, Tensor target,
        CrossEntropyOptions options, Tensor gradOutput)
    {
        using var scope = NewDisposeScope();
        long size = weight.shape[1];
        var x = hidden.detach().cpu().to(ScalarType.Float64).reshape(-1, size);
        var w = weight.detach().cpu().to(ScalarType.Float64);
        var logits = x.mm(w.t());
        if (bias is not null)
            logits += bias.detach().cpu().to(ScalarType.Float64);
        var ce = CrossEntropy(logits.reshape([.. target.shape, w.shape[0]]), target, options, gradOutput);
        var g = ce.Grad.reshape(-1, w.shape[0]);
        var gradHidden = g.mm(w).reshape(hidden.shape);
        var gradWeight = g.t().mm(x);
        var gradBias = g.sum(0L);
        return new FusedLinearCrossEntropyReference(
            new CrossEntropyReference(ce.Loss.MoveToOuterDisposeScope(), ce.ZLoss.MoveToOuterDisposeScope(),
                ce.Grad.MoveToOuterDisposeScope(), ce.Predicted.MoveToOuterDisposeScope(), ce.LossTermScale.MoveToOuterDisposeScope(),
                ce.GradTermScale.MoveToOuterDisposeScope()),
            gradHidden.MoveToOuterDisposeScope(), gradWeight.MoveToOuterDisposeScope(), gradBias.MoveToOuterDisposeScope());
    }
}
