using Liger.Kernels.Runtime;
using Microsoft.ML.Liger.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.FineTuning;

/// <summary>
/// The trainer's AdamW update (<see cref="AdamWStep"/>, every number held in a Scalar) against TorchSharp's own
/// <c>AdamW.step()</c>, which it replaces because that step passes unheld temporary Scalars to native code.
/// </summary>
[TestClass]
public sealed class AdamWStepTests
{
    [TestMethod]
    [DataRow(0.0), DataRow(0.05)]
    public void AdamWStep_UpdatesWeightsAndMomentsBitForBit_AsTorchSharpsStep(double weightDecay)
    {
        var seed = Random.Shared.Next();
        var generator = new Random(seed);
        // Odd sizes, fp32: the update is elementwise, so any reordering of its operations shows up in the bits.
        Parameter[] Make() { manual_seed(seed); return [new Parameter(randn(7, 13)), new Parameter(randn(5))]; }
        var ours = Make();
        var theirs = Make();
        var ourOptimizer = new AdamW(ours, lr: 1e-3, beta1: 0.85, beta2: 0.995, eps: 1e-6, weight_decay: weightDecay);
        var theirOptimizer = new AdamW(theirs, lr: 1e-3, beta1: 0.85, beta2: 0.995, eps: 1e-6, weight_decay: weightDecay);
        for (int step = 0; step < 5; step++)
        {
            double lr = 1e-3 * (1 + generator.NextDouble());   // the trainer sets the rate before each step
            for (int i = 0; i < ours.Length; i++)
            {
                using var grad = randn(ours[i].shape).TimesInPlace(Math.Pow(10, generator.Next(-3, 2)));
                ours[i].grad = step == 2 && i == 1 ? null : grad.clone();   // a parameter without a gradient is skipped
                theirs[i].grad = step == 2 && i == 1 ? null : grad.clone();
            }
            foreach (var group in ourOptimizer.ParamGroups) group.LearningRate = lr;
            foreach (var group in theirOptimizer.ParamGroups) group.LearningRate = lr;
            AdamWStep.Apply(ourOptimizer);
#pragma warning disable RS0030 // the reference being replaced: its unheld Scalars are what AdamWStep exists to avoid
            theirOptimizer.step();
#pragma warning restore RS0030
            var ourStates = ourOptimizer.state_dict().State.Cast<AdamW.State>().ToArray();
            var theirStates = theirOptimizer.state_dict().State.Cast<AdamW.State>().ToArray();
            for (int i = 0; i < ours.Length; i++)
            {
                var context = $"parameter {i}, step {step}, weight decay {weightDecay}, seed {seed}";
                Assert.IsTrue(Same(ours[i].detach(), theirs[i].detach()), $"weights differ: {context}");
                Assert.AreEqual(theirStates[i].step, ourStates[i].step, $"step count: {context}");
                Assert.IsTrue(Same(ourStates[i].exp_avg, theirStates[i].exp_avg), $"first moment differs: {context}");
                Assert.IsTrue(Same(ourStates[i].exp_avg_sq, theirStates[i].exp_avg_sq), $"second moment differs: {context}");
            }
        }
        Assert.IsFalse(Same(ours[0].detach(), Make()[0].detach()), "the weights moved");
    }

    private static bool Same(Tensor a, Tensor b)
    {
        using var same = a.eq(b).all();
        return same.item<bool>();
    }
}
