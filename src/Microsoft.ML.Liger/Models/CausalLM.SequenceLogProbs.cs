using Liger.Kernels.Losses;
using Liger.Kernels.Runtime;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models;

public sealed partial class CausalLM
{
    /// <summary>The hidden states as lm_head's input for a loss that applies lm_head itself: divided by Granite's logits scaling.</summary>
    internal Tensor HeadInput(Tensor hidden) => LogitsScaling == 1.0 ? hidden : hidden.DividedBy(LogitsScaling);

    /// <summary>
    /// Per-sequence log-probs (float32, B) of <paramref name="target"/> (B, T), shifted as the preference losses take
    /// them, without gradients and without the logits (chunk by chunk, Gemma's soft cap and Granite's scaling applied):
    /// what a frozen reference model, KTO's KL baseline and response scoring read.
    /// </summary>
    internal Tensor SequenceLogProbs(CausalLMInput input, Tensor target, bool average)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var hidden = HeadInput(HiddenStates(input));
        return LigerFusedLinearSequenceLogProbs.Apply(hidden, LmHeadWeight, target, null, average, softcap: FinalLogitSoftcap)
            .MoveToOuterDisposeScope();
    }
}
