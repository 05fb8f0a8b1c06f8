using Microsoft.ML.Liger.FineTuning;
using Microsoft.ML.Liger.Training;

namespace Microsoft.ML.Liger.Tests.FineTuning;

/// <summary>
/// Issue 16, defect 9: a resume refuses every option that would change the trajectory, listing each with its old and new
/// value; options that only change how the run is watched, saved or computed may change; the total steps may grow when the
/// schedule does not depend on it (docs/fine-tuning.md, "Resuming").
/// </summary>
[TestClass]
public sealed class ResumeOptionsTests
{
    private static IDataView Data(MLContext ml) => ml.Data.LoadFromEnumerable(FineTuneFixtures.Rows(24, seed: 6));

    /// <summary>A run cancelled after step 3 (checkpoint-0000003 in the returned folder).</summary>
    private static string Interrupted(MLContext ml, Action<FineTuneCausalLMOptions>? shape = null)
    {
        string folder = FineTuneFixtures.TempFolder("resume-options");
        using var cancel = new CancellationTokenSource();
        Assert.ThrowsExactly<OperationCanceledException>(() => ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o =>
        {
            shape?.Invoke(o);
            o.CheckpointFolder = folder;
            o.CancellationToken = cancel.Token;
            o.OnProgress = p => { if (p.Step == 3) cancel.Cancel(); };
        })).Fit(Data(ml)));
        return folder;
    }

    [TestMethod]
    public void OptionsThatChangeTheTrajectory_AreRefused_EachNamedWithBothValues()
    {
        var ml = new MLContext(seed: 1);
        string folder = Interrupted(ml);
        var changed = FineTuneFixtures.Options(o =>
        {
            o.CheckpointFolder = folder;
            o.ResumeFromCheckpoint = true;
            o.LearningRate = 1e-3;
            o.WeightDecay = 0.01;
            o.Beta2 = 0.99;
            o.ArchitectureOverrides = new Dictionary<string, object?>(o.ArchitectureOverrides!) { ["rope_theta"] = 500000.0 };
        });
        var error = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Liger().FineTuneCausalLM(changed).Fit(Data(ml)));
        StringAssert.Contains(error.Message, "4 options differ");
        StringAssert.Contains(error.Message, "LearningRate: checkpoint 0.003, now 0.001");
        StringAssert.Contains(error.Message, "WeightDecay: checkpoint 0, now 0.01");
        StringAssert.Contains(error.Message, "Beta2: checkpoint 0.999, now 0.99");
        StringAssert.Contains(error.Message, "config.json field 'rope_theta'");
        Assert.AreEqual(3, TrainingCheckpoints.List(folder).Single().Step, "nothing was written");
    }

    [TestMethod]
    public void OptionsThatOnlyWatchSaveOrRecompute_MayChange_AndTheTrajectoryIsTheSame()
    {
        var ml = new MLContext(seed: 1);
        using var uninterrupted = ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options()).Fit(Data(ml));
        string folder = Interrupted(ml);
        var reports = new List<int>();
        var resumed = FineTuneFixtures.Options(o =>
        {
            o.CheckpointFolder = folder;
            o.ResumeFromCheckpoint = true;
            o.LoggingInterval = 4;
            o.CheckpointInterval = 2;
            o.CheckpointsToKeep = 1;
            o.SkipNonFiniteSteps = true;
            o.GradientCheckpointing = true;
            o.OnProgress = p => reports.Add(p.Step);
        });
        using var finished = ml.Liger().FineTuneCausalLM(resumed).Fit(Data(ml));
        CollectionAssert.AreEqual(uninterrupted.Info.StepLosses.ToArray(), finished.Info.StepLosses.ToArray(), "the same trajectory, bit for bit");
        CollectionAssert.AreEqual(new[] { 4, 8, 12 }, reports.ToArray(), "the new logging interval applies");
        Assert.AreEqual(12, TrainingCheckpoints.List(folder).Single().Step, "the new checkpoint options apply");
    }

    [TestMethod]
    public void MoreSteps_WithAScheduleThatIgnoresTheTotal_EqualsALongerRun_AndOtherwiseIsRefused()
    {
        var ml = new MLContext(seed: 1);
        void Constant(FineTuneCausalLMOptions o) { o.Schedule = LearningRateSchedule.Constant; o.WarmupSteps = 2; }
        using var longer = ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => { Constant(o); o.MaxSteps = 10; })).Fit(Data(ml));
        string folder = FineTuneFixtures.TempFolder("extend");
        using (ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => { Constant(o); o.MaxSteps = 6; o.CheckpointFolder = folder; })).Fit(Data(ml)))
        {
        }
        using var extended = ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o =>
        {
            Constant(o);
            o.MaxSteps = 10;
            o.CheckpointFolder = folder;
            o.ResumeFromCheckpoint = true;
        })).Fit(Data(ml));
        CollectionAssert.AreEqual(longer.Info.StepLosses.ToArray(), extended.Info.StepLosses.ToArray(), "6 steps, then 4 more, as one run of 10");
        FineTuneTrainingTests.ModelsAreBitEqual(longer.Model, extended.Model);

        string linear = FineTuneFixtures.TempFolder("extend-linear");
        using (ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => { o.MaxSteps = 6; o.CheckpointFolder = linear; })).Fit(Data(ml)))
        {
        }
        var error = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o =>
        {
            o.MaxSteps = 10;
            o.CheckpointFolder = linear;
            o.ResumeFromCheckpoint = true;
        })).Fit(Data(ml)));
        StringAssert.Contains(error.Message, "total steps (Epochs or MaxSteps): checkpoint 6, now 10");
        StringAssert.Contains(error.Message, "Constant");
    }
}
