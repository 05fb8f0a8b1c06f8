using Microsoft.ML.Data;
using Microsoft.ML.Liger.FineTuning;
using Microsoft.ML.Liger.Training;

namespace Microsoft.ML.Liger.Tests.FineTuning;

/// <summary>Schema checks in Fit and GetOutputSchema, pipelines, and ML.NET's own save refusing clearly.</summary>
[TestClass]
public sealed class FineTuneSchemaTests
{
    private sealed class WrongTypes
    {
        public float Prompt { get; set; }
        public string Response { get; set; } = "";
    }

    private sealed class Question
    {
        public string Question_ { get; set; } = "";
        public string Answer { get; set; } = "";
    }

    [TestMethod]
    public void Fit_WithoutTheColumns_NamesThemAndTheOptions()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(new[] { new Question { Question_ = "a", Answer = "b" } });
        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options()).Fit(data));
        StringAssert.Contains(error.Message, "'Text' (TextColumnName)");
        StringAssert.Contains(error.Message, "'Prompt' and 'Response'");
        StringAssert.Contains(error.Message, "'Question_'");
        Assert.AreEqual("input", error.ParamName);

        var explicitFormat = FineTuneFixtures.Options(o => o.DataFormat = DataFormat.PromptResponse);
        error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Liger().FineTuneCausalLM(explicitFormat).Fit(data));
        StringAssert.Contains(error.Message, "no column 'Prompt' (PromptColumnName)");
    }

    [TestMethod]
    public void Fit_WithANonTextColumn_NamesItsType()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(new[] { new WrongTypes { Prompt = 1, Response = "b" } });
        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options()).Fit(data));
        StringAssert.Contains(error.Message, "Column 'Prompt' (PromptColumnName)");
        StringAssert.Contains(error.Message, "Single");
    }

    [TestMethod]
    public void Fit_WithABadValidationSet_NamesIt()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(FineTuneFixtures.Rows(8, 1));
        var options = FineTuneFixtures.Options(o => o.ValidationSet = ml.Data.LoadFromEnumerable(FineTuneFixtures.TextRows(4, 2)));
        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Liger().FineTuneCausalLM(options).Fit(train));
        Assert.AreEqual("ValidationSet", error.ParamName);
        StringAssert.Contains(error.Message, "'Prompt'");
    }

    [TestMethod]
    public void Options_OutOfRange_AreNamed()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(FineTuneFixtures.Rows(8, 1));
        foreach (var (change, name) in new (Action<FineTuneCausalLMOptions>, string)[]
                 {
                     (o => o.BatchSize = 0, "BatchSize"), (o => o.LearningRate = -1, "LearningRate"), (o => o.Beta2 = 1, "Beta2"),
                     (o => o.WarmupRatio = 1.5, "WarmupRatio"), (o => o.MaxSteps = 0, "MaxSteps"), (o => o.MaxContextLength = 0, "MaxContextLength"),
                 })
        {
            var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(change)).Fit(data), name);
            Assert.AreEqual(name, error.ParamName);
        }
        var unknown = Assert.ThrowsExactly<ArgumentException>(() => ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => o.Architecture = "gpt-9")).Fit(data));
        StringAssert.Contains(unknown.Message, "tiny-llama");
        var both = Assert.ThrowsExactly<ArgumentException>(() => ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o =>
            o.Kernels = new Microsoft.ML.Liger.Models.LigerKernelOptions { CrossEntropy = true })).Fit(data));
        StringAssert.Contains(both.Message, "FusedLinearCrossEntropy");
        var resume = Assert.ThrowsExactly<ArgumentException>(() => ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => o.ResumeFromCheckpoint = true)).Fit(data));
        Assert.AreEqual("CheckpointFolder", resume.ParamName);
    }

    [TestMethod]
    public void GetOutputSchema_AddsTheColumns_AndChecksTheInput()
    {
        var ml = new MLContext(seed: 1);
        var estimator = ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => o.CompletionColumnName = "Answer"));
        var input = SchemaShapeOf(ml, ml.Data.LoadFromEnumerable(FineTuneFixtures.Rows(2, 1)));
        var output = estimator.GetOutputSchema(input);
        CollectionAssert.AreEqual(new[] { "Prompt", "Response", "Answer", "Loss", "Perplexity" }, output.Select(c => c.Name).ToArray());
        Assert.IsInstanceOfType<TextDataViewType>(output.First(c => c.Name == "Answer").ItemType);
        Assert.AreEqual(NumberDataViewType.Single, output.First(c => c.Name == "Loss").ItemType);

        var wrong = SchemaShapeOf(ml, ml.Data.LoadFromEnumerable(new[] { new WrongTypes() }));
        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => o.DataFormat = DataFormat.PromptResponse)).GetOutputSchema(wrong));
        StringAssert.Contains(error.Message, "'Prompt'");
    }

    [TestMethod]
    public void InAPipeline_AfterMLNetTransforms_FitsAndTransforms_AndMLNetSaveSaysWhatToUse()
    {
        var ml = new MLContext(seed: 1);
        var questions = ml.Data.LoadFromEnumerable(FineTuneFixtures.Rows(16, 3).Select(r => new Question { Question_ = r.Prompt, Answer = r.Response }));
        var pipeline = ml.Transforms.CopyColumns("Prompt", nameof(Question.Question_))
            .Append(ml.Transforms.CopyColumns("Response", nameof(Question.Answer)))
            .Append(ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => o.MaxSteps = 3)));
        var model = pipeline.Fit(questions);
        var scored = model.Transform(questions);
        var rows = ml.Data.CreateEnumerable<ScoredRow>(scored, reuseRowObject: false).Take(2).ToList();
        Assert.HasCount(2, rows);
        Assert.IsTrue(rows.All(r => float.IsFinite(r.Loss) && Math.Abs(r.Perplexity - MathF.Exp(r.Loss)) <= 1e-3f * r.Perplexity));
        Assert.AreEqual(model.LastTransformer.Score(rows[0].Prompt, rows[0].Response), rows[0].Loss, 1e-5);
        Assert.AreEqual(model.LastTransformer.Generate(rows[0].Prompt), rows[0].Completion);

        var path = Path.Combine(FineTuneFixtures.TempFolder("mlnet-save"), "model.zip");
        var error = Assert.ThrowsExactly<NotSupportedException>(() => ml.Model.Save(model, questions.Schema, path));
        StringAssert.Contains(error.Message, "LoadCausalLM");
        model.LastTransformer.Dispose();
    }

    /// <summary>The shape ML.NET's EstimatorChain passes to GetOutputSchema (SchemaShape.Create is internal: reached by reflection here, in the test only).</summary>
    private static SchemaShape SchemaShapeOf(MLContext ml, IDataView data) => FromSchema(data.Schema);

    private static SchemaShape FromSchema(DataViewSchema schema)
    {
        var method = typeof(SchemaShape).GetMethod("Create", System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic, [typeof(DataViewSchema)])!;
        return (SchemaShape)method.Invoke(null, [schema])!;
    }
}
