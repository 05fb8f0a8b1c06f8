using Microsoft.ML.Data;
using Microsoft.ML.Liger.PreferenceAlignment;
using Microsoft.ML.Liger.Tests.FineTuning;

namespace Microsoft.ML.Liger.Tests.PreferenceAlignment;

/// <summary>Schema and option errors that name the column or option, Orpo()'s algorithm, the output schema, pipelines.</summary>
[TestClass]
public sealed class PreferenceSchemaTests
{
    private sealed class NoRejected
    {
        public string Prompt { get; set; } = "";
        public string Chosen { get; set; } = "";
    }

    private sealed class TextLabel
    {
        public string Prompt { get; set; } = "";
        public string Completion { get; set; } = "";
        public string Label { get; set; } = "";
    }

    private sealed class Survey
    {
        public string Question { get; set; } = "";
        public string Good { get; set; } = "";
        public string Bad { get; set; } = "";
    }

    private sealed class GeneratedRow
    {
        public string Prompt { get; set; } = "";
        public string Chosen { get; set; } = "";
        public string Generated { get; set; } = "";
        public float Loss { get; set; }
    }

    [TestMethod]
    public void Fit_WithoutTheRejectedColumn_NamesItAndItsOption()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(new[] { new NoRejected { Prompt = "a", Chosen = "b" } });
        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Liger().Orpo(PreferenceFixtures.Options(null)).Fit(data));
        StringAssert.Contains(error.Message, "no column 'Rejected' (RejectedColumnName)");
        StringAssert.Contains(error.Message, "'Chosen'");
        Assert.AreEqual("input", error.ParamName);

        var renamed = PreferenceFixtures.Options(PreferenceAlgorithm.Dpo, o => o.RejectedColumnName = "Worse");
        error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Liger().PreferenceAlignment(renamed).Fit(data));
        StringAssert.Contains(error.Message, "'Worse' (RejectedColumnName)");
    }

    [TestMethod]
    public void Fit_Kto_WithATextLabel_NamesTheLabelColumnAndItsType()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(new[] { new TextLabel { Prompt = "a", Completion = "b", Label = "yes" } });
        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Liger().PreferenceAlignment(PreferenceFixtures.Options(PreferenceAlgorithm.Kto)).Fit(data));
        StringAssert.Contains(error.Message, "Column 'Label' (LabelColumnName)");
        StringAssert.Contains(error.Message, "must be Boolean");

        var paired = ml.Data.LoadFromEnumerable(PreferenceFixtures.Pairs(4, 1));
        error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Liger().PreferenceAlignment(PreferenceFixtures.Options(PreferenceAlgorithm.Kto)).Fit(paired));
        StringAssert.Contains(error.Message, "no column 'Completion' (CompletionColumnName), which Kto reads");
    }

    [TestMethod]
    public void Fit_WithABadValidationSet_NamesIt()
    {
        var ml = new MLContext(seed: 1);
        var options = PreferenceFixtures.Options(null, o => o.ValidationSet = ml.Data.LoadFromEnumerable(new[] { new NoRejected() }));
        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Liger().Orpo(options).Fit(ml.Data.LoadFromEnumerable(PreferenceFixtures.Pairs(4, 1))));
        Assert.AreEqual("ValidationSet", error.ParamName);
        StringAssert.Contains(error.Message, "'Rejected'");
    }

    [TestMethod]
    public void Options_ThatDoNotApplyToTheAlgorithm_OrAreOutOfRange_AreNamed()
    {
        var ml = new MLContext(seed: 1);
        var pairs = ml.Data.LoadFromEnumerable(PreferenceFixtures.Pairs(4, 1));
        foreach (var (algorithm, change, name, words) in new (PreferenceAlgorithm, Action<PreferenceAlignmentOptions>, string, string)[]
                 {
                     (PreferenceAlgorithm.Dpo, o => o.Gamma = 1, "Gamma", "applies to SimPo only"),
                     (PreferenceAlgorithm.Orpo, o => o.ReferenceModelPath = "/nowhere", "ReferenceModelPath", "Dpo and Kto"),
                     (PreferenceAlgorithm.Cpo, o => o.PrecomputeReferenceLogProbs = true, "PrecomputeReferenceLogProbs", "Dpo and Kto"),
                     (PreferenceAlgorithm.Orpo, o => o.DpoLossType = global::Liger.Kernels.Losses.DpoLossType.Ipo, "DpoLossType", "Dpo only"),
                     (PreferenceAlgorithm.Dpo, o => o.DesirableWeight = 2, "DesirableWeight", "Kto only"),
                     (PreferenceAlgorithm.Orpo, o => o.EstimateKl = false, "EstimateKl", "Kto only"),
                     (PreferenceAlgorithm.Orpo, o => o.LabelSmoothing = 0.1, "LabelSmoothing", "Cpo, SimPo"),
                     (PreferenceAlgorithm.Kto, o => o.ComputeNllLoss = true, "ComputeNllLoss", "no NLL term"),
                     (PreferenceAlgorithm.Dpo, o => o.Alpha = 0.5, "Alpha", "NLL term"),
                     (PreferenceAlgorithm.Dpo, o => { o.DpoLossType = global::Liger.Kernels.Losses.DpoLossType.Ipo; o.AverageLogProb = false; }, "AverageLogProb", "IPO"),
                     (PreferenceAlgorithm.Dpo, o => o.LabelSmoothing = 0.1, "LabelSmoothing", "Robust"),
                     (PreferenceAlgorithm.Cpo, o => o.LabelSmoothing = 0.7, "LabelSmoothing", "[0, 0.5]"),
                     (PreferenceAlgorithm.Orpo, o => o.Beta = 0, "Beta", "positive"),
                     (PreferenceAlgorithm.Orpo, o => o.Packing = true, "Packing", "preference alignment"),
                     (PreferenceAlgorithm.Orpo, o => o.MaxPromptLength = 0, "MaxPromptLength", "≥ 1"),
                     (PreferenceAlgorithm.Orpo, o => o.ChosenColumnName = " ", "ChosenColumnName", "must name a column"),
                     (PreferenceAlgorithm.Orpo, o => o.BatchSize = 0, "BatchSize", "≥ 1"),
                 })
        {
            var options = PreferenceFixtures.Options(algorithm, change);
            var error = Assert.Throws<ArgumentException>(() => ml.Liger().PreferenceAlignment(options).Fit(pairs), name);
            Assert.AreEqual(name, error.ParamName, error.Message);
            StringAssert.Contains(error.Message, words, name);
        }
    }

    [TestMethod]
    public void Orpo_WithAnotherAlgorithm_Throws_AndForcesOrpoOtherwise()
    {
        var ml = new MLContext(seed: 1);
        var error = Assert.ThrowsExactly<ArgumentException>(() => ml.Liger().Orpo(PreferenceFixtures.Options(PreferenceAlgorithm.Dpo)));
        Assert.AreEqual("Algorithm", error.ParamName);
        StringAssert.Contains(error.Message, "Dpo");
        Assert.AreEqual(PreferenceAlgorithm.Orpo, ml.Liger().Orpo(PreferenceFixtures.Options(null)).Algorithm);
        Assert.AreEqual(PreferenceAlgorithm.Orpo, ml.Liger().Orpo(PreferenceFixtures.Options(PreferenceAlgorithm.Orpo)).Algorithm);
        Assert.AreEqual(PreferenceAlgorithm.Orpo, ml.Liger().PreferenceAlignment(PreferenceFixtures.Options(null)).Algorithm, "ORPO when no algorithm is named");
        Assert.AreEqual(PreferenceAlgorithm.SimPo, ml.Liger().PreferenceAlignment(PreferenceFixtures.Options(PreferenceAlgorithm.SimPo)).Algorithm);
    }

    [TestMethod]
    public void GetOutputSchema_AddsGeneratedLossPerplexity_AndChecksTheInput()
    {
        var ml = new MLContext(seed: 1);
        var input = SchemaShapeOf(ml.Data.LoadFromEnumerable(PreferenceFixtures.Pairs(2, 1)));
        var output = ml.Liger().Orpo(PreferenceFixtures.Options(null)).GetOutputSchema(input);
        CollectionAssert.AreEqual(new[] { "Prompt", "Chosen", "Rejected", "Generated", "Loss", "Perplexity" }, output.Select(c => c.Name).ToArray());
        Assert.IsInstanceOfType<TextDataViewType>(output.First(c => c.Name == "Generated").ItemType);

        var kto = SchemaShapeOf(ml.Data.LoadFromEnumerable(new[] { new TextLabel() }));
        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Liger().PreferenceAlignment(PreferenceFixtures.Options(PreferenceAlgorithm.Kto)).GetOutputSchema(kto));
        StringAssert.Contains(error.Message, "'Label' (LabelColumnName)");
        StringAssert.Contains(error.Message, "Boolean");
    }

    [TestMethod]
    public void InAPipeline_AfterMLNetTransforms_FitsAndTransforms()
    {
        var ml = new MLContext(seed: 1);
        var survey = ml.Data.LoadFromEnumerable(PreferenceFixtures.Pairs(16, 3).Select(p => new Survey { Question = p.Prompt, Good = p.Chosen, Bad = p.Rejected }));
        var pipeline = ml.Transforms.CopyColumns("Prompt", nameof(Survey.Question))
            .Append(ml.Transforms.CopyColumns("Chosen", nameof(Survey.Good)))
            .Append(ml.Transforms.CopyColumns("Rejected", nameof(Survey.Bad)))
            .Append(ml.Liger().PreferenceAlignment(PreferenceFixtures.Options(PreferenceAlgorithm.SimPo, o =>
            {
                o.MaxSteps = 3;
                o.Generation = new Microsoft.ML.Liger.Models.GenerationOptions { MaxNewTokens = 3 };
            })));
        var model = pipeline.Fit(survey);
        var rows = ml.Data.CreateEnumerable<GeneratedRow>(model.Transform(survey), reuseRowObject: false).Take(2).ToList();
        Assert.HasCount(2, rows);
        Assert.AreEqual(model.LastTransformer.Generate(rows[0].Prompt), rows[0].Generated, "the generated column is the transformer's completion");
        Assert.AreEqual(model.LastTransformer.Score(rows[0].Prompt, rows[0].Chosen), rows[0].Loss, 1e-5, "the loss column scores the chosen response");
        Assert.AreEqual(PreferenceAlgorithm.SimPo, model.LastTransformer.Info.Alignment!.Algorithm);
        model.LastTransformer.Dispose();
    }

    /// <summary>The shape ML.NET's EstimatorChain passes to GetOutputSchema (SchemaShape.Create is internal: reached by reflection, in the test only).</summary>
    private static SchemaShape SchemaShapeOf(IDataView data)
    {
        var method = typeof(SchemaShape).GetMethod("Create", System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic, [typeof(DataViewSchema)])!;
        return (SchemaShape)method.Invoke(null, [data.Schema])!;
    }
}
