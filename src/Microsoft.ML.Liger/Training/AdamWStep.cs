using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Training;

/// <summary>
/// TorchSharp's <c>AdamW.step()</c>, operation for operation (so bit for bit the same update), with every number held in
/// a Scalar through its native call. TorchSharp 0.107's step passes six temporary Scalars per parameter (the decay factor,
/// alpha, value, ε, the step size) that nothing references during the call, so a garbage collection then can free one
/// while libtorch reads it: a random crash once per many million calls (docs/design.md, "Temporaries TorchSharp does not
/// keep alive"). The state (step count, moments) stays in the optimizer's own State objects, so checkpoints are unchanged.
/// </summary>
internal static class AdamWStep
{
    /// <summary>One AdamW update of every parameter of <paramref name="optimizer"/> that has a gradient.</summary>
    public static void Apply(AdamW optimizer)
    {
        var states = optimizer.state_dict().State;
        int index = 0;
        using var _ = no_grad();
        foreach (var group in optimizer.ParamGroups.Cast<ParamGroup>())
        {
            var options = (AdamW.Options)group.Options;
            if (options.amsgrad == true || options.maximize == true)
                throw new NotSupportedException("AdamWStep implements AdamW without amsgrad and maximize, the only form the trainer builds.");
            double lr = options.LearningRate!.Value, beta1 = options.beta1!.Value, beta2 = options.beta2!.Value;
            foreach (var param in group.Parameters)
            {
                var state = (AdamW.State)states[index++];
                if (param.grad is not { } grad)
                    continue;
                using var scope = NewDisposeScope();   // frees this parameter's temporaries before the next one's
                state.step += 1;
                double biasCorrection1 = 1 - Math.Pow(beta1, state.step), biasCorrection2 = 1 - Math.Pow(beta2, state.step);
                using Scalar decay = (1 - lr * options.weight_decay!.Value).ToScalar(), b1 = beta1.ToScalar(), b2 = beta2.ToScalar(),
                    oneMinusB1 = (1 - beta1).ToScalar(), oneMinusB2 = (1 - beta2).ToScalar(), eps = options.eps!.Value.ToScalar(),
                    one = 1L.ToScalar(), rootBias2 = Math.Sqrt(biasCorrection2).ToScalar(), negativeStep = (-(lr / biasCorrection1)).ToScalar();
                param.mul_(decay);
                state.exp_avg.mul_(b1).add_(grad, oneMinusB1);
                state.exp_avg_sq.mul_(b2).addcmul_(grad, grad, oneMinusB2);
                var denominator = state.exp_avg_sq.sqrt().div(rootBias2).add_(eps, one);
                param.addcdiv_(state.exp_avg, denominator, negativeStep);
            }
        }
    }
}
