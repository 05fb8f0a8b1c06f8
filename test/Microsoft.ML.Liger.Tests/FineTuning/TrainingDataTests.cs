using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Tests.PreferenceAlignment;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.FineTuning;

/// <summary>
/// Issue 16, defect 8: data with nothing to train on is refused (naming the column and the counts), data with some such
/// rows is trained with a warning that counts them, and nothing runs a model past its max_position_embeddings.
/// </summary>
[TestClass]
public sealed class TrainingDataTests
{
    private static readonly string LongPrompt = "last: " + string.Join(' ', Enumerable.Repeat("red blue green cat", 12)) + " =";

    [TestMethod]
    public void DataWithNoTargetToken_IsRefused_NamingTheColumnAndTheCounts()
    {
        var ml = new MLContext(seed: 1);
        int steps = 0;
        var options = FineTuneFixtures.Options(o => o.OnProgress = _ => steps++);

        var emptyText = ml.Data.LoadFromEnumerable(new[] { new TextRow { Text = "" }, new TextRow { Text = "" }, new TextRow { Text = null! } });
        var error = Assert.ThrowsExactly<ArgumentException>(() => ml.Liger().FineTuneCausalLM(options).Fit(emptyText));
        Assert.AreEqual("input", error.ParamName);
        StringAssert.Contains(error.Message, "column 'Text' (TextColumnName)");
        StringAssert.Contains(error.Message, "of 3 rows, 3 with an empty or missing text, 0 with no text token");

        var nothingFits = ml.Data.LoadFromEnumerable(new[]
        {
            new PromptResponseRow { Prompt = LongPrompt, Response = " cat cat" },
            new PromptResponseRow { Prompt = LongPrompt + " dog", Response = " dog dog" },
            new PromptResponseRow { Prompt = "last: red =", Response = "" },
        });
        error = Assert.ThrowsExactly<ArgumentException>(() => ml.Liger().FineTuneCausalLM(options).Fit(nothingFits));
        StringAssert.Contains(error.Message, "column 'Response' (ResponseColumnName)");
        StringAssert.Contains(error.Message, "of 3 rows, 1 with an empty or missing response, 2 with no response token within MaxContextLength = 32");
        Assert.AreEqual(0, steps, "nothing was trained");

        var validation = FineTuneFixtures.Options(o => o.ValidationSet = ml.Data.LoadFromEnumerable(new[] { new PromptResponseRow { Prompt = "last: red =", Response = "" } }));
        error = Assert.ThrowsExactly<ArgumentException>(() => ml.Liger().FineTuneCausalLM(validation).Fit(ml.Data.LoadFromEnumerable(FineTuneFixtures.Rows(8, 1))));
        Assert.AreEqual("ValidationSet", error.ParamName);
        StringAssert.Contains(error.Message, "to evaluate on");
    }

    [TestMethod]
    public void TheTrainer_RefusesExamplesWithoutTargets()
    {
        var options = FineTuneFixtures.Options(o => o.MaxContextLength = 4);
        var config = CausalLMArchitectures.Create("tiny-llama", 400, options.ArchitectureOverrides);
        using var model = new CausalLM(config, new CausalLMOptions { Device = CPU });
        var trainer = new Training.CausalLMTrainer(model, options, padTokenId: 0, eosTokenId: 1);
        var examples = new List<Training.TokenizedExample> { new([5, 6, 7], 3), new([5, 6, 7, 8, 9, 10], 5) }; // all prompt, or the target cut by the context of 4
        var error = Assert.ThrowsExactly<ArgumentException>(() => trainer.Train(examples));
        Assert.AreEqual("train", error.ParamName);
        StringAssert.Contains(error.Message, "of 2 examples, 1 have none at all");
        var validation = Assert.ThrowsExactly<ArgumentException>(() => trainer.Train([new([5, 6], 0)], examples));
        Assert.AreEqual("validation", validation.ParamName);
    }

    [TestMethod]
    public void SomeRowsWithoutTargets_TrainWithAWarningThatCountsThem()
    {
        var ml = new MLContext(seed: 1);
        var warnings = new List<string>();
        ml.Log += (_, e) => { lock (warnings) warnings.Add(e.Message); };
        var rows = FineTuneFixtures.Rows(20, seed: 3);
        rows.Add(new PromptResponseRow { Prompt = "last: red =", Response = "" });
        rows.Add(new PromptResponseRow { Prompt = "last: cat =", Response = "" });
        rows.Add(new PromptResponseRow { Prompt = LongPrompt, Response = " cat cat" });
        using var model = ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => o.MaxSteps = 2)).Fit(ml.Data.LoadFromEnumerable(rows));
        Assert.AreEqual(2, model.Info.TrainedSteps);
        lock (warnings)
            Assert.IsTrue(warnings.Any(w => w.Contains("3 of 23 rows have no response token to train on in column 'Response' (ResponseColumnName)")
                                            && w.Contains("2 with an empty or missing response, 1 with no response token within MaxContextLength = 32")),
                string.Join(Environment.NewLine, warnings));
    }

    [TestMethod]
    public void PreferenceDataWithoutAPreference_IsRefused()
    {
        var ml = new MLContext(seed: 1);
        var same = PreferenceFixtures.Pairs(6, seed: 2).Select(p => new PairRow { Prompt = p.Prompt, Chosen = p.Chosen, Rejected = p.Chosen }).ToList();
        same[0].Chosen = same[0].Rejected = "";
        var error = Assert.ThrowsExactly<ArgumentException>(() => ml.Liger().PreferenceAlignment(PreferenceFixtures.Options(null)).Fit(ml.Data.LoadFromEnumerable(same)));
        Assert.AreEqual("input", error.ParamName);
        StringAssert.Contains(error.Message, "of 6 rows, 1 with an empty or missing 'Chosen' (ChosenColumnName) or 'Rejected' (RejectedColumnName), 5 whose chosen and rejected");
    }

    [TestMethod]
    public void AContextPastTheModelsPositions_IsRefused()
    {
        var ml = new MLContext(seed: 1);
        var shortPositions = new Dictionary<string, object?>(FineTuneFixtures.Options().ArchitectureOverrides!) { ["max_position_embeddings"] = 16L };
        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => o.ArchitectureOverrides = shortPositions)).Fit(ml.Data.LoadFromEnumerable(FineTuneFixtures.Rows(8, 1))));
        Assert.AreEqual("MaxContextLength", error.ParamName);
        StringAssert.Contains(error.Message, "max_position_embeddings = 16");
        error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            ml.Liger().PreferenceAlignment(PreferenceFixtures.Options(null, o => o.ArchitectureOverrides = shortPositions)).Fit(ml.Data.LoadFromEnumerable(PreferenceFixtures.Pairs(8, 1))));
        Assert.AreEqual("MaxContextLength", error.ParamName);
    }

    [TestMethod]
    public void Generation_NeverRunsPastTheModelsPositions()
    {
        var tokenizer = FineTuneFixtures.Tokenizer();
        using var transformer = EarlyErrorTests.TinyTransformer(tokenizer, maxPositions: 16);
        var error = Assert.ThrowsExactly<ArgumentException>(() => transformer.Generate(LongPrompt));
        Assert.AreEqual("prompt", error.ParamName);
        StringAssert.Contains(error.Message, "max_position_embeddings = 16");

        using var prompt = tensor(Enumerable.Range(5, 10).Select(i => (long)i).ToArray(), [1, 10]);
        using var generated = transformer.Model.Generate(prompt, null, new GenerationOptions { MaxNewTokens = 64, StopTokenIds = [] });
        Assert.AreEqual(16, generated.shape[1], "generation stops at max_position_embeddings");
        using var tooLong = tensor(Enumerable.Range(5, 17).Select(i => (long)i).ToArray(), [1, 17]);
        Assert.AreEqual("inputIds", Assert.ThrowsExactly<ArgumentException>(() => transformer.Model.Generate(tooLong)).ParamName);
    }
}
