using Microsoft.ML.Liger.FineTuning;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.FineTuning;

/// <summary>End-to-end fits on the CPU: learning, resume, cancellation, Liger vs eager, accumulation, persistence.</summary>
[TestClass]
public sealed class FineTuneTrainingTests
{
    private static IDataView Data(MLContext ml, int rows, int seed) => ml.Data.LoadFromEnumerable(FineTuneFixtures.Rows(rows, seed));

    [TestMethod]
    public void Fit_EvalLossDrops_AndProgressIsReported()
    {
        var ml = new MLContext(seed: 1);
        var log = new List<string>();
        ml.Log += (_, e) => { lock (log) log.Add(e.Message); };
        var reports = new List<TrainingProgress>();
        var options = FineTuneFixtures.Options(o =>
        {
            o.MaxSteps = 40;
            o.LearningRate = 1e-2;
            o.EvalInterval = 10;
            o.ValidationSet = Data(ml, 24, seed: 99);
            o.OnProgress = reports.Add;
        });
        using var model = ml.Liger().FineTuneCausalLM(options).Fit(Data(ml, 96, seed: 1));

        var evals = model.Info.EvalLosses;
        CollectionAssert.AreEqual(new[] { 10, 20, 30, 40 }, evals.Select(e => e.Step).ToArray(), "evaluated every 10 steps");
        double before = reports.First(r => r.EvalLoss is null).Loss;
        Assert.IsLessThan(0.4 * before, evals[^1].Loss, $"eval loss {evals[^1].Loss:F3} should be far below the first training loss {before:F3}");
        Assert.IsLessThan(evals[0].Loss, evals[^1].Loss, "eval loss drops between the first and last evaluation");
        Assert.AreEqual(40, model.Info.StepLosses.Count);
        var trainReports = reports.Where(r => r.EvalLoss is null).ToList();
        CollectionAssert.AreEqual(Enumerable.Range(1, 40).ToArray(), trainReports.Select(r => r.Step).ToArray(), "a report per step at LoggingInterval 1");
        Assert.IsTrue(trainReports.All(r => r.TotalSteps == 40 && r.TokensPerSecond > 0 && r.PeakMemoryBytes > 0 && double.IsFinite(r.GradientNorm)));
        Assert.AreEqual(0.0, trainReports[0].LearningRate, "warm-up starts at 0, as transformers' schedulers do");
        lock (log)
        {
            Assert.IsTrue(log.Any(m => m.Contains("step 40/40") && m.Contains("tokens/s")), "reports reach ML.NET's log");
            Assert.IsTrue(log.Any(m => m.Contains("eval loss")), "evaluations reach ML.NET's log");
        }
    }

    [TestMethod]
    [DataRow(true), DataRow(false)]
    public void Resume_AfterCancellation_ContinuesTheSameTrajectory(bool tiedEmbeddings)
    {
        var ml = new MLContext(seed: 1);
        var data = Data(ml, 40, seed: 3);
        void Tie(FineTuneCausalLMOptions o) =>
            o.ArchitectureOverrides = new Dictionary<string, object?>(o.ArchitectureOverrides!) { ["tie_word_embeddings"] = tiedEmbeddings };
        using var uninterrupted = ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(Tie)).Fit(data);

        string folder = FineTuneFixtures.TempFolder("resume");
        using var cancel = new CancellationTokenSource();
        var interrupted = FineTuneFixtures.Options(o =>
        {
            Tie(o);
            o.CheckpointFolder = folder;
            o.CheckpointInterval = 4;
            o.LoggingInterval = 3; // the checkpoint at 4 holds a loss not yet reported
            o.CancellationToken = cancel.Token;
            o.OnProgress = p => { if (p.Step == 6) cancel.Cancel(); };
        });
        Assert.ThrowsExactly<OperationCanceledException>(() => ml.Liger().FineTuneCausalLM(interrupted).Fit(data));
        CollectionAssert.AreEqual(new[] { 4, 6 }, TrainingCheckpoints.List(folder).Select(c => c.Step).ToArray(), "interval checkpoint plus one at cancellation");
        // As if the process had died after step 4's checkpoint: resume from that one.
        Directory.Delete(TrainingCheckpoints.Latest(folder)!, recursive: true);

        var resumed = FineTuneFixtures.Options(o => { Tie(o); o.CheckpointFolder = folder; o.ResumeFromCheckpoint = true; });
        using var finished = ml.Liger().FineTuneCausalLM(resumed).Fit(data);

        CollectionAssert.AreEqual(uninterrupted.Info.StepLosses.ToArray(), finished.Info.StepLosses.ToArray(), "step losses, bit for bit (CPU, fp32)");
        ModelsAreBitEqual(uninterrupted.Model, finished.Model);
    }

    [TestMethod]
    public void Resume_InBFloat16_RestoresMasterWeights()
    {
        var ml = new MLContext(seed: 1);
        var data = Data(ml, 24, seed: 4);
        void Bf16(FineTuneCausalLMOptions o) { o.Precision = TrainingPrecision.BFloat16; o.MaxSteps = 8; }
        using var uninterrupted = ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(Bf16)).Fit(data);
        Assert.AreEqual(ScalarType.BFloat16, uninterrupted.Model.LmHeadWeight.dtype);

        string folder = FineTuneFixtures.TempFolder("resume-bf16");
        using var cancel = new CancellationTokenSource();
        Assert.ThrowsExactly<OperationCanceledException>(() => ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o =>
        {
            Bf16(o);
            o.CheckpointFolder = folder;
            o.CancellationToken = cancel.Token;
            o.OnProgress = p => { if (p.Step == 3) cancel.Cancel(); };
        })).Fit(data));
        Assert.IsTrue(File.Exists(Path.Combine(TrainingCheckpoints.Latest(folder)!, "master_weights.safetensors")));
        using var finished = ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => { Bf16(o); o.CheckpointFolder = folder; o.ResumeFromCheckpoint = true; })).Fit(data);
        CollectionAssert.AreEqual(uninterrupted.Info.StepLosses.ToArray(), finished.Info.StepLosses.ToArray(), "bf16 step losses after resume");
        ModelsAreBitEqual(uninterrupted.Model, finished.Model);
    }

    [TestMethod]
    public void Cancellation_LeavesALoadableCheckpoint_AndAnExistingFolderIsNotOverwritten()
    {
        var ml = new MLContext(seed: 1);
        var data = Data(ml, 24, seed: 5);
        string folder = FineTuneFixtures.TempFolder("cancel");
        using var cancel = new CancellationTokenSource();
        CausalLM? trained = null;
        var options = FineTuneFixtures.Options(o =>
        {
            o.CheckpointFolder = folder;
            o.CancellationToken = cancel.Token;
            o.OnProgress = p => { if (p.Step == 5) cancel.Cancel(); };
        });
        Assert.ThrowsExactly<OperationCanceledException>(() => trained = ml.Liger().FineTuneCausalLM(options).Fit(data).Model);
        string checkpoint = TrainingCheckpoints.Latest(folder)!;
        Assert.AreEqual("checkpoint-0000005", Path.GetFileName(checkpoint));
        Assert.IsFalse(Directory.GetDirectories(folder).Any(d => Path.GetFileName(d).StartsWith('.')), "no staging folder left behind");

        using var loaded = ml.Liger().LoadCausalLM(checkpoint);
        Assert.AreEqual(5, loaded.Info.TrainedSteps, "the checkpoint's liger_model.json records its step");
        Assert.HasCount(5, loaded.Info.StepLosses);
        double loss = loaded.Score("last: red cat =", " cat cat");
        Assert.IsTrue(double.IsFinite(loss), "the checkpoint scores rows");
        Assert.IsNotNull(loaded.Generate("last: red cat ="));

        // Starting a new run into the same folder without ResumeFromCheckpoint must not touch it.
        var again = FineTuneFixtures.Options(o => o.CheckpointFolder = folder);
        var error = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Liger().FineTuneCausalLM(again).Fit(data));
        StringAssert.Contains(error.Message, "ResumeFromCheckpoint");
        Assert.AreEqual(checkpoint, TrainingCheckpoints.Latest(folder));
    }

    [TestMethod]
    public void LigerOnAndOff_GiveTheSameLosses()
    {
        var ml = new MLContext(seed: 1);
        var data = Data(ml, 32, seed: 6);
        using var liger = ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options()).Fit(data);
        using var eager = ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => o.Kernels = LigerKernelOptions.None)).Fit(data);
        StringAssert.Contains(liger.Model.AppliedKernels, "fused_linear_cross_entropy");
        StringAssert.StartsWith(eager.Model.AppliedKernels, "none");
        AssertLossesClose(eager.Info.StepLosses, liger.Info.StepLosses, 1e-4, "Liger vs eager");
    }

    [TestMethod]
    public void GradientAccumulation_EqualsOneBiggerBatch()
    {
        var ml = new MLContext(seed: 1);
        var data = Data(ml, 32, seed: 8);
        using var big = ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => { o.BatchSize = 8; o.MaxSteps = 6; })).Fit(data);
        // Same rows per step in the same order: the shuffled order depends on the seed only, and 8 = 4 x 2.
        using var accumulated = ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => { o.BatchSize = 4; o.GradientAccumulationSteps = 2; o.MaxSteps = 6; })).Fit(data);
        AssertLossesClose(big.Info.StepLosses, accumulated.Info.StepLosses, 1e-5, "batch 8 vs 4 x 2 accumulated");
    }

    [TestMethod]
    public void TextAndPacking_Train()
    {
        var ml = new MLContext(seed: 1);
        var text = ml.Data.LoadFromEnumerable(FineTuneFixtures.TextRows(64, seed: 9));
        using var packed = ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => { o.Packing = true; o.MaxSteps = 30; o.LearningRate = 1e-2; })).Fit(text);
        Assert.AreEqual(DataFormat.Text, packed.Info.DataFormat);
        Assert.IsLessThan(0.6 * packed.Info.StepLosses[0], packed.Info.StepLosses.TakeLast(3).Average(), "packed text training lowers the loss");
    }

    [TestMethod]
    public void SaveAndLoad_RoundTrip_IsBitExact_AndTransformsAlike()
    {
        var ml = new MLContext(seed: 1);
        // The chat template's markers and system turn fill 32 tokens before the response: 128 leaves room to train on.
        using var trained = ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o =>
        {
            o.UseChatTemplate = true;
            o.SystemPrompt = "Be brief.";
            o.MaxContextLength = 128;
        })).Fit(Data(ml, 24, seed: 10));
        string folder = Path.Combine(FineTuneFixtures.TempFolder("save"), "model");
        trained.Save(folder);
        trained.Save(folder); // saving over an existing model swaps it whole
        using var loaded = ml.Liger().LoadCausalLM(folder);

        ModelsAreBitEqual(trained.Model, loaded.Model);
        Assert.AreEqual(trained.Info.DataFormat, loaded.Info.DataFormat);
        Assert.IsTrue(loaded.Info.UseChatTemplate);
        Assert.AreEqual("Be brief.", loaded.Info.SystemPrompt);
        CollectionAssert.AreEqual(trained.Info.StepLosses.ToArray(), loaded.Info.StepLosses.ToArray());
        var probe = Data(ml, 3, seed: 11);
        var a = ml.Data.CreateEnumerable<ScoredRow>(trained.Transform(probe), reuseRowObject: false).ToList();
        var b = ml.Data.CreateEnumerable<ScoredRow>(loaded.Transform(probe), reuseRowObject: false).ToList();
        CollectionAssert.AreEqual(a.Select(r => r.Completion).ToArray(), b.Select(r => r.Completion).ToArray());
        CollectionAssert.AreEqual(a.Select(r => r.Loss).ToArray(), b.Select(r => r.Loss).ToArray());
    }

    internal static void ModelsAreBitEqual(CausalLM expected, CausalLM actual)
    {
        var e = expected.state_dict();
        var a = actual.state_dict();
        CollectionAssert.AreEquivalent(e.Keys.ToArray(), a.Keys.ToArray());
        foreach (var (name, tensor) in e)
            Assert.IsTrue(tensor.to(ScalarType.Float32).equal(a[name].to(ScalarType.Float32)).all().item<bool>(), $"{name} differs");
    }

    private static void AssertLossesClose(IReadOnlyList<double> expected, IReadOnlyList<double> actual, double relative, string what)
    {
        Assert.HasCount(expected.Count, actual);
        for (int i = 0; i < expected.Count; i++)
            Assert.IsLessThanOrEqualTo(relative * Math.Abs(expected[i]), Math.Abs(expected[i] - actual[i]),
                $"{what}: step {i + 1} loss {actual[i]:R} vs {expected[i]:R}");
    }
}

/// <summary>A row with the transformer's columns.</summary>
public sealed class ScoredRow
{
    public string Prompt { get; set; } = "";
    public string Response { get; set; } = "";
    public string Completion { get; set; } = "";
    public float Loss { get; set; }
    public float Perplexity { get; set; }
}
