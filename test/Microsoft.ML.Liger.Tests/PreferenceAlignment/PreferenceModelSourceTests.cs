using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.PreferenceAlignment;
using Microsoft.ML.Liger.Tests.FineTuning;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.PreferenceAlignment;

/// <summary>Where the policy and the reference come from: a saved fine-tuned model, a reference folder; gradient checkpointing.</summary>
[TestClass]
public sealed class PreferenceModelSourceTests
{
    /// <summary>
    /// A model saved by <see cref="CausalLMTransformer.Save"/> after fine-tuning is the starting point (weights and
    /// tokenizer from the folder), and a reference folder is the reference: with another reference than the starting
    /// weights, DPO's first loss is no longer ln 2, and equals the formula computed from the two models' own scores.
    /// </summary>
    [TestMethod]
    public void SavedFineTunedModel_IsTheStart_AndReferenceModelPath_IsTheReference()
    {
        var ml = new MLContext(seed: 1);
        string saved = FineTuneFixtures.TempFolder("sft");
        using (var sft = ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => o.MaxSteps = 8)).Fit(ml.Data.LoadFromEnumerable(FineTuneFixtures.Rows(32, 1))))
            sft.Save(saved);
        string initial = FineTuneFixtures.TempFolder("sft-0");
        using (var untrained = ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => { o.MaxSteps = 1; o.WarmupSteps = 1; })).Fit(ml.Data.LoadFromEnumerable(FineTuneFixtures.Rows(8, 2))))
            untrained.Save(initial); // warm-up's first step has learning rate 0: the initial weights, saved

        var pairs = PreferenceFixtures.Pairs(6, seed: 5);
        var options = PreferenceFixtures.Options(PreferenceAlgorithm.Dpo, o =>
        {
            o.Tokenizer = null; // from the folder
            o.BaseModelPath = saved;
            o.ReferenceModelPath = initial;
            o.BatchSize = 8;
            o.MaxSteps = 1;
            o.Beta = 0.5;
        });
        using var savedModel = ml.Liger().LoadCausalLM(saved);
        using var referenceModel = ml.Liger().LoadCausalLM(initial);
        var estimator = ml.Liger().PreferenceAlignment(options);
        estimator.InspectModels = (when, policy, reference) =>
        {
            if (when != "start") return;
            var stored = savedModel.Model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, parameter) in policy.named_parameters())
                Assert.IsTrue(parameter.eq(stored[name]).all().item<bool>(), $"{name}: the policy starts from the saved model");
            var frozen = referenceModel.Model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, parameter) in reference!.named_parameters())
                Assert.IsTrue(parameter.eq(frozen[name]).all().item<bool>(), $"{name}: the reference is the reference folder's");
        };
        using var aligned = estimator.Fit(ml.Data.LoadFromEnumerable(pairs));

        // DPO by hand from each model's summed response log-probs (independent of the batch layout and the loss kernels).
        static double LogSigmoid(double x) => x >= 0 ? -Math.Log(1 + Math.Exp(-x)) : x - Math.Log(1 + Math.Exp(x));
        double expected = pairs.Average(p =>
        {
            double policyMargin = savedModel.LogProbability(p.Prompt, p.Chosen) - savedModel.LogProbability(p.Prompt, p.Rejected);
            double referenceMargin = referenceModel.LogProbability(p.Prompt, p.Chosen) - referenceModel.LogProbability(p.Prompt, p.Rejected);
            return -LogSigmoid(0.5 * (policyMargin - referenceMargin));
        });
        double ln2 = Math.Log(2);
        Assert.IsGreaterThan(1e-3, Math.Abs(expected - ln2), "the two models differ, so the first loss is not ln 2");
        Assert.AreEqual(expected, aligned.Info.StepLosses[0], 1e-5 * Math.Max(1, expected), "DPO's first loss against the reference folder");
        Assert.AreEqual(initial, aligned.Info.Alignment!.Reference);
    }

    [TestMethod]
    public void GradientCheckpointing_GivesTheSameRun_BitForBit()
    {
        var ml = new MLContext(seed: 1);
        var data = PreferenceFixtures.Data(ml, PreferenceAlgorithm.Kto, 10, seed: 8);
        using var plain = ml.Liger().PreferenceAlignment(PreferenceFixtures.Options(PreferenceAlgorithm.Kto, o => o.MaxSteps = 4)).Fit(data);
        using var checkpointed = ml.Liger().PreferenceAlignment(PreferenceFixtures.Options(PreferenceAlgorithm.Kto, o => { o.MaxSteps = 4; o.GradientCheckpointing = true; })).Fit(data);
        CollectionAssert.AreEqual(plain.Info.StepLosses.ToArray(), checkpointed.Info.StepLosses.ToArray(), "the recompute runs the same ops (CPU, fp32)");
        var weights = checkpointed.Model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, parameter) in plain.Model.named_parameters())
            Assert.IsTrue(parameter.eq(weights[name]).all().item<bool>(), $"{name}");
        Assert.IsFalse(checkpointed.Model.GradientCheckpointing, "the loop restores the model's setting");
    }

    [TestMethod]
    public void BFloat16_TrainsWithMasterWeights_AndTheReferenceStaysBf16()
    {
        var ml = new MLContext(seed: 1);
        var options = PreferenceFixtures.Options(PreferenceAlgorithm.Dpo, o => { o.Precision = Microsoft.ML.Liger.Training.TrainingPrecision.BFloat16; o.MaxSteps = 6; });
        var estimator = ml.Liger().PreferenceAlignment(options);
        estimator.InspectModels = (_, _, reference) => Assert.AreEqual(ScalarType.BFloat16, reference!.LmHeadWeight.dtype);
        using var model = estimator.Fit(PreferenceFixtures.Data(ml, PreferenceAlgorithm.Dpo, 16, seed: 9));
        Assert.AreEqual(ScalarType.BFloat16, model.Model.LmHeadWeight.dtype);
        Assert.AreEqual(Math.Log(2), model.Info.StepLosses[0], 1e-6, "policy = reference at the start, in bf16 too");
        Assert.IsLessThan(Math.Log(2) - 0.05, model.Info.StepLosses[^1], "and it learns");
    }
}
