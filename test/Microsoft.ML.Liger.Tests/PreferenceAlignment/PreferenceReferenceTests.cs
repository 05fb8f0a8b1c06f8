using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.PreferenceAlignment;
using Microsoft.ML.Liger.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.PreferenceAlignment;

/// <summary>DPO's and KTO's frozen reference model: the policy's starting weights, never trained, never a checkpoint's.</summary>
[TestClass]
public sealed class PreferenceReferenceTests
{
    /// <summary>
    /// At the first step the policy is the reference, so every log-ratio is 0: DPO's loss is −log σ(0) = ln 2 and KTO's
    /// is 1 − σ(0) = 0.5 (its KL baseline is 0 too), whatever the data; the same with precomputed reference log-probs.
    /// </summary>
    [TestMethod]
    [DataRow(PreferenceAlgorithm.Dpo, false), DataRow(PreferenceAlgorithm.Dpo, true), DataRow(PreferenceAlgorithm.Kto, false), DataRow(PreferenceAlgorithm.Kto, true)]
    public void FirstStep_PolicyIsTheReference_DpoLossIsLn2_KtoLossIsHalf(PreferenceAlgorithm algorithm, bool precompute)
    {
        var ml = new MLContext(seed: 1);
        var reports = new List<TrainingProgress>();
        var options = PreferenceFixtures.Options(algorithm, o =>
        {
            o.MaxSteps = 3;
            o.GradientAccumulationSteps = 2; // the step's loss is the weighted sum of two micro-batches' losses
            o.BatchSize = 5;
            o.PrecomputeReferenceLogProbs = precompute;
            o.OnProgress = reports.Add;
        });
        using var model = ml.Liger().PreferenceAlignment(options).Fit(PreferenceFixtures.Data(ml, algorithm, 17, seed: Random.Shared.Next()));
        double expected = algorithm == PreferenceAlgorithm.Dpo ? Math.Log(2) : 0.5;
        Assert.AreEqual(expected, model.Info.StepLosses[0], 1e-6, $"{algorithm}: first step loss");
        Assert.AreNotEqual(expected, model.Info.StepLosses[^1], 1e-4, "later steps move away from it");
        var first = reports[0].Metrics!;
        Assert.AreEqual(0.0, first["rewards/chosen"], 1e-6, "rewards are β times log-ratios, 0 at the start");
        Assert.AreEqual(0.0, first["rewards/rejected"], 1e-6);
        if (algorithm == PreferenceAlgorithm.Kto)
            Assert.AreEqual(0.0, first["kl"], 1e-6, "the KL baseline between identical models");
    }

    [TestMethod]
    [DataRow(PreferenceAlgorithm.Dpo), DataRow(PreferenceAlgorithm.Kto)]
    public void ReferenceModel_NeverChanges_AndGetsNoGradient(PreferenceAlgorithm algorithm)
    {
        var ml = new MLContext(seed: 1);
        var estimator = ml.Liger().PreferenceAlignment(PreferenceFixtures.Options(algorithm, o => o.MaxSteps = 6));
        Dictionary<string, Tensor>? atStart = null, policyAtStart = null;
        int checkedAtEnd = 0;
        estimator.InspectModels = (when, policy, reference) =>
        {
            Assert.IsNotNull(reference, "DPO and KTO hold a reference model unless its log-probs are precomputed");
            Assert.AreNotSame(policy, reference);
            if (when == "start")
            {
                atStart = Snapshot(reference);
                policyAtStart = Snapshot(policy);
                foreach (var (name, weight) in atStart)
                    Assert.IsTrue(Same(weight, policyAtStart[name]), $"{name}: the default reference is the starting weights");
                return;
            }
            Assert.IsFalse(reference.training, "the reference runs in eval mode");
            foreach (var (name, parameter) in reference.named_parameters())
            {
                Assert.IsFalse(parameter.requires_grad, $"{name} of the reference requires no gradient");
                Assert.IsNull(parameter.grad, $"{name} of the reference has no gradient");
                Assert.IsTrue(Same(parameter, atStart![name]), $"{name} of the reference is unchanged");
                checkedAtEnd++;
            }
            Assert.IsTrue(policy.named_parameters().Any(p => !Same(p.parameter, policyAtStart![p.name])), "the policy did train");
        };
        using var model = estimator.Fit(PreferenceFixtures.Data(ml, algorithm, 16, seed: 2));
        Assert.IsGreaterThan(0, checkedAtEnd, "the reference was inspected after training");
    }

    [TestMethod]
    public void PrecomputedReference_GivesTheSameRun_AndFreesTheModel()
    {
        var ml = new MLContext(seed: 1);
        var data = PreferenceFixtures.Data(ml, PreferenceAlgorithm.Dpo, 20, seed: 3);
        using var live = ml.Liger().PreferenceAlignment(PreferenceFixtures.Options(PreferenceAlgorithm.Dpo)).Fit(data);
        var precomputed = ml.Liger().PreferenceAlignment(PreferenceFixtures.Options(PreferenceAlgorithm.Dpo, o => o.PrecomputeReferenceLogProbs = true));
        int inspected = 0;
        precomputed.InspectModels = (_, _, reference) =>
        {
            Assert.IsNull(reference, "the reference model is freed once its log-probs are computed");
            inspected++;
        };
        using var fromTable = precomputed.Fit(data);
        Assert.AreEqual(2, inspected);
        // Both read the same weights through the same kernels; padding differs (per batch vs per precompute batch), so
        // the reference log-probs may differ in the last float32 bits.
        var a = live.Info.StepLosses;
        var b = fromTable.Info.StepLosses;
        Assert.HasCount(a.Count, b);
        for (int i = 0; i < a.Count; i++)
            Assert.AreEqual(a[i], b[i], 1e-4 * Math.Max(1, Math.Abs(a[i])), $"step {i + 1} loss");
        Assert.IsTrue(fromTable.Info.Alignment!.PrecomputedReference);
    }

    private static Dictionary<string, Tensor> Snapshot(CausalLM model) =>
        model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();
}
