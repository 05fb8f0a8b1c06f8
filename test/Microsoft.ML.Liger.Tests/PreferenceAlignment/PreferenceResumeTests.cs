using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.PreferenceAlignment;
using Microsoft.ML.Liger.Tests.FineTuning;
using Microsoft.ML.Liger.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.PreferenceAlignment;

/// <summary>Checkpoints, exact resume and cancellation through the shared loop.</summary>
[TestClass]
public sealed class PreferenceResumeTests
{
    /// <summary>
    /// Cancelled after step 5 with checkpoints every 3 steps; resumed from step 3's checkpoint (as if the process had
    /// died): the same step losses and weights, bit for bit. For DPO this holds only if the resumed run's reference is
    /// the starting weights again, not the checkpoint's (checked directly too).
    /// </summary>
    [TestMethod]
    [DataRow(PreferenceAlgorithm.Orpo), DataRow(PreferenceAlgorithm.Dpo)]
    public void Resume_EqualsTheUninterruptedRun_BitForBit(PreferenceAlgorithm algorithm)
    {
        var ml = new MLContext(seed: 1);
        var data = PreferenceFixtures.Data(ml, algorithm, 20, seed: 4);
        void Shape(PreferenceAlignmentOptions o) { o.MaxSteps = 9; o.BatchSize = 4; o.GradientAccumulationSteps = 2; }
        var uninterruptedEstimator = ml.Liger().PreferenceAlignment(PreferenceFixtures.Options(algorithm, Shape));
        Dictionary<string, Tensor>? startingWeights = null;
        uninterruptedEstimator.InspectModels = (when, policy, _) =>
        {
            if (when == "start") startingWeights = policy.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        };
        using var uninterrupted = uninterruptedEstimator.Fit(data);

        string folder = FineTuneFixtures.TempFolder($"resume-{algorithm}");
        using var cancel = new CancellationTokenSource();
        var interrupted = PreferenceFixtures.Options(algorithm, o =>
        {
            Shape(o);
            o.CheckpointFolder = folder;
            o.CheckpointInterval = 3;
            o.LoggingInterval = 2;
            o.CancellationToken = cancel.Token;
            o.OnProgress = p => { if (p.Step == 4) cancel.Cancel(); };
        });
        Assert.ThrowsExactly<OperationCanceledException>(() => ml.Liger().PreferenceAlignment(interrupted).Fit(data));
        CollectionAssert.AreEqual(new[] { 3, 4 }, TrainingCheckpoints.List(folder).Select(c => c.Step).ToArray(), "interval checkpoint plus one at cancellation");
        Directory.Delete(TrainingCheckpoints.Latest(folder)!, recursive: true);

        var resumedEstimator = ml.Liger().PreferenceAlignment(PreferenceFixtures.Options(algorithm, o => { Shape(o); o.CheckpointFolder = folder; o.ResumeFromCheckpoint = true; }));
        resumedEstimator.InspectModels = (when, _, reference) =>
        {
            if (when != "start" || reference is null) return;
            foreach (var (name, parameter) in reference.named_parameters())
                Assert.IsTrue(Same(parameter, startingWeights![name]), $"{name}: the resumed run's reference is the starting weights");
        };
        using var finished = resumedEstimator.Fit(data);

        CollectionAssert.AreEqual(uninterrupted.Info.StepLosses.ToArray(), finished.Info.StepLosses.ToArray(), "step losses, bit for bit (CPU, fp32)");
        var trained = finished.Model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, parameter) in uninterrupted.Model.named_parameters())
            Assert.IsTrue(Same(parameter, trained[name]), $"{name} differs after resume");
    }

    [TestMethod]
    public void Resume_WithOtherLossSettings_IsRefused_NamingThem()
    {
        var ml = new MLContext(seed: 1);
        var data = PreferenceFixtures.Data(ml, PreferenceAlgorithm.Dpo, 12, seed: 5);
        string folder = FineTuneFixtures.TempFolder("resume-shape");
        using var cancel = new CancellationTokenSource();
        Assert.ThrowsExactly<OperationCanceledException>(() => ml.Liger().PreferenceAlignment(PreferenceFixtures.Options(PreferenceAlgorithm.Dpo, o =>
        {
            o.CheckpointFolder = folder;
            o.CancellationToken = cancel.Token;
            o.OnProgress = p => { if (p.Step == 2) cancel.Cancel(); };
        })).Fit(data));
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Liger().PreferenceAlignment(PreferenceFixtures.Options(PreferenceAlgorithm.Dpo, o =>
        {
            o.CheckpointFolder = folder;
            o.ResumeFromCheckpoint = true;
            o.Beta = 0.5;
        })).Fit(data));
        StringAssert.Contains(e.Message, "Beta: checkpoint 0.1, now 0.5");
    }

    [TestMethod]
    public void Cancellation_LeavesALoadableCheckpoint_ThatRecordsTheAlignment()
    {
        var ml = new MLContext(seed: 1);
        var pairs = PreferenceFixtures.Pairs(16, seed: 6);
        string folder = FineTuneFixtures.TempFolder("cancel-orpo");
        using var cancel = new CancellationTokenSource();
        var options = PreferenceFixtures.Options(null, o =>
        {
            o.CheckpointFolder = folder;
            o.CancellationToken = cancel.Token;
            o.OnProgress = p => { if (p.Step == 3) cancel.Cancel(); };
        });
        Assert.ThrowsExactly<OperationCanceledException>(() => ml.Liger().Orpo(options).Fit(ml.Data.LoadFromEnumerable(pairs)));
        string checkpoint = TrainingCheckpoints.Latest(folder)!;
        Assert.AreEqual(TrainingCheckpoints.Prefix + "0000003", Path.GetFileName(checkpoint));

        using var loaded = ml.Liger().LoadCausalLM(checkpoint);
        Assert.AreEqual(3, loaded.Info.TrainedSteps);
        Assert.AreEqual(PreferenceAlgorithm.Orpo, loaded.Info.Alignment!.Algorithm);
        Assert.AreEqual(0.1, loaded.Info.Alignment.Beta);
        Assert.IsTrue(loaded.Info.Alignment.NllLoss, "ORPO's NLL term is on by default");
        Assert.IsTrue(loaded.Info.Alignment.FinalMetrics!.ContainsKey("rewards/accuracies"), "the last report's metrics");
        Assert.HasCount(3, loaded.Info.StepLosses);
        double logProb = loaded.LogProbability(pairs[0].Prompt, pairs[0].Chosen);
        Assert.IsTrue(double.IsFinite(logProb) && logProb < 0, $"the loaded model scores responses: {logProb}");
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();
}
