using System.Diagnostics;
using Microsoft.ML.Liger.FineTuning;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Sweeps;
using Microsoft.ML.Liger.Tests.FineTuning;
using static Microsoft.ML.Liger.Tests.Sweeps.SweepFakes;

namespace Microsoft.ML.Liger.Tests.Sweeps;

/// <summary>The sweep around its trials (faked): options per trial, budgets, failures, out-of-memory, cancellation, best trial, saved files.</summary>
[TestClass]
public sealed class SweepExperimentTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task EachTrial_GetsACopyOfTheBaseOptions_WithItsPointApplied()
    {
        var ml = new MLContext(1);
        var validation = FakeData(ml);
        var baseKernels = new LigerKernelOptions { Rope = false };
        var baseOptions = new FineTuneCausalLMOptions { MaxSteps = 999, Kernels = baseKernels, LoggingInterval = 50, CheckpointFolder = null };
        int steps = 5 + Random.Shared.Next(20);
        var seen = new List<TrialContext>();
        var result = await Sweep(ml, ctx => { seen.Add(ctx); return new TrialMetrics(1, 1, 1); }, baseOptions)
            .SetDataset(FakeData(ml), validation)
            .SetSearchSpace(Space([64, 32], [2], accumulation: [1, 3], checkpointing: [true, false], liger: [false, true], rates: [1e-4]))
            .SetStepsPerTrial(steps)
            .RunAsync();

        Assert.HasCount(16, seen);
        foreach (var ctx in seen)
        {
            var o = ctx.Options;
            Assert.AreNotSame(baseOptions, o);
            Assert.AreEqual((Context(ctx.Parameters), Batch(ctx.Parameters), Accumulation(ctx.Parameters), 1e-4, Checkpointing(ctx.Parameters)),
                (o.MaxContextLength, o.BatchSize, o.GradientAccumulationSteps, o.LearningRate, o.GradientCheckpointing));
            Assert.AreEqual(LigerOn(ctx.Parameters) ? baseKernels : LigerKernelOptions.None, o.Kernels, "Liger on keeps the base kernels; off is all eager");
            Assert.AreEqual(steps, o.MaxSteps);
            Assert.AreEqual(steps, o.EvalInterval, "one evaluation, at the end");
            Assert.IsTrue(o.LoggingInterval >= 1 && steps / o.LoggingInterval >= Math.Min(4, steps), $"enough reports for a median: {steps} steps, every {o.LoggingInterval}");
            Assert.AreSame(validation, o.ValidationSet);
            Assert.IsNull(o.CheckpointFolder);
        }
        Assert.AreEqual(16, seen.Select(c => c.Options).Distinct().Count(), "a fresh copy per trial");
        Assert.AreEqual((999, baseKernels, 50), (baseOptions.MaxSteps, baseOptions.Kernels, baseOptions.LoggingInterval), "the base options are untouched");
        Assert.IsTrue(result.Trials.All(t => t.Status == TrialStatus.Completed));
    }

    [TestMethod]
    public async Task CheckpointFolderOfTheBaseOptions_GivesEachTrialItsOwnSubfolder()
    {
        string folder = FineTuneFixtures.TempFolder("sweep-checkpoints");
        var seen = new List<string?>();
        await Sweep(new MLContext(1), ctx => { seen.Add(ctx.Options.CheckpointFolder); return new TrialMetrics(1, 1, 1); },
                new FineTuneCausalLMOptions { CheckpointFolder = folder })
            .SetSearchSpace(Space([32, 64, 16], [1])).RunAsync();
        CollectionAssert.AreEquivalent(new[] { 1, 2, 3 }.Select(i => Path.Combine(folder, $"trial-{i}")).ToArray(), seen.ToArray());
    }

    [TestMethod]
    public async Task MaxTrials_BoundsTheTrialsRun()
    {
        int max = 2 + Random.Shared.Next(6);
        int calls = 0;
        var result = await Sweep(new MLContext(1), _ => { calls++; return new TrialMetrics(1, 1, 1); })
            .SetSearchSpace(Space([16, 32, 64, 128], [1, 2, 4])).SetGridSearchTuner().SetMaxTrials(max).RunAsync();
        Assert.AreEqual(max, calls);
        CollectionAssert.AreEqual(Enumerable.Range(1, max).ToArray(), result.Trials.Select(t => t.Id).ToArray());
    }

    [TestMethod]
    public async Task TimeBudget_StartsNoTrialAfterItIsSpent_AndLetsTheRunningOneFinish()
    {
        const double budget = 1.0, trialSeconds = 0.3;
        var starts = new List<double>();
        var ends = new List<double>();
        var clock = Stopwatch.StartNew();
        var result = await Sweep(new MLContext(1), _ =>
            {
                starts.Add(clock.Elapsed.TotalSeconds);
                Thread.Sleep(TimeSpan.FromSeconds(trialSeconds));
                ends.Add(clock.Elapsed.TotalSeconds);
                return new TrialMetrics(1, 1, 1);
            })
            .SetSearchSpace(Space([16, 32, 64, 128, 256], [1, 2, 4, 8])).SetTrainingTimeInSeconds((int)budget).RunAsync();
        double total = clock.Elapsed.TotalSeconds;
        TestContext.WriteLine($"starts {string.Join(", ", starts.Select(s => s.ToString("F2")))}; ended at {total:F2} s");

        Assert.IsGreaterThanOrEqualTo(2, result.Trials.Count, "a 1 s budget holds several 0.3 s trials");
        Assert.IsLessThan(20, result.Trials.Count, "the budget, not the grid, ended the sweep");
        Assert.IsTrue(result.Trials.All(t => t.Status == TrialStatus.Completed), "the trial running when the budget ran out finished");
        Assert.IsLessThan(budget + 0.25, starts[^1], "the last trial started within the budget (plus the sweep thread's start)");
        Assert.IsGreaterThanOrEqualTo(budget, total, "the sweep stopped only once the budget was spent");
        Assert.IsLessThan(budget + trialSeconds + 1.0, total);
    }

    [TestMethod]
    public async Task FirstTrialThrowing_IsRecordedFailed_AndTheSweepGoesOn()
    {
        var result = await Sweep(new MLContext(1), ctx => ctx.Id == 1 ? throw new InvalidOperationException("tokenizer exploded") : new TrialMetrics(2.5, 10, 100))
            .SetSearchSpace(Space([16, 32, 64], [1])).RunAsync();
        Assert.HasCount(3, result.Trials);
        Assert.AreEqual(TrialStatus.Failed, result.Trials[0].Status);
        Assert.AreEqual("InvalidOperationException: tokenizer exploded", result.Trials[0].Error);
        Assert.IsNull(result.Trials[0].EvalLoss);
        Assert.IsTrue(result.Trials.Skip(1).All(t => t.Status == TrialStatus.Completed && t.EvalLoss == 2.5 && t.Error is null));
    }

    public static IEnumerable<object[]> OutOfMemoryFailures() =>
    [
        ["cuda", (Func<Exception>)CudaOutOfMemory],
        ["host", (Func<Exception>)(() => new OutOfMemoryException("Insufficient memory to continue the execution of the program."))],
        ["bad_alloc", (Func<Exception>)(() => new System.Runtime.InteropServices.ExternalException("std::bad_alloc"))],
        ["cpu allocator", (Func<Exception>)(() => new System.Runtime.InteropServices.ExternalException(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate 68719476736 bytes."))],
        ["wrapped", (Func<Exception>)(() => new AggregateException(new InvalidOperationException("forward failed", CudaOutOfMemory())))],
    ];

    [TestMethod]
    [DynamicData(nameof(OutOfMemoryFailures))]
    public async Task OutOfMemory_IsInfeasible_OtherExceptionsFail_AndTheSweepGoesOn(string kind, Func<Exception> outOfMemory)
    {
        int oomTrial = 1 + Random.Shared.Next(4), failingTrial = oomTrial % 4 + 1;
        TestContext.WriteLine($"{kind}: out of memory at trial {oomTrial}, other failure at {failingTrial}");
        var result = await Sweep(new MLContext(1), ctx =>
                ctx.Id == oomTrial ? throw outOfMemory()
                : ctx.Id == failingTrial ? throw new ArgumentException("shape mismatch: [3, 5] vs [5, 3]")
                : new TrialMetrics(1, 1, 1))
            .SetSearchSpace(Space([16, 32], [1, 2])).SetGridSearchTuner().RunAsync();

        Assert.HasCount(4, result.Trials);
        var oom = result.Trials[oomTrial - 1];
        Assert.AreEqual(TrialStatus.Infeasible, oom.Status);
        StringAssert.StartsWith(oom.Error, "Out of memory: ");
        var failed = result.Trials[failingTrial - 1];
        Assert.AreEqual(TrialStatus.Failed, failed.Status);
        Assert.AreEqual("ArgumentException: shape mismatch: [3, 5] vs [5, 3]", failed.Error);
        Assert.AreEqual(2, result.Trials.Count(t => t.Status == TrialStatus.Completed));
    }

    [TestMethod]
    [DataRow(false), DataRow(true)]
    public async Task Cancellation_StopsTheRunningTrial_KeepsFinishedOnes_AndDoesNotThrow(bool throughBaseOptions)
    {
        int cancelAt = 2 + Random.Shared.Next(3);
        using var cancel = new CancellationTokenSource();
        var running = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var options = new FineTuneCausalLMOptions { CancellationToken = throughBaseOptions ? cancel.Token : default };
        var calls = 0;
        var sweep = Sweep(new MLContext(1), ctx =>
            {
                calls++;
                if (ctx.Id < cancelAt)
                    return new TrialMetrics(ctx.Id, 100, 1000);
                running.SetResult();
                // As the trainer does: stop between steps once the token fires.
                ctx.Options.CancellationToken.WaitHandle.WaitOne(TimeSpan.FromSeconds(20));
                ctx.Options.CancellationToken.ThrowIfCancellationRequested();
                return new TrialMetrics(ctx.Id, 100, 1000);
            }, options)
            .SetSearchSpace(Space([16, 32, 64, 128, 256, 512], [1]));
        var run = sweep.RunAsync(throughBaseOptions ? default : cancel.Token);
        await running.Task.WaitAsync(TimeSpan.FromSeconds(20));
        cancel.Cancel();
        var result = await run;

        Assert.AreEqual(cancelAt, calls, "no trial after the cancelled one");
        Assert.HasCount(cancelAt, result.Trials);
        Assert.IsTrue(result.Trials.Take(cancelAt - 1).All(t => t.Status == TrialStatus.Completed && t.EvalLoss == t.Id));
        Assert.AreEqual(TrialStatus.Cancelled, result.Trials[^1].Status);
        Assert.IsNull(result.Trials[^1].EvalLoss);
        Assert.AreEqual(1, result.BestTrial!.Id);
    }

    [TestMethod]
    public async Task Cancellation_BeforeTheFirstTrial_ReturnsNoTrials()
    {
        int calls = 0;
        var result = await Sweep(new MLContext(1), _ => { calls++; return new TrialMetrics(1, 1, 1); })
            .SetSearchSpace(Space([16, 32], [1])).RunAsync(new CancellationToken(canceled: true));
        Assert.AreEqual(0, calls);
        Assert.IsEmpty(result.Trials);
        Assert.IsNull(result.BestTrial);
    }

    [TestMethod]
    public async Task BestTrial_IsTheCompletedTrialWithTheLowestLoss()
    {
        int seed = Random.Shared.Next();
        TestContext.WriteLine($"seed {seed}");
        var random = new Random(seed);
        var losses = new Dictionary<int, double>();
        var result = await Sweep(new MLContext(1), ctx =>
            {
                double loss = 1 + random.NextDouble();
                losses[ctx.Id] = loss;
                return random.Next(4) switch
                {
                    0 => throw new InvalidOperationException("boom"),
                    1 => throw CudaOutOfMemory(),
                    _ => new TrialMetrics(ctx.Id == 3 ? double.NaN : loss, 1, 1),
                };
            })
            .SetSearchSpace(Space([16, 32, 64, 128, 256], [1, 2, 4])).SetGridSearchTuner().RunAsync();

        var completed = result.Trials.Where(t => t.Status == TrialStatus.Completed && t.Id != 3).ToList();
        var expected = completed.Count == 0 ? null : completed.MinBy(t => losses[t.Id]);
        Assert.AreEqual(expected?.Id, result.BestTrial?.Id, "lowest loss among completed trials, a NaN loss never best");
        Assert.IsTrue(result.Trials.Where(t => t.Status != TrialStatus.Completed).All(t => t.Id != result.BestTrial?.Id));
    }

    [TestMethod]
    public async Task OutputFolder_HoldsEveryTrialSoFar_AfterEachTrial()
    {
        string folder = FineTuneFixtures.TempFolder("sweep-output");
        var checkedAfter = new List<int>();
        var sweep = Sweep(new MLContext(1), ctx => ctx.Id == 2 ? throw new InvalidOperationException("no") : new TrialMetrics(3.0 / ctx.Id, 10 * ctx.Id, 1 << 20))
            .SetSearchSpace(Space([16, 32, 64, 128], [1])).SetOutputFolder(folder);
        sweep.TrialCompleted += (_, trial) =>
        {
            foreach (var saved in new[] { SweepResult.LoadCsv(Path.Combine(folder, "trials.csv")), SweepResult.LoadJson(Path.Combine(folder, "trials.json")) })
            {
                Assert.HasCount(trial.Id, saved.Trials, $"after trial {trial.Id}");
                Assert.AreEqual(trial.Status, saved.Trials[^1].Status);
                Assert.AreEqual(trial.EvalLoss, saved.Trials[^1].EvalLoss);
            }
            checkedAfter.Add(trial.Id);
        };
        var result = await sweep.RunAsync();
        CollectionAssert.AreEqual(new[] { 1, 2, 3, 4 }, checkedAfter.ToArray(), "TrialCompleted once per trial, in order");
        CollectionAssert.AreEquivalent(new[] { "trials.csv", "trials.json" }, Directory.GetFiles(folder).Select(Path.GetFileName).ToArray(), "no temporary files left");
        Assert.AreEqual(4, result.BestTrial!.Id);
    }

    [TestMethod]
    public void Misconfiguration_IsReported_NamingWhatIsMissing()
    {
        var ml = new MLContext(1);
        var noData = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Liger().CreateSweep(new FineTuneCausalLMOptions()).RunAsync());
        StringAssert.Contains(noData.Message, "SetDataset");
        var endless = Assert.ThrowsExactly<InvalidOperationException>(() => Sweep(ml, _ => new TrialMetrics(1, 1, 1)).SetRandomSearchTuner(1).RunAsync());
        StringAssert.Contains(endless.Message, "SetMaxTrials");
        Assert.AreEqual("maxTrials", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => Sweep(ml, _ => null!).SetMaxTrials(0)).ParamName);
        Assert.AreEqual("seconds", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => Sweep(ml, _ => null!).SetTrainingTimeInSeconds(0)).ParamName);
        Assert.AreEqual("steps", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => Sweep(ml, _ => null!).SetStepsPerTrial(0)).ParamName);
        var clash = Assert.ThrowsExactly<ArgumentException>(() => Sweep(ml, _ => null!).SetSearchSpace(new SearchSpace<ClashingSpace>(), (_, _) => { }));
        StringAssert.Contains(clash.Message, "ClashingSpace.Status");
        var badOptions = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            Sweep(ml, _ => null!, new FineTuneCausalLMOptions { Beta1 = 1.5 }).RunAsync());
        Assert.AreEqual("Beta1", badOptions.ParamName);
    }
}
