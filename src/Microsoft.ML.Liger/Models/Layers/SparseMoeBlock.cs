using Liger.Kernels.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models.Layers;

/// <summary>
/// Mixtral's sparse mixture of experts (Hugging Face names: <c>block_sparse_moe.gate</c>,
/// <c>block_sparse_moe.experts.N.w1/w2/w3</c>): a linear router, softmax in float32, the top-k experts per
/// token with their weights renormalised to sum to one and rounded to the model dtype, and each expert a
/// gated SiLU MLP (w1 gate, w3 up, w2 down) on Liger's SwiGLU kernel when enabled. Returns the router
/// logits too, for the load-balancing loss.
/// </summary>
internal sealed class SparseMoeBlock : nn.Module
{
    private readonly Linear gate;
    private readonly ModuleList<GatedMlp> experts;
    private readonly long topK;

    internal SparseMoeBlock(CausalLMConfig config, bool liger, ScalarType dtype, Device? device, bool recompute = true) : base(nameof(SparseMoeBlock))
    {
        long count = config.NumLocalExperts ?? throw new InvalidDataException("config.json field 'num_local_experts' is missing (Mixtral).");
        topK = config.NumExpertsPerToken ?? throw new InvalidDataException("config.json field 'num_experts_per_tok' is missing (Mixtral).");
        if (topK < 1 || topK > count)
            throw new InvalidDataException($"config.json field 'num_experts_per_tok' must be between 1 and num_local_experts {count}; got {topK}.");
        register_module("gate", gate = nn.Linear(config.HiddenSize, count, hasBias: false, device: device, dtype: dtype));
        experts = nn.ModuleList(Enumerable.Range(0, (int)count).Select(_ =>
            new GatedMlp(config.HiddenSize, config.IntermediateSize, fusedGateUp: false, bias: false,
                GatedMlp.ActivationFor(config.HiddenAct), liger, dtype, device, ("w1", "w3", "w2")) { RecomputeProduct = recompute }).ToArray());
        register_module("experts", experts);
    }

    /// <summary>Number of experts.</summary>
    public int ExpertCount => experts.Count;

    /// <summary>The block's output (B, T, H) and the router logits (B·T, experts).</summary>
    public (Tensor Output, Tensor RouterLogits) forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long batch = x.shape[0], length = x.shape[1], hidden = x.shape[2];
        var tokens = x.reshape(-1, hidden);
        var routerLogits = gate.forward(tokens);
        var routing = routerLogits.softmax(1, ScalarType.Float32);
        var (weights, selected) = routing.topk((int)topK, -1);
        weights = (weights / weights.sum([-1L], keepdim: true)).to(x.dtype);
        var output = zeros_like(tokens);
        // Per expert: the tokens that chose it and in which of their k slots, as transformers loops.
        var hits = nn.functional.one_hot(selected, experts.Count).permute(2, 1, 0); // (experts, k, tokens)
        for (int e = 0; e < experts.Count; e++)
        {
            var where = hits[e].nonzero(); // rows of (slot, token)
            if (where.shape[0] == 0)
                continue;
            var (slot, token) = (where[.., 0], where[.., 1]);
            var expertOut = experts[e].forward(tokens.index_select(0, token)) * weights[token, slot].unsqueeze(-1);
            output = output.IndexAdded(0, token, expertOut.to(x.dtype));
        }
        return (output.reshape(batch, length, hidden).MoveToOuterDisposeScope(), routerLogits.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Switch Transformer's load-balancing loss over all layers' router logits, as transformers'
    /// load_balancing_loss_func: experts × Σ (fraction of tokens routed to each expert per slot × mean
    /// router probability), padding tokens left out when an attention mask is given.
    /// </summary>
    public static Tensor LoadBalancingLoss(IReadOnlyList<Tensor> routerLogits, int experts, long topK, Tensor? attentionMask)
    {
        using var scope = NewDisposeScope();
        var logits = cat(routerLogits.Select(l => l.to(routerLogits[0].device)).ToArray(), 0);
        var routing = logits.softmax(-1, ScalarType.Float32);
        var (_, selected) = routing.topk((int)topK, -1);
        var expertMask = nn.functional.one_hot(selected, experts).to(ScalarType.Float32); // (N, k, E)
        Tensor tokensPerExpert, probabilityPerExpert;
        if (attentionMask is null)
        {
            tokensPerExpert = expertMask.mean([0L]);
            probabilityPerExpert = routing.mean([0L]);
        }
        else
        {
            long batch = attentionMask.shape[0], length = attentionMask.shape[1];
            long layers = logits.shape[0] / (batch * length);
            var mask = attentionMask.to(ScalarType.Float32, logits.device);
            var slotMask = mask[TensorIndex.None, .., .., TensorIndex.None, TensorIndex.None]
                .expand(layers, batch, length, topK, experts).reshape(-1, topK, experts);
            tokensPerExpert = (expertMask * slotMask).sum([0L]) / slotMask.sum([0L]);
            var routerMask = mask[TensorIndex.None, .., .., TensorIndex.None].expand(layers, batch, length, experts).reshape(-1, experts);
            probabilityPerExpert = (routing * routerMask).sum([0L]) / routerMask.sum([0L]);
        }
        return (tokensPerExpert * probabilityPerExpert.unsqueeze(0)).sum().Times(experts).MoveToOuterDisposeScope();
    }
}
