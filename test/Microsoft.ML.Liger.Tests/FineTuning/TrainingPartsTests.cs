using Microsoft.ML.Liger.Training;

namespace Microsoft.ML.Liger.Tests.FineTuning;

/// <summary>The loop's parts on their own: schedules, batch plans, atomic folders.</summary>
[TestClass]
public sealed class TrainingPartsTests
{
    [TestMethod]
    [DataRow(LearningRateSchedule.Linear), DataRow(LearningRateSchedule.Cosine), DataRow(LearningRateSchedule.Constant)]
    public void LearningRates_FollowTransformersSchedules(LearningRateSchedule schedule)
    {
        var options = new CausalLMTrainingOptions { LearningRate = 3e-4, WarmupSteps = 7, Schedule = schedule, MinLearningRateRatio = 0.1 };
        const int total = 53;
        for (int step = 0; step < total; step++)
        {
            // transformers: lr_lambda(step) = step / warmup while warming up, then the decay of (step - warmup) / (total - warmup).
            double expected;
            if (step < 7) expected = 3e-4 * step / 7;
            else
            {
                double progress = (step - 7) / 46.0;
                double decay = schedule switch
                {
                    LearningRateSchedule.Linear => 1 - progress,
                    LearningRateSchedule.Cosine => (1 + Math.Cos(Math.PI * progress)) / 2,
                    _ => 1,
                };
                expected = schedule == LearningRateSchedule.Constant ? 3e-4 : 3e-4 * (0.1 + 0.9 * decay);
            }
            Assert.AreEqual(expected, LearningRates.At(step, total, options), 1e-15, $"step {step}");
        }
        Assert.AreEqual(6, LearningRates.WarmupSteps(new CausalLMTrainingOptions { WarmupRatio = 0.1 }, 53), "ceil(0.1 x 53)");
    }

    [TestMethod]
    public void ProgressLine_ShowsANonFiniteTrainingLoss_AndLeavesTrainingFieldsOutOfEvaluationReports()
    {
        var diverged = new TrainingProgress(12, 40, 0.3, double.NaN, 2e-4, double.PositiveInfinity, 512, null, null, SkippedSteps: 3);
        StringAssert.Contains(diverged.ToString(), "loss NaN");
        StringAssert.Contains(diverged.ToString(), "3 steps skipped");
        var evaluation = new TrainingProgress(12, 40, 0.3, double.NaN, double.NaN, double.NaN, 0, null, 1.25);
        Assert.IsFalse(evaluation.ToString().Contains("loss NaN"), evaluation.ToString());
        StringAssert.Contains(evaluation.ToString(), "eval loss 1.2500");
    }

    [TestMethod]
    public void PaddedPlan_CoversEveryExampleOncePerEpoch_MasksPromptsAndPadding_AndRebuildsAnyStep()
    {
        var random = new Random(5);
        var examples = Enumerable.Range(0, 23).Select(i =>
            new TokenizedExample(Enumerable.Range(0, 3 + random.Next(9)).Select(_ => 10 + random.Next(50)).ToArray(), random.Next(3))).ToList();
        var options = new CausalLMTrainingOptions { BatchSize = 4, GradientAccumulationSteps = 2, MaxContextLength = 8, Epochs = 2, Seed = 3 };
        var plan = new BatchPlan(examples, options, padId: 0, separatorId: 1);
        Assert.AreEqual(6, plan.MicroBatchesPerEpoch, "ceil(23 / 4)");
        Assert.AreEqual(3, plan.StepsPerEpoch);
        Assert.AreEqual(6, plan.TotalSteps);

        var seen = new List<string>();
        for (int step = 0; step < plan.StepsPerEpoch; step++)
            foreach (var batch in plan.Step(step))
            {
                for (int r = 0; r < batch.Rows; r++)
                {
                    var ids = batch.InputIds.Skip(r * batch.Length).Take(batch.Length).ToArray();
                    var mask = batch.AttentionMask.Skip(r * batch.Length).Take(batch.Length).ToArray();
                    var labels = batch.Labels.Skip(r * batch.Length).Take(batch.Length).ToArray();
                    int n = (int)mask.Sum();
                    var example = examples.Single(e => e.Tokens.Take(8).Select(t => (long)t).SequenceEqual(ids.Take(n)) && Math.Min(e.Tokens.Length, 8) == n);
                    seen.Add(string.Join(',', example.Tokens));
                    for (int t = 0; t < batch.Length; t++)
                        Assert.AreEqual(t < n && t >= example.PromptLength ? ids[t] : -100, labels[t], $"label at {t}");
                    Assert.IsTrue(ids.Skip(n).All(id => id == 0), "padding holds the pad id");
                }
                Assert.AreEqual(batch.Labels.Where((l, i) => l != -100 && i % batch.Length != 0).Count(), batch.TargetTokens);
            }
        Assert.HasCount(23, seen.Distinct(), "every example once in the epoch");
        var again = new BatchPlan(examples, options, 0, 1);
        CollectionAssert.AreEqual(plan.Step(4)[0].InputIds, again.Step(4)[0].InputIds, "a step is rebuilt from its number");
        CollectionAssert.AreNotEqual(plan.Step(0)[0].InputIds, plan.Step(3)[0].InputIds, "each epoch is shuffled anew");
    }

    [TestMethod]
    public void PackedPlan_KeepsEveryTokenInOrder_WithSeparators()
    {
        var examples = new List<TokenizedExample> { new([5, 6, 7], 1), new([8, 9], 0), new([10, 11, 12, 13, 1], 2) };
        var options = new CausalLMTrainingOptions { BatchSize = 2, MaxContextLength = 4, Packing = true, Seed = 1 };
        var plan = new BatchPlan(examples, options, padId: 0, separatorId: 1);
        var batches = Enumerable.Range(0, plan.StepsPerEpoch).SelectMany(plan.Step).ToList();
        var tokens = batches.SelectMany(b => b.InputIds.Where((_, i) => b.AttentionMask[i] == 1)).ToList();
        Assert.AreEqual(3 + 1 + 2 + 1 + 5, tokens.Count, "each example plus a separator (the third already ends with it)");
        Assert.AreEqual(3, batches.Sum(b => b.Rows), "12 tokens make 3 rows of 4");
        Assert.IsTrue(batches.All(b => b.Length == 4), "packed rows are MaxContextLength long");
        var labels = batches.SelectMany(b => b.Labels.Where((_, i) => b.AttentionMask[i] == 1)).ToList();
        Assert.AreEqual(3 - 1 + 1 + 2 + 1 + 3, labels.Count(l => l != -100), "prompt tokens carry no label");
    }

    [TestMethod]
    public void AtomicFolder_AFailedWrite_LeavesThePreviousContents()
    {
        string parent = FineTuneFixtures.TempFolder("atomic");
        string folder = Path.Combine(parent, "model");
        AtomicFolder.Write(folder, f => File.WriteAllText(Path.Combine(f, "a.txt"), "first"));
        Assert.ThrowsExactly<IOException>(() => AtomicFolder.Write(folder, f =>
        {
            File.WriteAllText(Path.Combine(f, "a.txt"), "half");
            throw new IOException("disk full");
        }));
        Assert.AreEqual("first", File.ReadAllText(Path.Combine(folder, "a.txt")));
        Assert.HasCount(1, Directory.GetFileSystemEntries(parent), "no staging folder left");
        AtomicFolder.Write(folder, f => File.WriteAllText(Path.Combine(f, "b.txt"), "second"));
        CollectionAssert.AreEqual(new[] { "b.txt" }, Directory.GetFiles(folder).Select(Path.GetFileName).ToArray(), "replaced whole");
    }
}
