using System.Globalization;
using Liger.Distributed.Worker;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Tests.FineTuning;
using Microsoft.ML.Liger.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.Distributed;

/// <summary>
/// The trainer's data-parallel path end to end on the CPU: ranks started by mpirun (the MPI backend), each training the
/// worker's scenario, checked against an independent single-process run of the same scenario in this process.
/// </summary>
[TestClass]
public sealed class DataParallelTests
{
    // Two ranks and one differ only in float summation order (each rank's partial gradient sum, shapes cut to each rank's
    // rows) over a few AdamW steps: 1e-4 relative plus 2e-5 absolute on every weight covers that with room, while a wrong
    // shard, normalisation or missing all-reduce moves weights by far more (asserted below as well).
    private const double Relative = 1e-4, Absolute = 2e-5;

    public TestContext TestContext { get; set; } = null!;

    internal static DistributedScenario FreshScenario()
    {
        // Fresh data and odd sizes each run (the seed is in every message): 17 to 29 rows, so the last micro-batch of an
        // epoch is short and the ranks' shares differ.
        return new DistributedScenario { Seed = Random.Shared.Next(1, 100_000), Rows = Random.Shared.Next(17, 30) };
    }

    [TestMethod]
    [DataRow(false), DataRow(true)]
    public void TwoRanks_TrainLikeOneRankWithTheCombinedBatch(bool packing)
    {
        var scenario = FreshScenario() with { Packing = packing };
        string folder = FineTuneFixtures.TempFolder("ddp");
        var (code, output) = MpiRunner.Run(2, [.. scenario.ToArgs(), "--out", folder]);
        Assert.AreEqual(0, code, $"{scenario}\n{output}");

        using var reference = scenario.Model();
        var initial = Weights(reference);
        var result = new CausalLMTrainer(reference, scenario.Options(2 * scenario.BatchSize, null), DistributedScenario.PadId, DistributedScenario.EosId)
            .Train(scenario.Data());
        var expected = Weights(reference);

        var rank0 = Stored(folder, 0);
        var rank1 = Stored(folder, 1);
        Assert.HasCount(reference.parameters().Count(), rank0, "every weight was saved");
        foreach (var (name, weight) in rank0)
        {
            CollectionAssert.AreEqual(weight, rank1[name], $"{name}: both ranks hold the same weights ({scenario})");
            AssertClose(expected[name], weight, $"{name} ({scenario})");
        }
        double moved = expected.Max(w => w.Value.Zip(initial[w.Key]).Max(p => Math.Abs(p.First - p.Second)));
        Assert.IsGreaterThan(100 * Absolute, moved, "training moved the weights far beyond the tolerance, so the comparison can tell runs apart");

        var losses = File.ReadAllLines(Path.Combine(folder, "rank-0.losses")).Select(l => double.Parse(l, CultureInfo.InvariantCulture)).ToList();
        Assert.HasCount(result.StepLosses.Count, losses);
        for (int i = 0; i < losses.Count; i++)
            Assert.AreEqual(result.StepLosses[i], losses[i], 1e-5 * Math.Abs(result.StepLosses[i]), $"step {i + 1}'s loss, summed over the ranks ({scenario})");
        Assert.AreEqual(result.TokensSeen, long.Parse(File.ReadAllText(Path.Combine(folder, "rank-1.tokens")), CultureInfo.InvariantCulture), "tokens seen count every rank's");
    }

    [TestMethod]
    public void ZeroStageOne_TrainsLikePlainDataParallel()
    {
        var scenario = FreshScenario();
        string plain = FineTuneFixtures.TempFolder("ddp-plain"), sharded = FineTuneFixtures.TempFolder("ddp-zero");
        var (code, output) = MpiRunner.Run(2, [.. scenario.ToArgs(), "--out", plain]);
        Assert.AreEqual(0, code, output);
        (code, output) = MpiRunner.Run(2, [.. (scenario with { ZeroStage = 1 }).ToArgs(), "--out", sharded]);
        Assert.AreEqual(0, code, output);
        var expected = Stored(plain, 0);
        foreach (int rank in new[] { 0, 1 })
            foreach (var (name, weight) in Stored(sharded, rank))
                // The same float operations in the same order, only on the owning rank: bit for bit.
                CollectionAssert.AreEqual(expected[name], weight, $"{name} on rank {rank} ({scenario})");
    }

    [TestMethod]
    [DataRow(0, false), DataRow(1, false), DataRow(1, true)]
    public void RankZeroCheckpoint_ThenResume_ContinuesExactly(int zeroStage, bool bf16)
    {
        var scenario = FreshScenario() with { ZeroStage = zeroStage, Steps = 5, BFloat16 = bf16 };
        string whole = FineTuneFixtures.TempFolder("ddp-whole"), resumed = FineTuneFixtures.TempFolder("ddp-resumed");
        string checkpoints = Path.Combine(resumed, "checkpoints");
        var (code, output) = MpiRunner.Run(2, [.. scenario.ToArgs(), "--out", whole]);
        Assert.AreEqual(0, code, output);
        // Only rank 0 cancels: the other must stop at the same step.
        (code, output) = MpiRunner.Run(2, [.. scenario.ToArgs(), "--out", resumed, "--checkpoint", checkpoints, "--cancel-at", "2"]);
        Assert.AreEqual(0, code, output);
        Assert.IsTrue(File.Exists(Path.Combine(resumed, "rank-0.cancelled")) && File.Exists(Path.Combine(resumed, "rank-1.cancelled")), output);

        var written = Directory.GetFileSystemEntries(checkpoints).Select(Path.GetFileName).ToList();
        CollectionAssert.AreEqual(new[] { "checkpoint-0000002" }, written, "one complete checkpoint, no staging folder left");
        var files = Directory.GetFiles(Path.Combine(checkpoints, "checkpoint-0000002")).Select(Path.GetFileName).Order().ToList();
        string[] optimizerFiles = zeroStage == 1 ? ["optimizer.rank-0-of-2.bin", "optimizer.rank-1-of-2.bin"] : ["optimizer.bin"];
        if (bf16)
            // Each rank's share of the fp32 master weights beside its share of AdamW's state.
            optimizerFiles = [.. optimizerFiles, .. zeroStage == 1 ? new[] { "master_weights.rank-0-of-2.safetensors", "master_weights.rank-1-of-2.safetensors" } : ["master_weights.safetensors"]];
        CollectionAssert.IsSubsetOf(optimizerFiles.Append("model.safetensors").Append(TrainerState.FileName).ToList(), files, string.Join(", ", files));
        Assert.AreEqual(zeroStage == 1 ? 2 : 1, files.Count(f => f!.StartsWith("optimizer", StringComparison.Ordinal)), string.Join(", ", files));

        (code, output) = MpiRunner.Run(2, [.. scenario.ToArgs(), "--out", resumed, "--checkpoint", checkpoints, "--resume"]);
        Assert.AreEqual(0, code, output);
        StringAssert.Contains(output, "Resumed from");
        var expected = Stored(whole, 0);
        foreach (int rank in new[] { 0, 1 })
            foreach (var (name, weight) in Stored(resumed, rank))
                CollectionAssert.AreEqual(expected[name], weight, $"{name} on rank {rank} after the resume ({scenario})");
        CollectionAssert.AreEqual(File.ReadAllLines(Path.Combine(whole, "rank-0.losses")), File.ReadAllLines(Path.Combine(resumed, "rank-0.losses")), "the same step losses");
    }

    [TestMethod]
    [DataRow("sft"), DataRow("dpo")]
    public void Estimators_WithDistributedOption_TrainLikeOneProcessWithTheCombinedBatch(string kind)
    {
        var scenario = FreshScenario();
        string tokenizer = Path.Combine(AppContext.BaseDirectory, "Fixtures", "hf-tokenizers", "bpe");
        string folder = FineTuneFixtures.TempFolder("ddp-estimator");
        var (code, output) = MpiRunner.Run(2, [.. scenario.ToArgs(), "--out", folder, "--estimator", kind, "--tokenizer", tokenizer]);
        Assert.AreEqual(0, code, output);
        using var reference = EstimatorScenario.Fit(kind, tokenizer, scenario.Seed, scenario.Rows, 2 * scenario.BatchSize, null);
        var expected = Weights(reference.Model);
        var stored = Stored(folder, 1);
        Assert.IsNotEmpty(stored);
        foreach (var (name, weight) in stored)
            AssertClose(expected[name], weight, $"{kind}: {name} on rank 1 ({scenario})");
    }

    [TestMethod]
    public void WorldSizeThatMpiDoesNotRun_IsRefusedNamingTheOption()
    {
        var (code, output) = MpiRunner.Run(2, [.. FreshScenario().ToArgs(), "--out", FineTuneFixtures.TempFolder("ddp-bad"), "--world-size", "3"]);
        Assert.AreNotEqual(0, code, output);
        StringAssert.Contains(output, "MPI runs this process as rank");
        StringAssert.Contains(output, "WorldSize");
    }

    private static Dictionary<string, float[]> Weights(CausalLM model) =>
        model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float32).cpu().data<float>().ToArray());

    internal static Dictionary<string, float[]> Stored(string folder, int rank)
    {
        var tensors = SafetensorsWeights.ReadTensors(Path.Combine(folder, $"rank-{rank}", "model.safetensors"));
        try
        {
            return tensors.ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float32).data<float>().ToArray());
        }
        finally
        {
            foreach (var t in tensors.Values)
                t.Dispose();
        }
    }

    internal static void AssertClose(float[] expected, float[] actual, string what)
    {
        Assert.HasCount(expected.Length, actual, what);
        for (int i = 0; i < expected.Length; i++)
            Assert.AreEqual(expected[i], actual[i], Absolute + Relative * Math.Abs(expected[i]), $"{what}[{i}]");
    }
}
