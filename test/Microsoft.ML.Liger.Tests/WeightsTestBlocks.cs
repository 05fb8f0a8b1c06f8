using Liger.Kernels.Runtime;
using Liger.Kernels.Modules;
using Liger.Kernels.Ops;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests;

/// <summary>linear → gelu → linear with a residual, in eager TorchSharp ops.</summary>
internal sealed class EagerBlock : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // state-dict names
    public Linear fc1;
    public Linear fc2;
#pragma warning restore IDE1006

    public EagerBlock(long hidden, long inner) : base(nameof(EagerBlock))
    {
        fc1 = nn.Linear(hidden, inner);
        fc2 = nn.Linear(inner, hidden);
        RegisterComponents();
    }

    /// <summary>Whether each call's inner activation required grad (false: the call built no graph).</summary>
    public List<bool> InnerRequiresGrad { get; } = [];

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var inner = nn.functional.gelu(fc1.forward(x));
        InnerRequiresGrad.Add(inner.requires_grad);
        return (x.Plus(fc2.forward(inner))).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// A decoder layer made of Liger ops: RMSNorm, q/k projections rotated by RoPE (cos and sin are inputs),
/// an output projection, then RMSNorm and the SwiGLU MLP, each with a residual.
/// </summary>
internal sealed class LigerBlock : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006 // state-dict names
    public LigerRMSNorm input_layernorm;
    public Linear q_proj;
    public Linear k_proj;
    public Linear o_proj;
    public LigerRMSNorm post_attention_layernorm;
    public LigerSwiGLUMLP mlp;
#pragma warning restore IDE1006
    private readonly long heads, headDim;

    public LigerBlock(long hidden, long heads, long headDim, long inner) : base(nameof(LigerBlock))
    {
        this.heads = heads;
        this.headDim = headDim;
        input_layernorm = new LigerRMSNorm(hidden);
        q_proj = nn.Linear(hidden, heads * headDim, hasBias: false);
        k_proj = nn.Linear(hidden, heads * headDim, hasBias: false);
        o_proj = nn.Linear(heads * headDim, hidden, hasBias: false);
        post_attention_layernorm = new LigerRMSNorm(hidden);
        mlp = new LigerSwiGLUMLP(hidden, inner);
        RegisterComponents();
        using (no_grad())
        {
            // Not all ones, so that the norms' weights matter to the gradients.
            input_layernorm.weight.uniform_(0.5, 1.5);
            post_attention_layernorm.weight.uniform_(0.5, 1.5);
        }
    }

    public override Tensor forward(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        long batch = x.shape[0], time = x.shape[1];
        var h = input_layernorm.forward(x);
        var q = q_proj.forward(h).view(batch, time, heads, headDim).transpose(1, 2);
        var k = k_proj.forward(h).view(batch, time, heads, headDim).transpose(1, 2);
        var (qe, ke) = LigerRotaryPosEmb.Apply(q, k, cos, sin);
        var mixed = (qe * ke.sigmoid()).transpose(1, 2).reshape(batch, time, heads * headDim);
        var attended = x.Plus(o_proj.forward(mixed));
        return (attended.Plus(mlp.forward(post_attention_layernorm.forward(attended)))).MoveToOuterDisposeScope();
    }
}
