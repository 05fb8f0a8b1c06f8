using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Ops;

/// <summary>
/// RMSNorm followed by the linear layers that read its output (a decoder layer's q/k/v projections, or its MLP's
/// gate/up projections), as one differentiable function that keeps x and the per-row rstd but not the normalised
/// x: the backward recomputes it with the same kernel (the same bits) before the weight gradients. Each output
/// equals <see cref="LigerRMSNormFunction"/> then nn.functional.linear; a Llama-3.2-1B layer keeps two fewer
/// hidden-sized activations (2 GiB over 16 layers at 16384 tokens) for two extra norm passes in the backward.
/// </summary>
public static class LigerRMSNormLinearsFunction
{
    /// <summary>Applies linear(rmsnorm(x), weights[i], biases[i]) for every i.</summary>
    /// <param name="x">Input (..., H), contiguous; normalised over its last dimension.</param>
    /// <param name="normWeight">The norm's scale (H).</param>
    /// <param name="weights">The linear layers' weights, each (out_i, H), x's dtype and device.</param>
    /// <param name="biases">Their biases (out_i) or nulls; null for none at all.</param>
    /// <param name="eps">Added to the mean square.</param>
    /// <param name="offset">Added to the norm's scale (Gemma: 1).</param>
    /// <param name="castingMode">Where the norm rounds to x's dtype.</param>
    /// <returns>One output (..., out_i) per weight.</returns>
    public static Tensor[] Apply(Tensor x, Tensor normWeight, IReadOnlyList<Tensor> weights, IReadOnlyList<Tensor?>? biases = null,
        double eps = 1e-6, double offset = 0.0, RmsNormCastingMode castingMode = RmsNormCastingMode.Llama)
    {
        RmsNormOp.Validate(x, normWeight, eps, offset);
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Count == 0)
            throw new ArgumentException("At least one linear layer must follow the norm.", nameof(weights));
        if (biases is not null && biases.Count != weights.Count)
            throw new ArgumentException($"'{nameof(biases)}' must hold one entry (a bias or null) per weight: {weights.Count}; got {biases.Count}.", nameof(biases));
        long features = x.shape[^1];
        for (int i = 0; i < weights.Count; i++)
        {
            string name = $"{nameof(weights)}[{i}]";
            TensorChecks.NotNull(weights[i], name);
            TensorChecks.SameDtype(weights[i], name, x, nameof(x));
            TensorChecks.SameDevice(weights[i], name, x, nameof(x));
            if (weights[i].dim() != 2 || weights[i].shape[1] != features)
                throw new ArgumentException($"'{name}' must be (out_features, {features}); got [{string.Join(", ", weights[i].shape)}].", nameof(weights));
            if (biases?[i] is { } bias)
            {
                string biasName = $"{nameof(biases)}[{i}]";
                TensorChecks.SameDtype(bias, biasName, x, nameof(x));
                TensorChecks.SameDevice(bias, biasName, x, nameof(x));
                if (bias.dim() != 1 || bias.shape[0] != weights[i].shape[0])
                    throw new ArgumentException($"'{biasName}' must be ({weights[i].shape[0]}); got [{string.Join(", ", bias.shape)}].", nameof(biases));
            }
        }
        if (features == 0)
        {
            // torch's result: each linear of an empty row gives its bias (or zeros); rows of no feature cannot be viewed as (-1, 0)
            var normed = EmptyRows.Normalized(x, normWeight);
            return weights.Select((w, i) => nn.functional.linear(normed, w, biases?[i])).ToArray();
        }
        var vars = new List<object> { x, normWeight, eps, offset, castingMode, weights.Count };
        vars.AddRange(weights);
        vars.AddRange(Enumerable.Range(0, weights.Count).Select(i => (object)biases?[i]!));
        return AutogradOutputCache.Release(RmsNormLinearsAutograd.apply([.. vars])).ToArray();
    }
}

/// <summary>The autograd node of <see cref="LigerRMSNormLinearsFunction"/>.</summary>
internal sealed class RmsNormLinearsAutograd : autograd.MultiTensorFunction<RmsNormLinearsAutograd>
{
    public override string Name => "LigerRMSNormLinearsBackward";

    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradOutputCache.Track(ctx, Name, vars);
        var (x, normWeight) = ((Tensor)vars[0], (Tensor)vars[1]);
        var (eps, offset, mode, count) = ((double)vars[2], (double)vars[3], (RmsNormCastingMode)vars[4], (int)vars[5]);
        var weights = Enumerable.Range(0, count).Select(i => (Tensor)vars[6 + i]).ToArray();
        var biases = Enumerable.Range(0, count).Select(i => vars[6 + count + i] as Tensor).ToArray();
        long features = x.shape[^1];
        using var rows = x.view(-1, features);
        var (normed, rstd) = RmsNormOp.Forward(rows, normWeight, eps, offset, mode);
        var outputs = new List<Tensor>(count);
        // In x's own shape: torch's linear adds a bias to a 3-D input after the product (two roundings) and fuses
        // it into the product (one) for a 2-D one; the outputs must be the unfused pair's.
        using (normed)
        using (var shaped = normed.view(x.shape))
            for (int i = 0; i < count; i++)
                outputs.Add(nn.functional.linear(shaped, weights[i], biases[i]));
        ctx.save_for_backward([x, normWeight, rstd, .. weights]);
        ctx.save_data("eps", eps);
        ctx.save_data("offset", offset);
        ctx.save_data("mode", mode);
        ctx.save_data("biases", biases.Select(b => b is not null).ToArray());
        return outputs;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grads) =>
        BackwardLifetime.Run(ctx, grads, incoming => Backward(ctx, incoming));

    private static List<Tensor> Backward(autograd.AutogradContext ctx, List<Tensor> grads)
    {
        var saved = ctx.get_saved_variables();
        var (x, normWeight, rstd) = (saved[0], saved[1], saved[2]);
        var hasBias = (bool[])ctx.get_data("biases");
        int count = hasBias.Length;
        var (eps, offset, mode) = ((double)ctx.get_data("eps"), (double)ctx.get_data("offset"), (RmsNormCastingMode)ctx.get_data("mode"));
        var result = new Tensor[6 + 2 * count];
        long features = x.shape[^1];
        var rows = x.view(-1, features);
        // The same kernel on the same rows gives the forward's normalised x bit for bit.
        var (normed, again) = RmsNormOp.Forward(rows, normWeight, eps, offset, mode);
        again.Dispose();
        Tensor? dNormed = null;
        // Last layer first, each product rounded and then added: the order and roundings in which autograd sums the
        // input gradients of separate linear layers (it runs the latest-created node first), so dx is the unfused
        // pair's bit for bit rather than a more accurate sum that would drift from it.
        for (int i = count - 1; i >= 0; i--)
        {
            if (grads[i] is null || grads[i].IsInvalid)
                continue; // that output took no part in the loss
            var weight = saved[3 + i];
            var dy = grads[i].contiguous().view(-1, weight.shape[0]);
            result[6 + i] = dy.t().mm(normed);
            if (hasBias[i])
                result[6 + count + i] = dy.sum([0L]);
            if (dNormed is null)
                dNormed = dy.mm(weight);
            else
            {
                using var term = dy.mm(weight);
                dNormed.PlusInPlace(term);
            }
        }
        normed.Dispose();
        if (dNormed is null)
            return [.. result];
        // dNormed is this node's own buffer: the norm's backward may write dx over it.
        var (dx, dw) = RmsNormOp.Backward(dNormed, rows, normWeight, rstd, offset, mode, inPlace: true);
        result[0] = dx.view(x.shape);
        result[1] = dw;
        return [.. result];
    }
}
