using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>RoPE's exact results and the size of the terms each element sums (for elementwise bounds).</summary>
/// <param name="QEmbed">q·cos + rotate_half(q)·sin (first R dims; the rest of q passed through).</param>
/// <param name="KEmbed">The same for k.</param>
/// <param name="Dq">Gradient of q.</param>
/// <param name="Dk">Gradient of k.</param>
/// <param name="QTerms">|q|·|cos| + |rotate_half(q)|·|sin|: a result near zero from large terms carries their rounding error.</param>
/// <param name="KTerms">The same for k.</param>
/// <param name="DqTerms">|dy|·|cos| + the transposed rotation of |dy|·|sin|.</param>
/// <param name="DkTerms">The same for k.</param>
public sealed record RopeReference(Tensor QEmbed, Tensor KEmbed, Tensor Dq, Tensor Dk,
    Tensor QTerms, Tensor KTerms, Tensor DqTerms, Tensor DkTerms);

public static partial class References
{
    /// <summary>
    /// Hugging Face's apply_rotary_pos_emb in float64, with partial rotary as Phi / GPT-NeoX write it
    /// (rotate the first R = cos.shape[-1] dims, concatenate the rest), backpropagated by autograd from
    /// <paramref name="dqEmbed"/> and <paramref name="dkEmbed"/>. cos, sin: (T, R) or (1|B, T, R).
    /// </summary>
    public static RopeReference Rope(Tensor q, Tensor k, Tensor cos, Tensor sin, Tensor dqEmbed, Tensor dkEmbed)
    {
        using var scope = NewDisposeScope();
        var q64 = Leaf64(q);
        var k64 = Leaf64(k);
        var c = Heads64(cos);
        var s = Heads64(sin);
        var qEmbed = RotaryEmbed(q64, c, s);
        var kEmbed = RotaryEmbed(k64, c, s);
        var (gq, gk) = (dqEmbed.detach().cpu().to(ScalarType.Float64), dkEmbed.detach().cpu().to(ScalarType.Float64));
        autograd.backward([qEmbed, kEmbed], [gq, gk]);
        return new RopeReference(
            qEmbed.detach().MoveToOuterDisposeScope(), kEmbed.detach().MoveToOuterDisposeScope(),
            q64.grad!.detach().MoveToOuterDisposeScope(), k64.grad!.detach().MoveToOuterDisposeScope(),
            RotaryEmbed(q64.detach().abs(), c.abs(), s.abs(), magnitudes: true).MoveToOuterDisposeScope(),
            RotaryEmbed(k64.detach().abs(), c.abs(), s.abs(), magnitudes: true).MoveToOuterDisposeScope(),
            GradTerms(gq.abs(), c.abs(), s.abs()).MoveToOuterDisposeScope(),
            GradTerms(gk.abs(), c.abs(), s.abs()).MoveToOuterDisposeScope());
    }

    /// <summary>rotate_half(x) = cat(−x2, x1) over the last dimension.</summary>
    public static Tensor RotateHalf(Tensor x)
    {
        long half = x.shape[^1] / 2;
        return cat([-x.narrow(-1, half, half), x.narrow(-1, 0, half)], -1);
    }

    /// <summary>(T, R) or (1|B, T, R) as (1|B, 1, T, R) in float64, broadcasting over heads.</summary>
    private static Tensor Heads64(Tensor table)
    {
        var t = table.detach().cpu().to(ScalarType.Float64);
        return (t.dim() == 2 ? t.unsqueeze(0) : t).unsqueeze(1);
    }

    /// <summary>cat(x_rot·cos + rotate_half(x_rot)·sin, x_pass); with <paramref name="magnitudes"/>, rotate_half without the sign.</summary>
    private static Tensor RotaryEmbed(Tensor x, Tensor cos, Tensor sin, bool magnitudes = false)
    {
        long rotary = cos.shape[^1], headDim = x.shape[^1];
        var rot = x.narrow(-1, 0, rotary);
        var turned = magnitudes ? RotateHalf(rot).abs() : RotateHalf(rot);
        var embedded = (rot * cos).Plus(turned * sin);
        return rotary == headDim ? embedded : cat([embedded, x.narrow(-1, rotary, headDim - rotary)], -1);
    }

    /// <summary>Σ|terms| of each gradient element: |g|·|cos| + swap_halves(|g|·|sin|), pass-through |g|.</summary>
    private static Tensor GradTerms(Tensor g, Tensor cos, Tensor sin)
    {
        long rotary = cos.shape[^1], headDim = g.shape[^1];
        var rot = g.narrow(-1, 0, rotary);
        var product = (rot * sin).abs();
        long half = rotary / 2;
        var swapped = cat([product.narrow(-1, half, half), product.narrow(-1, 0, half)], -1);
        var terms = (rot * cos).Plus(swapped);
        return rotary == headDim ? terms : cat([terms, g.narrow(-1, rotary, headDim - rotary)], -1);
    }
}
