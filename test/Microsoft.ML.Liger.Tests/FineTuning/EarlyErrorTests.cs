using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Sweeps;
using Microsoft.ML.Liger.Tests.PreferenceAlignment;
using Microsoft.ML.Liger.Training;

namespace Microsoft.ML.Liger.Tests.FineTuning;

/// <summary>
/// Issue 16, defect 7: folders are checked before the first step, damaged checkpoint files name themselves and what was
/// expected, a device the option cannot name is refused with the accepted values, and an empty prompt names the user's
/// argument or column.
/// </summary>
[TestClass]
public sealed class EarlyErrorTests
{
    private static IDataView Data(MLContext ml, int rows, int seed) => ml.Data.LoadFromEnumerable(FineTuneFixtures.Rows(rows, seed));

    [TestMethod]
    public void ACheckpointFolderThatCannotBeAFolder_IsRefusedBeforeAnyStep()
    {
        var ml = new MLContext(seed: 1);
        string root = FineTuneFixtures.TempFolder("folder-file");
        string file = Path.Combine(root, "a-file");
        File.WriteAllText(file, "not a folder");
        foreach (string folder in new[] { Path.Combine(file, "checkpoints"), file })
        {
            int steps = 0;
            var options = FineTuneFixtures.Options(o => { o.CheckpointFolder = folder; o.OnProgress = _ => steps++; });
            var error = Assert.ThrowsExactly<ArgumentException>(() => ml.Liger().FineTuneCausalLM(options).Fit(Data(ml, 8, 1)), folder);
            Assert.AreEqual("CheckpointFolder", error.ParamName);
            StringAssert.Contains(error.Message, "is a file");
            Assert.AreEqual(0, steps, "refused before training");

            var preference = PreferenceFixtures.Options(null, o => { o.CheckpointFolder = folder; o.OnProgress = _ => steps++; });
            error = Assert.ThrowsExactly<ArgumentException>(() => ml.Liger().PreferenceAlignment(preference).Fit(ml.Data.LoadFromEnumerable(PreferenceFixtures.Pairs(8, 1))));
            Assert.AreEqual("CheckpointFolder", error.ParamName);
            Assert.AreEqual(0, steps, "refused before training");
        }
        Assert.AreEqual("not a folder", File.ReadAllText(file), "the file is left alone");

        // A sweep checks its folders before its first trial.
        var sweep = ml.Liger().CreateSweep(FineTuneFixtures.Options()).SetDataset(Data(ml, 8, 1)).SetMaxTrials(1).SetOutputFolder(Path.Combine(file, "sweep"));
        int trials = 0;
        sweep.TrialCompleted += (_, _) => trials++;
        var sweepError = Assert.ThrowsExactly<ArgumentException>(() => sweep.RunAsync());
        Assert.AreEqual("SetOutputFolder", sweepError.ParamName);
        Assert.AreEqual(0, trials);
    }

    [TestMethod]
    public void DamagedCheckpointFiles_NameTheFileAndWhatWasExpected()
    {
        var ml = new MLContext(seed: 1);
        var data = Data(ml, 16, seed: 2);
        string folder = FineTuneFixtures.TempFolder("damaged");
        using var cancel = new CancellationTokenSource();
        Assert.ThrowsExactly<OperationCanceledException>(() => ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o =>
        {
            o.CheckpointFolder = folder;
            o.CancellationToken = cancel.Token;
            o.OnProgress = p => { if (p.Step == 3) cancel.Cancel(); };
        })).Fit(data));
        string checkpoint = TrainingCheckpoints.Latest(folder)!;
        var resume = FineTuneFixtures.Options(o => { o.CheckpointFolder = folder; o.ResumeFromCheckpoint = true; });

        string optimizer = Path.Combine(checkpoint, "optimizer.bin");
        byte[] bytes = File.ReadAllBytes(optimizer);
        File.WriteAllBytes(optimizer, bytes[..(bytes.Length * 2 / 3)]);
        var truncated = Assert.ThrowsExactly<InvalidDataException>(() => ml.Liger().FineTuneCausalLM(resume).Fit(data));
        StringAssert.Contains(truncated.Message, optimizer);
        StringAssert.Contains(truncated.Message, "AdamW's state for");
        File.WriteAllBytes(optimizer, [.. bytes, 1, 2, 3]);
        var longer = Assert.ThrowsExactly<InvalidDataException>(() => ml.Liger().FineTuneCausalLM(resume).Fit(data));
        StringAssert.Contains(longer.Message, "3 bytes after");
        File.WriteAllBytes(optimizer, bytes);

        string state = Path.Combine(checkpoint, "trainer_state.json");
        string json = File.ReadAllText(state);
        File.WriteAllText(state, "{ \"Step\": 3, garbage");
        var garbage = Assert.ThrowsExactly<InvalidDataException>(() => ml.Liger().FineTuneCausalLM(resume).Fit(data));
        StringAssert.Contains(garbage.Message, state);
        StringAssert.Contains(garbage.Message, "expected a JSON object with Step");
        File.WriteAllText(state, json.Replace("\"Step\": 3", "\"Step\": 99"));
        var inconsistent = Assert.ThrowsExactly<InvalidDataException>(() => ml.Liger().FineTuneCausalLM(resume).Fit(data));
        StringAssert.Contains(inconsistent.Message, "Step is 99");
        File.WriteAllText(state, json);

        using var resumed = ml.Liger().FineTuneCausalLM(resume).Fit(data);
        Assert.AreEqual(12, resumed.Info.TrainedSteps, "the repaired checkpoint resumes");
    }

    [TestMethod]
    [DataRow("TPU"), DataRow("tpu:0"), DataRow("cuda:x"), DataRow("meta")]
    public void AnUnknownDevice_NamesTheOptionAndTheAcceptedValues(string device)
    {
        var ml = new MLContext(seed: 1);
        var error = Assert.ThrowsExactly<ArgumentException>(() => ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => o.Device = device)).Fit(Data(ml, 8, 1)));
        Assert.AreEqual("Device", error.ParamName);
        StringAssert.Contains(error.Message, $"'{device}'");
        StringAssert.Contains(error.Message, "\"cpu\"");
    }

    [TestMethod]
    public void AnEmptyPrompt_NamesThePromptArgument_AndTheColumnInTransform()
    {
        // GPT-2's tokenizer adds no BOS, so an empty prompt is no token at all.
        var tokenizer = CausalLMTokenizer.Gpt2();
        using var transformer = TinyTransformer(tokenizer, maxPositions: 64);
        var error = Assert.ThrowsExactly<ArgumentException>(() => transformer.Generate(""));
        Assert.AreEqual("prompt", error.ParamName);

        var ml = new MLContext(seed: 1);
        var rows = ml.Data.LoadFromEnumerable(new[] { new PromptResponseRow { Prompt = "hello", Response = "x" }, new PromptResponseRow { Prompt = "", Response = "y" } });
        var cursorError = Assert.ThrowsExactly<ArgumentException>(() => ml.Data.CreateEnumerable<ScoredRow>(transformer.Transform(rows), reuseRowObject: false).ToList());
        Assert.AreEqual("Prompt", cursorError.ParamName);
        StringAssert.Contains(cursorError.Message, "Column 'Prompt', row 1");
    }

    /// <summary>A random tiny Llama over <paramref name="tokenizer"/>, as a transformer on prompt/response rows.</summary>
    internal static CausalLMTransformer TinyTransformer(CausalLMTokenizer tokenizer, long maxPositions)
    {
        var overrides = new Dictionary<string, object?>(FineTuneFixtures.Options().ArchitectureOverrides!) { ["max_position_embeddings"] = maxPositions };
        var model = new CausalLM(CausalLMArchitectures.Create("tiny-llama", tokenizer.VocabularySize, overrides), new CausalLMOptions { Device = TorchSharp.torch.CPU });
        model.InitializeWeights(1);
        return new CausalLMTransformer(model, tokenizer);
    }
}
