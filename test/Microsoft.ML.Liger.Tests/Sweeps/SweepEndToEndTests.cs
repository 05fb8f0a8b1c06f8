using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Sweeps;
using Microsoft.ML.Liger.Tests.FineTuning;
using Microsoft.ML.Liger.Training;

namespace Microsoft.ML.Liger.Tests.Sweeps;

/// <summary>A real sweep: three tiny fine-tuning trials on the CPU, their losses checked against plain fits.</summary>
[TestClass]
public sealed class SweepEndToEndTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task Sweep_OfRealTrials_RecordsTheirEvalLossesThroughputAndMemory()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(FineTuneFixtures.Rows(48, seed: 5));
        var validation = ml.Data.LoadFromEnumerable(FineTuneFixtures.Rows(12, seed: 77));
        const int steps = 6;
        string output = FineTuneFixtures.TempFolder("sweep-real");
        var space = new SearchSpace<FineTuneCausalLMSearchSpace>()
            .WithChoice(nameof(FineTuneCausalLMSearchSpace.MaxContextLength), 24, 32)
            .WithChoice(nameof(FineTuneCausalLMSearchSpace.BatchSize), 4)
            .WithChoice(nameof(FineTuneCausalLMSearchSpace.GradientAccumulationSteps), 1)
            .WithChoice(nameof(FineTuneCausalLMSearchSpace.LearningRate), 3e-3)
            .WithChoice(nameof(FineTuneCausalLMSearchSpace.GradientCheckpointing), false)
            .WithChoice(nameof(FineTuneCausalLMSearchSpace.Liger), true, false);
        var result = await ml.Liger().CreateSweep(FineTuneFixtures.Options())
            .SetDataset(train, validation)
            .SetSearchSpace(space)
            .SetStepsPerTrial(steps)
            .SetMaxTrials(3)
            .SetOutputFolder(output)
            .RunAsync();
        TestContext.WriteLine(result.ToTable());

        Assert.HasCount(3, result.Trials);
        foreach (var trial in result.Trials)
        {
            Assert.AreEqual(TrialStatus.Completed, trial.Status, trial.Error);
            Assert.IsTrue(trial.EvalLoss is > 0 and < 10, $"trial {trial.Id}: eval loss {trial.EvalLoss}");
            Assert.IsGreaterThan(0, trial.TokensPerSecond!.Value);
            Assert.IsGreaterThan(0L, trial.PeakMemoryBytes!.Value);
            Assert.IsGreaterThan(TimeSpan.Zero, trial.Duration);
        }
        Assert.AreEqual(3, result.Trials.Select(t => SweepFakes.Key(t.Parameters)).Distinct().Count());

        // The reference: the same fine-tuning run outside the sweep (same seed, CPU fp32: bit for bit) for one trial.
        var pick = result.Trials[Random.Shared.Next(3)];
        bool liger = (bool)pick.Parameters[nameof(FineTuneCausalLMSearchSpace.Liger)];
        var options = FineTuneFixtures.Options(o =>
        {
            o.MaxContextLength = (int)pick.Parameters[nameof(FineTuneCausalLMSearchSpace.MaxContextLength)];
            o.BatchSize = 4;
            o.LearningRate = 3e-3;
            o.Kernels = liger ? new LigerKernelOptions() : LigerKernelOptions.None;
            o.MaxSteps = steps;
            o.ValidationSet = validation;
        });
        using var model = ml.Liger().FineTuneCausalLM(options).Fit(train);
        Assert.AreEqual(model.Info.EvalLosses[^1].Loss, pick.EvalLoss!.Value, 1e-12, $"trial {pick.Id}'s eval loss is the fit's");
        Assert.AreEqual(result.Trials.MinBy(t => t.EvalLoss)!.Id, result.BestTrial!.Id);

        var saved = SweepResult.LoadJson(Path.Combine(output, "trials.json"));
        CollectionAssert.AreEqual(result.Trials.Select(t => t.EvalLoss).ToArray(), saved.Trials.Select(t => t.EvalLoss).ToArray());
    }

    [TestMethod]
    [DataRow(1), DataRow(2), DataRow(7), DataRow(10)]
    public void Throughput_IsTheMedianOfTheReports_WithoutTheFirst(int count)
    {
        var random = new Random(Random.Shared.Next());
        var reports = Enumerable.Range(1, count)
            .Select(i => new TrainingProgress(i, count, 0, 1, 1e-3, 1, i == 1 ? 1.0 : 1000 + 500 * random.NextDouble(), null, null)).ToList();
        // The reference: sort the kept values and take the middle one (the mean of the middle two for an even count).
        var kept = (count > 1 ? reports.Skip(1) : reports).Select(r => r.TokensPerSecond).OrderBy(v => v).ToList();
        double expected = kept.Count % 2 == 1 ? kept[kept.Count / 2] : 0.5 * (kept[kept.Count / 2 - 1] + kept[kept.Count / 2]);
        Assert.AreEqual(expected, FineTuneTrial.MedianThroughput(reports));
        if (count > 1)
            Assert.IsGreaterThanOrEqualTo(1000.0, FineTuneTrial.MedianThroughput(reports)!.Value, "the slow first report is left out");
    }
}
