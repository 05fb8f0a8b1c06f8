using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.Liger.Sweeps;
using Microsoft.ML.Liger.Tests.FineTuning;

namespace Microsoft.ML.Liger.Tests.Sweeps;

/// <summary>Results: best trial, CSV and JSON round trips, the printed table, the data view.</summary>
[TestClass]
public sealed class SweepResultTests
{
    public TestContext TestContext { get; set; } = null!;

    private static readonly string[] Names = ["MaxContextLength", "LearningRate", "Liger", "Optimizer", "Scale"];

    /// <summary>Trials with every status, odd numbers, text that needs quoting, and text that looks like numbers.</summary>
    private static List<TrialResult> RandomTrials(Random random, int count)
    {
        string[] texts = ["adam", "sgd, \"nesterov\"", "42", "", "line\nbreak", "true"];
        var trials = new List<TrialResult>();
        foreach (int id in Enumerable.Range(1, count).OrderBy(_ => random.Next()))
        {
            var status = (TrialStatus)random.Next(4);
            bool completed = status == TrialStatus.Completed;
            trials.Add(new TrialResult(id,
                new Dictionary<string, object>
                {
                    ["MaxContextLength"] = 1 + random.Next(100_000),
                    ["LearningRate"] = Math.Pow(10, -6 + 5 * random.NextDouble()),
                    ["Liger"] = random.Next(2) == 0,
                    ["Optimizer"] = texts[random.Next(texts.Length)],
                    ["Scale"] = (double)random.Next(1, 4), // integral doubles must come back as doubles
                },
                status,
                completed ? (random.Next(8) == 0 ? double.NaN : 0.5 + 3 * random.NextDouble()) : null,
                completed ? 1e5 * random.NextDouble() : null,
                completed && random.Next(3) > 0 ? random.NextInt64(1L << 40) : null,
                TimeSpan.FromTicks(random.NextInt64(TimeSpan.TicksPerDay)),
                completed ? null : random.Next(3) switch { 0 => "", 1 => "CUDA out of memory.\nTried to allocate 2.00 GiB, \"GPU 0\"", _ => "Failed, badly" }));
        }
        return trials;
    }

    [TestMethod]
    [DataRow("csv"), DataRow("json")]
    public void SavedFile_ReadsBackToTheSameTrials(string format)
    {
        int seed = Random.Shared.Next();
        TestContext.WriteLine($"seed {seed}");
        var original = new SweepResult(Names, RandomTrials(new Random(seed), 23));
        string path = Path.Combine(FineTuneFixtures.TempFolder("sweep-files"), "trials." + format);
        if (format == "csv") original.SaveCsv(path); else original.SaveJson(path);
        var loaded = format == "csv" ? SweepResult.LoadCsv(path) : SweepResult.LoadJson(path);

        CollectionAssert.AreEqual(Names, loaded.ParameterNames.ToArray());
        Assert.HasCount(original.Trials.Count, loaded.Trials);
        for (int i = 0; i < original.Trials.Count; i++)
        {
            var (a, b) = (original.Trials[i], loaded.Trials[i]);
            Assert.AreEqual((a.Id, a.Status, a.EvalLoss, a.TokensPerSecond, a.PeakMemoryBytes, a.Duration, a.Error),
                (b.Id, b.Status, b.EvalLoss, b.TokensPerSecond, b.PeakMemoryBytes, b.Duration, b.Error), $"trial {a.Id}");
            foreach (var name in Names)
            {
                Assert.AreEqual(a.Parameters[name], b.Parameters[name], $"trial {a.Id}, {name}");
                Assert.AreEqual(a.Parameters[name].GetType(), b.Parameters[name].GetType(), $"trial {a.Id}, {name}'s type");
            }
        }
        Assert.AreEqual(original.BestTrial?.Id, loaded.BestTrial?.Id);
    }

    [TestMethod]
    public void LoadCsv_OfAnotherFile_NamesWhatIsWrong()
    {
        string folder = FineTuneFixtures.TempFolder("sweep-bad-csv");
        string header = Path.Combine(folder, "header.csv");
        File.WriteAllText(header, "Name,Value\n1,2\n");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => SweepResult.LoadCsv(header)).Message, "header");
        string status = Path.Combine(folder, "status.csv");
        File.WriteAllText(status, "Id,Width,Status,EvalLoss,TokensPerSecond,PeakMemoryBytes,DurationSeconds,Error\n1,3,Exploded,,,,1.0,\n");
        var error = Assert.ThrowsExactly<InvalidDataException>(() => SweepResult.LoadCsv(status));
        StringAssert.Contains(error.Message, "column Status");
        StringAssert.Contains(error.Message, "Exploded");
    }

    [TestMethod]
    public void BestTrial_IsTheLowestFiniteLossAmongCompleted_FirstOnATie()
    {
        int seed = Random.Shared.Next();
        TestContext.WriteLine($"seed {seed}");
        var trials = RandomTrials(new Random(seed), 40);
        var completed = trials.Where(t => t.Status == TrialStatus.Completed && double.IsFinite(t.EvalLoss!.Value)).ToList();
        // A non-completed trial with a lower loss never wins; neither does a later trial with an equal loss.
        var tie = completed.MinBy(t => t.EvalLoss);
        if (tie is not null)
        {
            trials.Add(tie with { Id = 1000 });
            trials.Add(tie with { Id = 1001, Status = TrialStatus.Cancelled, EvalLoss = tie.EvalLoss - 1 });
        }
        var result = new SweepResult(Names, trials);
        Assert.AreEqual(completed.OrderBy(t => t.EvalLoss).ThenBy(t => t.Id).FirstOrDefault()?.Id, result.BestTrial?.Id);
    }

    [TestMethod]
    public void ToTable_ListsTrialsByIdInAlignedColumns_MarkingTheBest()
    {
        int seed = Random.Shared.Next();
        TestContext.WriteLine($"seed {seed}");
        var trials = RandomTrials(new Random(seed), 9);
        var result = new SweepResult(Names, trials);
        var lines = result.ToTable().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        TestContext.WriteLine(result.ToTable());

        string header = lines[0];
        foreach (var column in Names.Concat(["trial", "status", "eval loss", "tokens/s", "peak MiB"]))
            StringAssert.Contains(header, column);
        var rows = lines.Skip(1).Take(trials.Count).ToArray();
        int statusAt = header.IndexOf("status", StringComparison.Ordinal);
        for (int i = 0; i < rows.Length; i++)
        {
            var trial = result.Trials[i];
            Assert.AreEqual(i + 1, trial.Id);
            StringAssert.StartsWith(rows[i][statusAt..], trial.Status.ToString(), $"row {i + 1}: the status column lines up with its header");
            int trialEnd = header.IndexOf("trial", StringComparison.Ordinal) + "trial".Length;
            Assert.AreEqual(trial.Id.ToString(CultureInfo.InvariantCulture), rows[i][..trialEnd].Trim().TrimStart('*').Trim(), $"row {i + 1} is trial {i + 1}");
            Assert.AreEqual(ReferenceEquals(trial, result.BestTrial), rows[i].StartsWith('*'), $"row {i + 1}: marked best iff it is");
            if (trial.EvalLoss is double loss && double.IsFinite(loss))
                StringAssert.Contains(rows[i], loss.ToString("F4", CultureInfo.InvariantCulture));
        }
        Assert.IsFalse(rows.Any(r => r.Contains('\n')), "errors are shortened to one line");
    }

    [TestMethod]
    public void ToDataView_HasARowPerTrial_WithTypedColumnsForFineTuneParameters()
    {
        int seed = Random.Shared.Next();
        TestContext.WriteLine($"seed {seed}");
        var result = new SweepResult(Names, RandomTrials(new Random(seed), 11));
        var view = result.ToDataView(new MLContext(1));

        Assert.AreEqual(NumberDataViewType.Int32, view.Schema["MaxContextLength"].Type);
        Assert.AreEqual(NumberDataViewType.Double, view.Schema["LearningRate"].Type);
        Assert.AreEqual(BooleanDataViewType.Instance, view.Schema["Liger"].Type);
        Assert.IsNull(view.Schema.GetColumnOrNull("BatchSize"), "a FineTuneCausalLMSearchSpace parameter the sweep did not vary has no column");
        Assert.IsNull(view.Schema.GetColumnOrNull("Optimizer"), "other parameters live in the Parameters column");

        var ids = view.GetColumn<int>("Id").ToArray();
        var contexts = view.GetColumn<int>("MaxContextLength").ToArray();
        var parameters = view.GetColumn<string>("Parameters").ToArray();
        var statuses = view.GetColumn<string>("Status").ToArray();
        var losses = view.GetColumn<double>("EvalLoss").ToArray();
        var peaks = view.GetColumn<double>("PeakMemoryBytes").ToArray();
        var best = view.GetColumn<bool>("IsBest").ToArray();
        for (int i = 0; i < result.Trials.Count; i++)
        {
            var t = result.Trials[i];
            Assert.AreEqual(t.Id, ids[i]);
            Assert.AreEqual(t.Parameters["MaxContextLength"], contexts[i]);
            StringAssert.Contains(parameters[i], $"Optimizer={t.Parameters["Optimizer"]}");
            Assert.AreEqual(t.Status.ToString(), statuses[i]);
            Assert.AreEqual(t.EvalLoss ?? double.NaN, losses[i]);
            Assert.AreEqual(t.PeakMemoryBytes is long b ? b : double.NaN, peaks[i]);
            Assert.AreEqual(ReferenceEquals(t, result.BestTrial), best[i]);
        }
    }
}
