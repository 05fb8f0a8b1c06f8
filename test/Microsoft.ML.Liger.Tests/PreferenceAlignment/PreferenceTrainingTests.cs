using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.PreferenceAlignment;
using Microsoft.ML.Liger.Training;

namespace Microsoft.ML.Liger.Tests.PreferenceAlignment;

/// <summary>End-to-end preference alignment on the CPU: every algorithm learns a checkable preference.</summary>
[TestClass]
public sealed class PreferenceTrainingTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [DataRow(PreferenceAlgorithm.Orpo), DataRow(PreferenceAlgorithm.Dpo), DataRow(PreferenceAlgorithm.Cpo), DataRow(PreferenceAlgorithm.SimPo), DataRow(PreferenceAlgorithm.Kto)]
    public void EveryAlgorithm_LearnsTheCheckablePreference(PreferenceAlgorithm algorithm) => Learns(algorithm, null);

    /// <summary>The same on the GPU in bf16 with fp32 master weights (Precision Auto): the CUDA kernels under the estimator.</summary>
    [TestMethod]
    [DataRow(PreferenceAlgorithm.Orpo), DataRow(PreferenceAlgorithm.Dpo), DataRow(PreferenceAlgorithm.Cpo), DataRow(PreferenceAlgorithm.SimPo), DataRow(PreferenceAlgorithm.Kto)]
    public void EveryAlgorithm_LearnsOnCudaInBf16(PreferenceAlgorithm algorithm)
    {
        if (!TorchSharp.torch.cuda.is_available())
            Assert.Inconclusive("no CUDA device: the bf16 preference runs are for the GPU host");
        Learns(algorithm, o =>
        {
            o.Device = "cuda";
            o.Precision = TrainingPrecision.Auto;
        });
    }

    private void Learns(PreferenceAlgorithm algorithm, Action<PreferenceAlignmentOptions>? change)
    {
        var ml = new MLContext(seed: 1);
        var pairs = PreferenceFixtures.Pairs(48, seed: 11);
        var reports = new List<TrainingProgress>();
        var options = PreferenceFixtures.Options(algorithm, o =>
        {
            o.MaxSteps = 24;
            o.OnProgress = reports.Add;
            change?.Invoke(o);
        });
        (double Margin, double Accuracy) before = default;
        var estimator = ml.Liger().PreferenceAlignment(options);
        estimator.InspectModels = (when, policy, _) =>
        {
            // Not disposed: the wrapper would free the policy, which trains next.
            if (when == "start")
                before = PreferenceFixtures.Preference(new CausalLMTransformer(policy, options.Tokenizer!), pairs);
        };
        var data = algorithm == PreferenceAlgorithm.Kto
            ? ml.Data.LoadFromEnumerable(pairs.Select(p => new KtoRow { Prompt = p.Prompt, Completion = p.Chosen, Label = true })
                .Concat(pairs.Select(p => new KtoRow { Prompt = p.Prompt, Completion = p.Rejected, Label = false })))
            : ml.Data.LoadFromEnumerable(pairs);
        using var model = estimator.Fit(data);
        var after = PreferenceFixtures.Preference(model, pairs);
        TestContext.WriteLine($"{algorithm}: margin {before.Margin:F3} -> {after.Margin:F3}, accuracy {before.Accuracy:P0} -> {after.Accuracy:P0}");
        foreach (var r in reports.Where((_, i) => i % 6 == 0 || i == reports.Count - 1))
            TestContext.WriteLine(r.ToString());

        Assert.IsGreaterThan(before.Margin + 5.0, after.Margin, $"{algorithm}: the mean log-prob margin of chosen over rejected rises by more than 5 nats");
        Assert.IsGreaterThanOrEqualTo(0.95, after.Accuracy, $"{algorithm}: at least 95% of the pairs prefer the chosen response after training");
        Assert.AreEqual(algorithm, model.Info.Alignment!.Algorithm);
        if (change is not null)
            Assert.AreEqual(TorchSharp.torch.ScalarType.BFloat16, model.Model.LmHeadWeight.dtype, "Auto trains in bf16 on the GPU");
        var first = reports[0].Metrics!;
        var last = reports[^1].Metrics!;
        Assert.IsGreaterThan(first["rewards/margins"], last["rewards/margins"], "the reported reward margin rises");
        string[] expected = algorithm == PreferenceAlgorithm.Kto
            ? ["rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected", "kl"]
            : ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"];
        foreach (var name in expected)
            Assert.IsTrue(last.ContainsKey(name), $"{algorithm} reports {name}");
        Assert.AreEqual(algorithm is PreferenceAlgorithm.Orpo or PreferenceAlgorithm.Cpo, last.ContainsKey("nll_loss"), "nll_loss is reported when the NLL term is on");
    }

    [TestMethod]
    public void ValidationSet_IsEvaluated_WithTheLossAndMetrics_AndItsLossDrops()
    {
        var ml = new MLContext(seed: 1);
        var log = new List<string>();
        ml.Log += (_, e) => { lock (log) log.Add(e.Message); };
        var reports = new List<TrainingProgress>();
        var options = PreferenceFixtures.Options(PreferenceAlgorithm.Dpo, o =>
        {
            o.MaxSteps = 16;
            o.EvalInterval = 4;
            o.ValidationSet = ml.Data.LoadFromEnumerable(PreferenceFixtures.Pairs(12, seed: 98));
            o.OnProgress = reports.Add;
        });
        using var model = ml.Liger().PreferenceAlignment(options).Fit(ml.Data.LoadFromEnumerable(PreferenceFixtures.Pairs(40, seed: 97)));
        var evals = reports.Where(r => r.EvalLoss is not null).ToList();
        CollectionAssert.AreEqual(new[] { 4, 8, 12, 16 }, evals.Select(r => r.Step).ToArray());
        CollectionAssert.AreEqual(evals.Select(r => r.EvalLoss!.Value).ToArray(), model.Info.EvalLosses.Select(e => e.Loss).ToArray());
        Assert.IsLessThan(evals[0].EvalLoss!.Value, evals[^1].EvalLoss!.Value, "validation DPO loss drops");
        Assert.IsLessThan(Math.Log(2), evals[0].EvalLoss!.Value, "below ln 2 (policy = reference) after 4 steps");
        var metrics = evals[^1].Metrics!;
        Assert.IsTrue(metrics["rewards/accuracies"] is >= 0 and <= 1);
        Assert.AreEqual(metrics["rewards/chosen"] - metrics["rewards/rejected"], metrics["rewards/margins"], 1e-5 * Math.Max(1, Math.Abs(metrics["rewards/margins"])), "margins = chosen − rejected (float32 rewards)");
        lock (log)
            Assert.IsTrue(log.Any(m => m.Contains("eval loss") && m.Contains("rewards/margins")), "evaluations reach ML.NET's log with their metrics");
    }
}
