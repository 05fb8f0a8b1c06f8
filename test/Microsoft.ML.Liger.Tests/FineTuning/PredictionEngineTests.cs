using Microsoft.ML.Data;
using Microsoft.ML.Liger.FineTuning;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.PreferenceAlignment;
using Microsoft.ML.Liger.Tests.PreferenceAlignment;

namespace Microsoft.ML.Liger.Tests.FineTuning;

/// <summary>
/// mlContext.Model.CreatePredictionEngine on a fine-tuned and an ORPO-aligned transformer: the same values as Transform
/// and as the transformer's own methods, row by row; input checks; ownership; several threads; ML.NET's save.
/// </summary>
[TestClass]
public sealed class PredictionEngineTests
{
    private static readonly PredictionEngineOptions Borrowed = new() { OwnsTransformer = false };
    private static CausalLMTransformer fineTuned = null!;
    private static CausalLMTransformer aligned = null!;

    [ClassInitialize]
    public static void FitModels(TestContext _)
    {
        var ml = new MLContext(seed: 1);
        // Seeded sampling: completions then differ from prompt to prompt (a random-init model's greedy ones often do
        // not), so a completion left over from another row would show; the seed makes each call repeatable.
        fineTuned = ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o =>
        {
            o.MaxSteps = 4;
            o.Generation = new GenerationOptions { MaxNewTokens = 6, DoSample = true, Seed = 3 };
        })).Fit(ml.Data.LoadFromEnumerable(FineTuneFixtures.Rows(24, seed: 1)));
        aligned = ml.Liger().Orpo(PreferenceFixtures.Options(null, o =>
        {
            o.MaxSteps = 4;
            o.Generation = new GenerationOptions { MaxNewTokens = 6 };
        })).Fit(ml.Data.LoadFromEnumerable(PreferenceFixtures.Pairs(24, seed: 2)));
    }

    [ClassCleanup]
    public static void DisposeModels()
    {
        fineTuned?.Dispose();
        aligned?.Dispose();
    }

    [TestMethod]
    public void FineTuned_EngineGivesTransformsValues_OneRowAtATime()
    {
        var ml = new MLContext(seed: 1);
        var rows = FineTuneFixtures.Rows(5, seed: 21);
        var batch = ml.Data.CreateEnumerable<ScoredRow>(fineTuned.Transform(ml.Data.LoadFromEnumerable(rows)), reuseRowObject: false).ToList();
        Assert.AreEqual(rows.Count, batch.Select(r => r.Loss).Distinct().Count(), "every row scores differently, so a value left from another row would show");
        Assert.IsGreaterThan(1, batch.Select(r => r.Completion).Distinct().Count(), "completions differ between rows");

        using var engine = ml.Model.CreatePredictionEngine<PromptResponseRow, ScoredRow>(fineTuned, Borrowed);
        var single = rows.Select(engine.Predict).ToList();
        // One output object reused and the rows in reverse order: what the engine returns for a row depends on that row only.
        var reused = new ScoredRow();
        var reversed = new ScoredRow[rows.Count];
        for (int i = rows.Count - 1; i >= 0; i--)
        {
            engine.Predict(rows[i], ref reused);
            reversed[i] = new ScoredRow { Prompt = reused.Prompt, Response = reused.Response, Completion = reused.Completion, Loss = reused.Loss, Perplexity = reused.Perplexity };
        }

        for (int i = 0; i < rows.Count; i++)
        {
            foreach (var (predicted, how) in new[] { (single[i], "one row"), (reversed[i], "reused output, reverse order") })
            {
                Assert.AreEqual(rows[i].Prompt, predicted.Prompt, $"row {i}, {how}: input columns pass through");
                Assert.AreEqual(batch[i].Completion, predicted.Completion, $"row {i}, {how}: completion");
                Assert.AreEqual(batch[i].Loss, predicted.Loss, $"row {i}, {how}: loss");
                Assert.AreEqual(batch[i].Perplexity, predicted.Perplexity, $"row {i}, {how}: perplexity");
            }
            Assert.AreEqual(fineTuned.Generate(rows[i].Prompt), single[i].Completion, $"row {i}: the transformer's own completion");
            Assert.AreEqual((float)fineTuned.Score(rows[i].Prompt, rows[i].Response), single[i].Loss, $"row {i}: the transformer's own score");
            Assert.AreEqual(MathF.Exp(single[i].Loss), single[i].Perplexity, 1e-4f * single[i].Perplexity, $"row {i}: perplexity = exp(loss)");
        }
    }

    [TestMethod]
    public void Aligned_EngineGivesTransformsValues_InItsOwnColumns()
    {
        var ml = new MLContext(seed: 1);
        var pairs = PreferenceFixtures.Pairs(5, seed: 22);
        var batch = ml.Data.CreateEnumerable<AlignedRow>(aligned.Transform(ml.Data.LoadFromEnumerable(pairs)), reuseRowObject: false).ToList();
        Assert.AreEqual(pairs.Count, batch.Select(r => r.Loss).Distinct().Count(), "every row scores differently");

        using var engine = ml.Model.CreatePredictionEngine<PairRow, AlignedRow>(aligned, Borrowed);
        for (int i = 0; i < pairs.Count; i++)
        {
            var predicted = engine.Predict(pairs[i]);
            Assert.AreEqual(batch[i].Generated, predicted.Generated, $"row {i}: generated");
            Assert.AreEqual(batch[i].Loss, predicted.Loss, $"row {i}: loss");
            Assert.AreEqual(batch[i].Perplexity, predicted.Perplexity, $"row {i}: perplexity");
            Assert.AreEqual(aligned.Generate(pairs[i].Prompt), predicted.Generated, $"row {i}: the transformer's own completion");
            Assert.AreEqual((float)aligned.Score(pairs[i].Prompt, pairs[i].Chosen), predicted.Loss, $"row {i}: the loss scores the chosen response");
        }
    }

    [TestMethod]
    public void PromptOnly_GivesTheCompletion_AndNoScores()
    {
        var ml = new MLContext(seed: 1);
        using var engine = ml.Model.CreatePredictionEngine<PromptRow, CompletionRow>(fineTuned, Borrowed);
        CollectionAssert.AreEqual(new[] { "Prompt", "Completion" }, engine.OutputSchema.Select(c => c.Name).ToArray(), "no prompt/response pair: nothing to score");
        foreach (var row in FineTuneFixtures.Rows(3, seed: 23))
            Assert.AreEqual(fineTuned.Generate(row.Prompt), engine.Predict(new PromptRow { Prompt = row.Prompt }).Completion);
    }

    [TestMethod]
    public void AtTheEndOfAChain_TheEngineMapsThroughMLNetTransforms()
    {
        var ml = new MLContext(seed: 1);
        var rows = FineTuneFixtures.Rows(3, seed: 24);
        var questions = rows.Select(r => new Question { Text = r.Prompt, Answer = r.Response }).ToList();
        var copy = ml.Transforms.CopyColumns("Prompt", nameof(Question.Text))
            .Append(ml.Transforms.CopyColumns("Response", nameof(Question.Answer)))
            .Fit(ml.Data.LoadFromEnumerable(questions));
        var chain = new TransformerChain<CausalLMTransformer>([.. copy, fineTuned]);
        Assert.IsTrue(((ITransformer)chain).IsRowToRowMapper, "a chain maps rows when each of its transformers does");
        using var engine = ml.Model.CreatePredictionEngine<Question, ScoredRow>(chain, Borrowed);
        for (int i = 0; i < rows.Count; i++)
        {
            var predicted = engine.Predict(questions[i]);
            Assert.AreEqual(fineTuned.Generate(rows[i].Prompt), predicted.Completion, $"row {i}: completion");
            Assert.AreEqual((float)fineTuned.Score(rows[i].Prompt, rows[i].Response), predicted.Loss, $"row {i}: loss");
        }
    }

    [TestMethod]
    public void AMissingOrMistypedColumn_IsNamed_ByTheEngineAndByTransform()
    {
        var ml = new MLContext(seed: 1);
        var missing = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Model.CreatePredictionEngine<Misspelt, ScoredRow>(fineTuned, Borrowed));
        StringAssert.Contains(missing.Message, "'Prompt'");
        StringAssert.Contains(missing.Message, "'Prompt' and 'Response'");
        StringAssert.Contains(missing.Message, "Columns present: 'Promt'");
        Assert.AreEqual("inputSchema", missing.ParamName);
        var inTransform = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => fineTuned.Transform(ml.Data.LoadFromEnumerable(new[] { new Misspelt() })));
        Assert.AreEqual(missing.Message, inTransform.Message, "Transform checks its input the same way");

        var mistyped = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Model.CreatePredictionEngine<NumericPrompt, ScoredRow>(fineTuned, Borrowed));
        StringAssert.Contains(mistyped.Message, "Input column 'Prompt' is Single");
        StringAssert.Contains(mistyped.Message, "text");

        // The aligned model reads its own column names: the response it scores is 'Chosen'.
        var alignedMissing = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Model.CreatePredictionEngine<Misspelt, AlignedRow>(aligned, Borrowed));
        StringAssert.Contains(alignedMissing.Message, "'Generated'");
        StringAssert.Contains(alignedMissing.Message, "'Prompt' and 'Chosen'");
    }

    [TestMethod]
    public void DisposingTheEngine_DisposesTheTransformer_UnlessItIsBorrowed()
    {
        var ml = new MLContext(seed: 1);
        using var kept = EarlyErrorTests.TinyTransformer(FineTuneFixtures.Tokenizer(), maxPositions: 64);
        string before = kept.Generate("last: red cat =");
        ml.Model.CreatePredictionEngine<PromptRow, CompletionRow>(kept, Borrowed).Dispose();
        Assert.AreEqual(before, kept.Generate("last: red cat ="), "a borrowed transformer outlives the engine");

        var owned = EarlyErrorTests.TinyTransformer(FineTuneFixtures.Tokenizer(), maxPositions: 64);
        var engine = ml.Model.CreatePredictionEngine<PromptRow, CompletionRow>(owned);
        Assert.AreEqual(before, engine.Predict(new PromptRow { Prompt = "last: red cat =" }).Completion, "same weights (seed 1), same completion");
        engine.Dispose();
        var error = Assert.ThrowsExactly<ObjectDisposedException>(() => owned.Generate("last: red cat ="));
        StringAssert.Contains(error.Message, "OwnsTransformer = false");
        Assert.ThrowsExactly<ObjectDisposedException>(() => owned.Transform(ml.Data.LoadFromEnumerable(new[] { new PromptRow() })));
    }

    [TestMethod]
    public void EnginesOnSeveralThreads_ShareOneTransformer()
    {
        var ml = new MLContext(seed: 1);
        var rows = FineTuneFixtures.Rows(5, seed: 25);
        var expected = ml.Data.CreateEnumerable<ScoredRow>(fineTuned.Transform(ml.Data.LoadFromEnumerable(rows)), reuseRowObject: false).ToList();
        const int threads = 4;
        using var start = new Barrier(threads + 1);
        // One engine per thread (ML.NET's rule); each thread starts at another row, so different rows run at the same time.
        var workers = Enumerable.Range(0, threads).Select(t => Task.Factory.StartNew(() =>
        {
            using var engine = ml.Model.CreatePredictionEngine<PromptResponseRow, ScoredRow>(fineTuned, Borrowed);
            start.SignalAndWait();
            return Enumerable.Range(0, 2 * rows.Count).Select(k => (k + t) % rows.Count).Select(i => (i, engine.Predict(rows[i]))).ToList();
        }, TaskCreationOptions.LongRunning)).ToList();
        // And a Transform cursor on this thread meanwhile.
        start.SignalAndWait();
        var during = ml.Data.CreateEnumerable<ScoredRow>(fineTuned.Transform(ml.Data.LoadFromEnumerable(rows)), reuseRowObject: false).ToList();
        Task.WaitAll(workers);

        foreach (var (i, predicted) in workers.SelectMany(w => w.Result).Concat(during.Select((r, i) => (i, r))))
        {
            Assert.AreEqual(expected[i].Completion, predicted.Completion, $"row {i}: completion");
            Assert.AreEqual(expected[i].Loss, predicted.Loss, $"row {i}: loss");
        }
    }

    [TestMethod]
    public void MLNetSave_OfTheTransformerAlone_PointsToItsOwnSave()
    {
        var ml = new MLContext(seed: 1);
        using var transformer = EarlyErrorTests.TinyTransformer(FineTuneFixtures.Tokenizer(), maxPositions: 64);
        var schema = ml.Data.LoadFromEnumerable(FineTuneFixtures.Rows(2, seed: 1)).Schema;
        var path = Path.Combine(FineTuneFixtures.TempFolder("mlnet-save-alone"), "model.zip");
        var error = Assert.ThrowsExactly<NotSupportedException>(() => ml.Model.Save(transformer, schema, path));
        StringAssert.Contains(error.Message, "transformer.Save(folder)");
        StringAssert.Contains(error.Message, "LoadCausalLM");
    }

    private sealed class PromptRow
    {
        public string Prompt { get; set; } = "";
    }

    private sealed class CompletionRow
    {
        public string Completion { get; set; } = "";
    }

    private sealed class Misspelt
    {
        public string Promt { get; set; } = "";
    }

    private sealed class NumericPrompt
    {
        public float Prompt { get; set; }
        public string Response { get; set; } = "";
    }

    private sealed class Question
    {
        public string Text { get; set; } = "";
        public string Answer { get; set; } = "";
    }

    private sealed class AlignedRow
    {
        public string Prompt { get; set; } = "";
        public string Chosen { get; set; } = "";
        public string Generated { get; set; } = "";
        public float Loss { get; set; }
        public float Perplexity { get; set; }
    }
}
