using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Ops;

/// <summary>Options of <see cref="LigerFusedLinearCrossEntropyFunction"/>.</summary>
public sealed record FusedLinearCrossEntropyOptions
{
    /// <summary>The cross-entropy's options (ignore index, weights, smoothing, z-loss, soft cap, reduction, extras).
    /// <see cref="CrossEntropyOptions.InPlaceGradient"/> does not apply: chunk logits are always overwritten.</summary>
    public CrossEntropyOptions CrossEntropy { get; init; } = new();

    /// <summary>
    /// Accumulate the weight's and bias's gradients over chunks in float32 (then cast to their dtype)
    /// instead of in their own dtype. Costs a float32 copy of the weight's size; each chunk's product is
    /// still rounded once to the input dtype (as Liger-Kernel's accum_dtype without addmm's out_dtype).
    /// </summary>
    public bool AccumulateInFloat32 { get; init; }

    /// <summary>
    /// Most bytes a chunk's logits may take; null: <see cref="FusedLinearCrossEntropyOp.DefaultChunkBytes"/>.
    /// Bigger chunks make bigger, faster matmuls; the logits of one chunk (and its gradient, written over
    /// them) are all the extra memory the loss needs beyond the gradients themselves.
    /// </summary>
    public long? ChunkBytes { get; init; }
}

/// <summary>
/// Liger's fused linear cross-entropy: loss(hidden · weightᵀ + bias, target) without ever holding the
/// logits of all tokens. Tokens go through in chunks; per chunk the logits come from one matmul, the
/// cross-entropy kernel turns them into their gradient in place, and two more matmuls fold that into the
/// hidden states' and the weight's gradients. The gradients are computed in the forward (Mean/Sum: the
/// backward only scales them) or recomputed chunk by chunk in the backward (None, where each token's
/// incoming gradient must be applied before the weight gradient sums over tokens).
/// </summary>
public static class LigerFusedLinearCrossEntropyFunction
{
    /// <summary>The loss (float32). hidden (..., H), weight (V, H), target (...) int64, bias (V) or null.</summary>
    public static Tensor Apply(Tensor hidden, Tensor weight, Tensor target, Tensor? bias = null,
        FusedLinearCrossEntropyOptions? options = null) =>
        ApplyWithExtras(hidden, weight, target, bias, options).Loss;

    /// <summary>The loss and the extras the cross-entropy options ask for (z-loss, accuracy, predicted tokens).</summary>
    public static CrossEntropyResult ApplyWithExtras(Tensor hidden, Tensor weight, Tensor target, Tensor? bias = null,
        FusedLinearCrossEntropyOptions? options = null)
    {
        options ??= new FusedLinearCrossEntropyOptions();
        FusedLinearCrossEntropyOp.Validate(hidden, weight, target, bias, options);
        var extras = new CrossEntropyExtras();
        bool gradients = is_grad_enabled() && (hidden.requires_grad || weight.requires_grad || bias?.requires_grad == true);
        var loss = gradients
            ? AutogradOutputCache.Release(FusedLinearCrossEntropyAutograd.apply(hidden, weight, target, bias!, options, extras))[0]
            : FusedLinearCrossEntropyOp.Run(hidden, weight, target, bias, options, extras, wanted: default, rowScale: null).Loss;
        return new CrossEntropyResult(loss, extras.ZLoss, extras.TokenAccuracy, extras.PredictedTokens);
    }
}

/// <summary>
/// The autograd node of <see cref="LigerFusedLinearCrossEntropyFunction"/>. Mean/Sum: saves the
/// gradients computed in the forward; None: saves the inputs and recomputes in the backward.
/// </summary>
internal sealed class FusedLinearCrossEntropyAutograd : autograd.MultiTensorFunction<FusedLinearCrossEntropyAutograd>
{
    public override string Name => "LigerFusedLinearCrossEntropyBackward";

    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradOutputCache.Track(ctx, Name, vars);
        var (hidden, weight, target, bias) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], vars[3] as Tensor);
        var (options, extras) = ((FusedLinearCrossEntropyOptions)vars[4], (CrossEntropyExtras)vars[5]);
        var wanted = new FusedLinearCrossEntropyOp.Wanted(hidden.requires_grad, weight.requires_grad, bias?.requires_grad == true);
        ctx.save_data("wanted", wanted);
        ctx.save_data("shape", hidden.shape);
        ctx.save_data("options", options);
        if (options.CrossEntropy.Reduction == CrossEntropyReduction.None)
        {
            var loss = FusedLinearCrossEntropyOp.Run(hidden, weight, target, bias, options, extras, wanted: default, rowScale: null).Loss;
            var inputs = bias is null ? new[] { hidden, weight, target } : [hidden, weight, target, bias];
            ctx.save_for_backward(inputs.Select(t => BackwardLifetime.SavedInForward(t.detach())).ToList());
            return [loss];
        }
        var run = FusedLinearCrossEntropyOp.Run(hidden, weight, target, bias, options, extras, wanted, rowScale: null);
        // The gradients are rescaled in place in the backward: saved as aliases with their own version
        // counters (see CrossEntropyAutograd), next to the factor they carry so far.
        // The counted tokens too: the hidden states' gradient of an ignored token is not scaled.
        using var applied = ones(1, dtype: ScalarType.Float32, device: hidden.device);
        using var flatTarget = target.reshape(-1);
        var saved = new List<Tensor>
        {
            BackwardLifetime.SavedInForward(SavedAlias(applied)),
            BackwardLifetime.SavedInForward(flatTarget.NotEqualTo(options.CrossEntropy.IgnoreIndex)),
        };
        foreach (var g in new[] { run.GradHidden, run.GradWeight, run.GradBias })
            if (g is not null)
            {
                saved.Add(BackwardLifetime.SavedInForward(SavedAlias(g)));
                g.Dispose();   // the alias holds the storage now
            }
        ctx.save_for_backward(saved);
        return [run.Loss];
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grads) =>
        BackwardLifetime.Run(ctx, grads, incoming => Backward(ctx, incoming));

    private static List<Tensor> Backward(autograd.AutogradContext ctx, List<Tensor> grads)
    {
        if (grads[0] is null || grads[0].IsInvalid)
            return [null!, null!, null!, null!, null!, null!];
        var wanted = (FusedLinearCrossEntropyOp.Wanted)ctx.get_data("wanted");
        var options = (FusedLinearCrossEntropyOptions)ctx.get_data("options");
        var shape = (long[])ctx.get_data("shape");
        var saved = ctx.get_saved_variables();
        Tensor? gradHidden = null, gradWeight = null, gradBias = null;
        if (options.CrossEntropy.Reduction == CrossEntropyReduction.None)
        {
            // Recompute chunk by chunk with each token's incoming gradient folded in before the matmuls.
            var run = FusedLinearCrossEntropyOp.Run(saved[0], saved[1], saved[2], saved.Count > 3 ? saved[3] : null, options,
                new CrossEntropyExtras(), wanted, rowScale: grads[0]);
            (gradHidden, gradWeight, gradBias) = (run.GradHidden, run.GradWeight, run.GradBias);
        }
        else
        {
            int next = 2;
            gradHidden = wanted.Hidden ? saved[next++] : null;
            gradWeight = wanted.Weight ? saved[next++] : null;
            gradBias = wanted.Bias ? saved[next] : null;
            using var applied = SavedAlias(saved[0]);
            using var factor = CrossEntropyOp.NextFactor(grads[0], applied);
            if (gradHidden is not null)
            {
                // Per token, ignored ones left as the forward wrote them (see CrossEntropyOp.SkippingIgnored).
                using var alias = SavedAlias(gradHidden);
                using var perToken = CrossEntropyOp.SkippingIgnored(factor, saved[1]);
                CrossEntropyOp.ScaleRows(alias, perToken, perRow: true);
            }
            // The weight's and bias's gradients are sums over tokens, scaled after the sum: an infinite factor
            // gives ±inf where torch, scaling before it, gets inf − inf = NaN (both non-finite).
            foreach (var g in new[] { gradWeight, gradBias })
                if (g is not null)
                {
                    using var alias = SavedAlias(g);
                    using var rows = g.dim() == 1 ? alias.view(1, -1) : alias;
                    CrossEntropyOp.ScaleRows(rows, factor, perRow: false);
                }
        }
        return [gradHidden?.view(shape)!, gradWeight!, null!, gradBias!, null!, null!];
    }

    /// <summary>A tensor over <paramref name="source"/>'s memory that does not share its autograd version counter.</summary>
    private static Tensor SavedAlias(Tensor source) =>
        empty(0, dtype: source.dtype, device: source.device).set_(source);   // set_ returns the same tensor
}
