using Microsoft.ML.Liger.Sweeps;
using static Microsoft.ML.Liger.Tests.Sweeps.SweepFakes;

namespace Microsoft.ML.Liger.Tests.Sweeps;

/// <summary>The three tuners, driven by a sweep whose trials are fakes: the points they propose, their order and their end.</summary>
[TestClass]
public sealed class TunerTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task Grid_VisitsEveryGridPointOnce_InGridOrder_ThenStops()
    {
        var space = new SearchSpace<MixedSpace>().WithChoice(nameof(MixedSpace.Width), 3, 7).WithChoice(nameof(MixedSpace.Optimizer), "adam");
        var seen = new List<IReadOnlyDictionary<string, object>>();
        var sweep = Sweep(new MLContext(1), ctx => { seen.Add(ctx.Parameters); return new TrialMetrics(1, 1, 1); })
            .SetSearchSpace(space, (_, _) => { })
            .SetGridSearchTuner(pointsPerRange: 2);
        var result = await sweep.RunAsync();

        var grid = space.Grid(2).ToList();
        Assert.HasCount(grid.Count, result.Trials, "every grid point, then the sweep ends by itself");
        for (int i = 0; i < grid.Count; i++)
        {
            var created = space.Create(result.Trials[i].Parameters);
            Assert.AreEqual((grid[i].Width, grid[i].Scale, grid[i].Rate, grid[i].Depth, grid[i].Flag, grid[i].Mixed),
                (created.Width, created.Scale, created.Rate, created.Depth, created.Flag, created.Mixed), $"trial {i + 1} is grid point {i}");
        }
        Assert.AreEqual(grid.Count, seen.Select(Key).Distinct().Count(), "no point twice");
        CollectionAssert.AreEqual(Enumerable.Range(1, grid.Count).ToArray(), result.Trials.Select(t => t.Id).ToArray());
    }

    [TestMethod]
    public async Task Random_IsSeeded_StaysInTheSpace_AndNeverRepeatsAPoint()
    {
        int seed = Random.Shared.Next();
        TestContext.WriteLine($"seed {seed}");
        var space = new SearchSpace<MixedSpace>();
        async Task<List<string>> Run(int s)
        {
            var sweep = Sweep(new MLContext(1), _ => new TrialMetrics(1, 1, 1)).SetSearchSpace(space, (_, _) => { }).SetRandomSearchTuner(s).SetMaxTrials(25);
            var result = await sweep.RunAsync();
            foreach (var trial in result.Trials)
                space.Create(trial.Parameters); // throws when a value is outside its dimension
            return result.Trials.Select(t => Key(t.Parameters)).ToList();
        }
        var first = await Run(seed);
        Assert.HasCount(25, first);
        Assert.AreEqual(25, first.Distinct().Count());
        CollectionAssert.AreEqual(first, await Run(seed), "the same seed, the same points");
        CollectionAssert.AreNotEqual(first, await Run(seed ^ 0x5bd1e995), "another seed, other points");
    }

    [TestMethod]
    public async Task Random_OverAFiniteSpace_TriesEveryPointOnce_ThenStops()
    {
        var space = Space([64, 128, 32], [2, 1]);
        var result = await Sweep(new MLContext(1), _ => new TrialMetrics(1, 1, 1)).SetSearchSpace(space).SetRandomSearchTuner(Random.Shared.Next()).RunAsync();
        Assert.HasCount(6, result.Trials);
        CollectionAssert.AreEquivalent(space.Grid().Select(g => $"{g.MaxContextLength}/{g.BatchSize}").ToArray(),
            result.Trials.Select(t => $"{Context(t.Parameters)}/{Batch(t.Parameters)}").ToArray());
    }

    [TestMethod]
    public async Task CostAware_WithoutOutOfMemory_VisitsEveryPoint_CheapestTimeFirst_ThenLeastMemory()
    {
        var space = Space([96, 32, 64], [3, 1, 2], accumulation: [2, 1], checkpointing: [true, false], liger: [false, true]);
        var order = new List<IReadOnlyDictionary<string, object>>();
        var result = await Sweep(new MLContext(1), ctx => { order.Add(ctx.Parameters); return new TrialMetrics(1, 1, 1); })
            .SetSearchSpace(space).SetCostAwareTuner().RunAsync();

        Assert.HasCount(72, result.Trials);
        Assert.AreEqual(72, order.Select(Key).Distinct().Count(), "each point once");
        // The documented estimates, written out independently: tokens per step (a third more with checkpointing), then
        // micro-batch tokens (halved by checkpointing, doubled without Liger).
        static double Time(IReadOnlyDictionary<string, object> p) => Batch(p) * Accumulation(p) * Context(p) * (Checkpointing(p) ? 4.0 / 3 : 1);
        static double Memory(IReadOnlyDictionary<string, object> p) => Batch(p) * Context(p) * (Checkpointing(p) ? 0.5 : 1) * (LigerOn(p) ? 1 : 2);
        for (int i = 1; i < order.Count; i++)
        {
            Assert.IsLessThanOrEqualTo(Time(order[i]), Time(order[i - 1]), $"trial {i + 1} is no cheaper in time than trial {i}");
            if (Time(order[i]) == Time(order[i - 1]))
                Assert.IsLessThanOrEqualTo(Memory(order[i]), Memory(order[i - 1]), $"at equal time, trial {i + 1} needs no less memory than trial {i}");
        }
    }

    [TestMethod]
    public async Task CostAware_SkipsPointsAnOutOfMemoryTrialDominates_AndRunsTheRest()
    {
        int seed = Random.Shared.Next();
        TestContext.WriteLine($"seed {seed}");
        var random = new Random(seed);
        var space = Space([48, 96, 24, 192], [1, 4, 2], accumulation: [1, 3], checkpointing: [false, true], liger: [true, false]);
        // A made-up device: memory grows with context and batch, checkpointing and Liger save some (other factors than
        // the tuner's estimate: only the monotonicity matters); points above the capacity run out of memory.
        static double Need(IReadOnlyDictionary<string, object> p) =>
            Batch(p) * Math.Pow(Context(p), 1.3) * (Checkpointing(p) ? 0.6 : 1) * (LigerOn(p) ? 1 : 1.7);
        var needs = space.Grid().Select(g => Need(new Dictionary<string, object>
        {
            ["MaxContextLength"] = g.MaxContextLength, ["BatchSize"] = g.BatchSize, ["GradientAccumulationSteps"] = g.GradientAccumulationSteps,
            ["GradientCheckpointing"] = g.GradientCheckpointing, ["Liger"] = g.Liger,
        })).Order().ToArray();
        int cut = needs.Length / 4 + random.Next(needs.Length / 2);
        double capacity = (needs[cut] + needs[cut + 1]) / 2;
        if (needs[cut] == needs[cut + 1])
            capacity = needs[cut];
        var ran = new List<IReadOnlyDictionary<string, object>>();
        var result = await Sweep(new MLContext(1), ctx =>
            {
                ran.Add(ctx.Parameters);
                return Need(ctx.Parameters) > capacity ? throw CudaOutOfMemory() : new TrialMetrics(1, 1, 1);
            })
            .SetSearchSpace(space).RunAsync(); // the cost-aware tuner is the default

        Assert.HasCount(needs.Length, result.Trials, "every point is decided, run or skipped");
        Assert.AreEqual(needs.Length, result.Trials.Select(t => Key(t.Parameters)).Distinct().Count());
        foreach (var trial in result.Trials)
            Assert.AreEqual(Need(trial.Parameters) > capacity ? TrialStatus.Infeasible : TrialStatus.Completed, trial.Status, $"trial {trial.Id}: {Key(trial.Parameters)}");

        // Independent statement of the rule: p needs at least q's memory when its context and batch are no smaller and it
        // turns checkpointing or Liger on only where q did; learning rate and accumulation do not matter.
        static bool Dominates(IReadOnlyDictionary<string, object> q, IReadOnlyDictionary<string, object> p) =>
            Context(p) >= Context(q) && Batch(p) >= Batch(q) && (!Checkpointing(p) || Checkpointing(q)) && (!LigerOn(p) || LigerOn(q));
        var ranKeys = ran.Select(Key).ToHashSet();
        var oomRuns = result.Trials.Where(t => t.Status == TrialStatus.Infeasible && ranKeys.Contains(Key(t.Parameters))).ToList();
        var skipped = result.Trials.Where(t => !ranKeys.Contains(Key(t.Parameters))).ToList();
        TestContext.WriteLine($"{needs.Length} points, {ran.Count} ran, {oomRuns.Count} out of memory, {skipped.Count} skipped");
        Assert.IsNotEmpty(skipped, "the largest point is dominated by the first out-of-memory one");
        foreach (var trial in result.Trials.Where(t => ranKeys.Contains(Key(t.Parameters))))
            Assert.IsFalse(oomRuns.Any(q => q.Id < trial.Id && Dominates(q.Parameters, trial.Parameters)),
                $"trial {trial.Id} ran although an earlier out-of-memory trial dominates it");
        foreach (var trial in skipped)
        {
            Assert.AreEqual(TrialStatus.Infeasible, trial.Status);
            Assert.AreEqual(TimeSpan.Zero, trial.Duration);
            var proof = oomRuns.Concat(skipped).Single(q => trial.Error!.Contains($"trial {q.Id} ("));
            Assert.IsTrue(proof.Id < trial.Id && Dominates(proof.Parameters, trial.Parameters), $"trial {trial.Id}: {trial.Error}");
        }
    }

    [TestMethod]
    public async Task CostAware_OnACustomSpace_SkipsOnlyPointsEqualInTheUnknownDimensions()
    {
        var space = new SearchSpace<WarmupSpace>();
        int calls = 0;
        var result = await Sweep(new MLContext(1), ctx =>
            {
                calls++;
                return (int)ctx.Parameters["WarmupSteps"] == 2 ? throw new OutOfMemoryException() : new TrialMetrics(1, 1, 1);
            })
            .SetSearchSpace(space, (p, o) => o.WarmupSteps = p.WarmupSteps).RunAsync();
        Assert.HasCount(6, result.Trials);
        Assert.AreEqual(2, result.Trials.Count(t => t.Status == TrialStatus.Infeasible), "both weight decays at warm-up 2 run out of memory");
        Assert.AreEqual(6, calls, "nothing skipped: no rule relates dimensions the tuner does not know");
    }
}
