using Liger.Kernels.Kernels;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Ops;

/// <summary>
/// linear(silu(a) * b, weight, bias) as one differentiable function: a gated MLP's product and its down_proj.
/// The result equals <see cref="LigerSiLUMulFunction"/> followed by nn.functional.linear, forward and backward,
/// but the product c (tokens × intermediate, the widest activation of a decoder layer) is not kept for the
/// backward: the backward kernel recomputes it from a and b in the same pass that computes their gradients,
/// writing it over dc, and down_proj's weight gradient reads it there. A Llama-3.2-1B layer keeps a third less
/// of its MLP's activations (4 GiB over 16 layers at 16384 tokens).
/// </summary>
public static class LigerSiLUMulLinearFunction
{
    /// <summary>Applies linear(silu(a) * b, weight, bias).</summary>
    /// <param name="a">The gate input (gate_proj's output), (..., intermediate), contiguous.</param>
    /// <param name="b">The value input (up_proj's output): a's shape, dtype and device, contiguous.</param>
    /// <param name="weight">down_proj's weight, (hidden, intermediate), a's dtype and device.</param>
    /// <param name="bias">down_proj's bias, (hidden), or null.</param>
    /// <param name="inPlaceBackward">Write da and db into a's and b's buffers: only for intermediates nothing else
    /// reads (as inside a gated MLP).</param>
    public static Tensor Apply(Tensor a, Tensor b, Tensor weight, Tensor? bias = null, bool inPlaceBackward = false) =>
        GatedLinear<SwiGluLinearAutograd, SwiGluCpu, SiLU>.Apply(a, b, weight, bias, inPlaceBackward);
}

/// <summary>linear(gelu_tanh(a) * b, weight, bias) without keeping the product: see <see cref="LigerSiLUMulLinearFunction"/>.</summary>
public static class LigerGELUMulLinearFunction
{
    /// <summary>Applies linear(gelu_tanh(a) * b, weight, bias); arguments as <see cref="LigerSiLUMulLinearFunction.Apply"/>.</summary>
    /// <param name="a">The gate input (gate_proj's output), (..., intermediate), contiguous.</param>
    /// <param name="b">The value input (up_proj's output): a's shape, dtype and device, contiguous.</param>
    /// <param name="weight">down_proj's weight, (hidden, intermediate), a's dtype and device.</param>
    /// <param name="bias">down_proj's bias, (hidden), or null.</param>
    /// <param name="inPlaceBackward">Write da and db into a's and b's buffers.</param>
    public static Tensor Apply(Tensor a, Tensor b, Tensor weight, Tensor? bias = null, bool inPlaceBackward = false) =>
        GatedLinear<GeGluLinearAutograd, GeGluCpu, GeluTanh>.Apply(a, b, weight, bias, inPlaceBackward);
}

/// <summary>Argument checks and the no-gradient path shared by the gated-linear functions.</summary>
internal static class GatedLinear<TAutograd, TCpu, TActivation>
    where TAutograd : GatedLinearAutograd<TAutograd, TCpu, TActivation>, new()
    where TCpu : IGatedCpuActivation where TActivation : struct, IGateActivation
{
    internal static Tensor Apply(Tensor a, Tensor b, Tensor weight, Tensor? bias, bool inPlaceBackward)
    {
        GatedOp<TCpu, TActivation>.Validate(a, b);
        TensorChecks.NotNull(weight, nameof(weight));
        TensorChecks.SameDtype(weight, nameof(weight), a, nameof(a));
        TensorChecks.SameDevice(weight, nameof(weight), a, nameof(a));
        long features = a.dim() == 0 ? 1 : a.shape[^1];
        if (a.dim() == 0 || weight.dim() != 2 || weight.shape[1] != features)
            throw new ArgumentException(
                $"'{nameof(weight)}' must be (out_features, {features}) for a of shape [{string.Join(", ", a.shape)}]; got [{string.Join(", ", weight.shape)}].",
                nameof(weight));
        if (bias is not null)
        {
            TensorChecks.SameDtype(bias, nameof(bias), a, nameof(a));
            TensorChecks.SameDevice(bias, nameof(bias), a, nameof(a));
            if (bias.dim() != 1 || bias.shape[0] != weight.shape[0])
                throw new ArgumentException($"'{nameof(bias)}' must be ({weight.shape[0]}); got [{string.Join(", ", bias.shape)}].", nameof(bias));
        }
        bool gradients = is_grad_enabled() && (a.requires_grad || b.requires_grad || weight.requires_grad || bias?.requires_grad == true);
        if (!gradients)
        {
            using var c = GatedOp<TCpu, TActivation>.Forward(a, b);
            return nn.functional.linear(c, weight, bias);
        }
        return AutogradOutputCache.Release(GatedLinearAutograd<TAutograd, TCpu, TActivation>.apply(a, b, weight, bias!, inPlaceBackward))[0];
    }
}

/// <summary>
/// The autograd node of the gated-linear functions: saves a, b and the weight (not the product). Backward:
/// dc = dy · W; the kernel turns (dc, a, b) into (da, db) and leaves c where dc was; dW = dyᵀ · c; dbias = Σ dy.
/// Each matrix product is the one torch's linear backward runs, so the gradients equal the unfused pair's.
/// </summary>
internal abstract class GatedLinearAutograd<TSelf, TCpu, TActivation> : autograd.MultiTensorFunction<TSelf>
    where TSelf : GatedLinearAutograd<TSelf, TCpu, TActivation>, new()
    where TCpu : IGatedCpuActivation where TActivation : struct, IGateActivation
{
    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradOutputCache.Track(ctx, Name, vars);
        var (a, b, weight, bias) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], vars[3] as Tensor);
        ctx.save_for_backward([a, b, weight]);
        ctx.save_data("inPlace", (bool)vars[4]);
        ctx.save_data("bias", bias is not null);
        using var c = GatedOp<TCpu, TActivation>.Forward(a, b);
        return [nn.functional.linear(c, weight, bias)];
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grads) =>
        BackwardLifetime.Run(ctx, grads, incoming => Backward(ctx, incoming));

    private static List<Tensor> Backward(autograd.AutogradContext ctx, List<Tensor> grads)
    {
        var saved = ctx.get_saved_variables();
        if (grads[0] is null || grads[0].IsInvalid)
            return [null!, null!, null!, null!, null!];
        var (a, b, weight) = (saved[0], saved[1], saved[2]);
        long features = a.shape[^1], outputs = weight.shape[0];
        var dy = grads[0].contiguous().view(-1, outputs);
        var dc = dy.mm(weight).view(a.shape);
        var (da, db, c) = GatedOp<TCpu, TActivation>.BackwardRecomputing(dc, a, b, (bool)ctx.get_data("inPlace"));
        var dWeight = dy.t().mm(c.view(-1, features));
        var dBias = (bool)ctx.get_data("bias") ? dy.sum([0L]) : null;
        return [da, db, dWeight, dBias!, null!];
    }
}

/// <summary>The autograd node of <see cref="LigerSiLUMulLinearFunction"/>.</summary>
internal sealed class SwiGluLinearAutograd : GatedLinearAutograd<SwiGluLinearAutograd, SwiGluCpu, SiLU>
{
    public override string Name => "LigerSiLUMulLinearBackward";
}

/// <summary>The autograd node of <see cref="LigerGELUMulLinearFunction"/>.</summary>
internal sealed class GeGluLinearAutograd : GatedLinearAutograd<GeGluLinearAutograd, GeGluCpu, GeluTanh>
{
    public override string Name => "LigerGELUMulLinearBackward";
}
