using Microsoft.ML.Liger.Distributed;
using Microsoft.ML.Liger.FineTuning;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Tests.PreferenceAlignment;
using Microsoft.ML.Liger.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.FineTuning;

/// <summary>
/// Issue 16, defect 3: options that make training diverge are refused by name before any work, and a run whose loss,
/// gradient norm or weights turn non-finite stops with <see cref="TrainingDivergedException"/> (the last good checkpoint
/// untouched), or skips such steps when <see cref="CausalLMTrainingOptions.SkipNonFiniteSteps"/> asks for it.
/// </summary>
[TestClass]
public sealed class DivergenceTests
{
    private static IDataView Data(MLContext ml, int rows, int seed) => ml.Data.LoadFromEnumerable(FineTuneFixtures.Rows(rows, seed));

    [TestMethod]
    public void NonFiniteAndOutOfRangeOptions_AreRefusedByName_BeforeAnyStep()
    {
        var ml = new MLContext(seed: 1);
        var data = Data(ml, 8, seed: 1);
        var cases = new (Action<CausalLMTrainingOptions> Change, string Name)[]
        {
            (o => o.LearningRate = double.PositiveInfinity, "LearningRate"),
            (o => o.LearningRate = double.NaN, "LearningRate"),
            (o => o.WeightDecay = double.PositiveInfinity, "WeightDecay"),
            (o => o.WeightDecay = double.NaN, "WeightDecay"),
            (o => { o.LearningRate = 0.5; o.WeightDecay = 2; }, "WeightDecay"), // lr·wd = 1: every step zeroes the matrices
            (o => o.AdamEpsilon = double.PositiveInfinity, "AdamEpsilon"),
            (o => o.AdamEpsilon = 0, "AdamEpsilon"),
            (o => o.AdamEpsilon = double.NaN, "AdamEpsilon"),
            (o => o.Beta1 = double.NaN, "Beta1"),
            (o => o.Beta2 = double.NegativeInfinity, "Beta2"),
            (o => o.MaxGradientNorm = double.PositiveInfinity, "MaxGradientNorm"),
            (o => o.MaxGradientNorm = double.NaN, "MaxGradientNorm"),
            (o => o.WarmupRatio = double.NaN, "WarmupRatio"),
            (o => o.MinLearningRateRatio = double.PositiveInfinity, "MinLearningRateRatio"),
            (o => o.Distributed = new DistributedOptions { BucketMegabytes = double.PositiveInfinity }, "BucketMegabytes"),
        };
        foreach (var (change, name) in cases)
        {
            int steps = 0;
            var fineTune = FineTuneFixtures.Options(o => { change(o); o.OnProgress = _ => steps++; });
            var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Liger().FineTuneCausalLM(fineTune).Fit(data), name);
            Assert.AreEqual(name, error.ParamName, error.Message);
            Assert.AreEqual(0, steps, $"{name}: refused before any step");

            var preference = PreferenceFixtures.Options(null, o => change(o));
            var pairs = ml.Data.LoadFromEnumerable(PreferenceFixtures.Pairs(8, 1));
            error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Liger().PreferenceAlignment(preference).Fit(pairs), name);
            Assert.AreEqual(name, error.ParamName, $"preference alignment: {error.Message}");
        }
        foreach (var (change, name) in new (Action<FineTuneCausalLMOptions>, string)[]
                 {
                     (o => o.Generation = new GenerationOptions { Temperature = double.NaN }, "Generation.Temperature"),
                     (o => o.Generation = new GenerationOptions { TopP = double.NaN }, "Generation.TopP"),
                 })
        {
            var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(change)).Fit(data), name);
            Assert.AreEqual(name, error.ParamName);
        }
    }

    /// <summary>
    /// The case: learning rate 1e30. The run stops at the first step whose loss or gradient norm is not finite (the
    /// step the skipping run skips first), with no checkpoint written from that step on: the last one holds the finite losses
    /// of the steps before, exactly as the skipping run computed them.
    /// </summary>
    [TestMethod]
    public void HugeLearningRate_StopsAtTheFirstNonFiniteStep_AndLeavesTheLastGoodCheckpoint()
    {
        var ml = new MLContext(seed: 1);
        var data = Data(ml, 24, seed: 2);
        void Diverging(FineTuneCausalLMOptions o) { o.LearningRate = 1e30; o.WarmupSteps = 0; o.MaxSteps = 8; }
        using var skipping = ml.Liger().FineTuneCausalLM(FineTuneFixtures.Options(o => { Diverging(o); o.SkipNonFiniteSteps = true; })).Fit(data);
        Assert.IsNotEmpty(skipping.Info.SkippedSteps, "a learning rate of 1e30 makes some step non-finite");
        int first = skipping.Info.SkippedSteps[0];
        Assert.IsGreaterThan(1, first, "the first step starts from finite weights");

        string folder = FineTuneFixtures.TempFolder("diverged");
        var stopping = FineTuneFixtures.Options(o =>
        {
            Diverging(o);
            o.CheckpointFolder = folder;
            o.CheckpointInterval = 1;
            o.CheckpointsToKeep = 100;
            o.LoggingInterval = 100; // losses reach the host only at checkpoints
        });
        var error = Assert.ThrowsExactly<TrainingDivergedException>(() => ml.Liger().FineTuneCausalLM(stopping).Fit(data));
        Assert.AreEqual(first, error.Step, error.Message);
        StringAssert.Contains(error.Message, $"step {first} of 8");
        var written = TrainingCheckpoints.List(folder).Select(c => c.Step).ToArray();
        CollectionAssert.AreEqual(Enumerable.Range(1, first - 1).ToArray(), written, "checkpoints only before the diverged step");
        Assert.AreEqual(TrainingCheckpoints.Latest(folder), error.LastCheckpoint);
        using var last = ml.Liger().LoadCausalLM(error.LastCheckpoint!);
        CollectionAssert.AreEqual(skipping.Info.StepLosses.Take(first - 1).ToArray(), last.Info.StepLosses.ToArray(), "the good steps' losses, bit for bit");
        Assert.IsTrue(last.Info.StepLosses.All(double.IsFinite));
    }

    /// <summary>
    /// A step made non-finite on purpose (a NaN gradient, or a NaN loss with finite gradients): stopping names it;
    /// skipping leaves the weights exactly as they were before it, counts it in the reports and the result, and trains on.
    /// </summary>
    [TestMethod]
    [DataRow("gradient norm"), DataRow("loss")]
    public void AStepMadeNonFinite_StopsThere_OrIsSkippedWithoutAnUpdate(string poisoned)
    {
        const int bad = 4;
        var (stopped, _, _) = RunPoisoned(poisoned, bad, skip: false);
        Assert.IsNotNull(stopped);
        Assert.AreEqual(bad, stopped.Step);
        Assert.AreEqual(poisoned, stopped.Quantity);

        var (none, result, snapshots) = RunPoisoned(poisoned, bad, skip: true);
        Assert.IsNull(none);
        CollectionAssert.AreEqual(new[] { bad }, result!.SkippedSteps.ToArray());
        Assert.AreEqual(poisoned == "loss", double.IsNaN(result.StepLosses[bad - 1]), "a skipped step's loss is recorded as it was");
        Assert.IsTrue(result.StepLosses.Where((_, i) => i != bad - 1).All(double.IsFinite));
        foreach (var (name, before) in snapshots[bad - 1].Weights)
            Assert.IsTrue(before.equal(snapshots[bad].Weights[name]).all().item<bool>(), $"{name} changed in the skipped step");
        Assert.IsTrue(snapshots[bad].Weights.Any(w => !w.Value.equal(snapshots[bad + 1].Weights[w.Key]).all().item<bool>()), "the step after the skipped one trains again");
        Assert.AreEqual(0, snapshots[bad - 1].Skipped);
        Assert.AreEqual(1, snapshots[bad].Skipped);
        Assert.AreEqual(1, snapshots[^1].Skipped);
    }

    private sealed record Snapshot(Dictionary<string, Tensor> Weights, int Skipped);

    private static (TrainingDivergedException?, TrainingResult?, List<Snapshot>) RunPoisoned(string poisoned, int badStep, bool skip)
    {
        var tokenizer = FineTuneFixtures.Tokenizer();
        var options = FineTuneFixtures.Options(o => { o.MaxSteps = 8; o.SkipNonFiniteSteps = skip; o.LoggingInterval = 1; });
        var config = CausalLMArchitectures.Create("tiny-llama", tokenizer.VocabularySize, options.ArchitectureOverrides);
        using var model = new CausalLM(config, new CausalLMOptions { Device = CPU, DType = ScalarType.Float32 });
        model.InitializeWeights(3);
        var encoder = new ExampleEncoder(tokenizer, useChatTemplate: false, systemPrompt: null);
        var examples = FineTuneFixtures.Rows(24, seed: 5).Select(r => encoder.PromptResponse(r.Prompt, r.Response)).ToList();
        // Step 0's weights, then each report's: with LoggingInterval 1, snapshots[k] holds the weights after step k.
        var snapshots = new List<Snapshot> { new(Weights(model), 0) };
        var loop = new TrainingLoop(model, options) { OnReport = p => snapshots.Add(new Snapshot(Weights(model), p.SkippedSteps)) };
        var objective = new Poisoned(new LanguageModelObjective(model, options, encoder.PadTokenId, null), model, poisoned, badStep);
        try
        {
            return (null, loop.Run(new BatchPlan(examples, options, encoder.PadTokenId, encoder.EndTokenId), objective, "poisoned"), snapshots);
        }
        catch (TrainingDivergedException e)
        {
            return (e, null, snapshots);
        }
    }

    private static Dictionary<string, Tensor> Weights(CausalLM model) =>
        model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());

    /// <summary>Language modelling, with one step's gradient (or loss) made NaN.</summary>
    private sealed class Poisoned(ITrainingObjective<MicroBatch> inner, CausalLM model, string what, int badStep) : ITrainingObjective<MicroBatch>
    {
        private int calls;

        public Tensor Backward(MicroBatch batch, IReadOnlyList<MicroBatch> step)
        {
            var loss = inner.Backward(batch, step);
            if (++calls != badStep)
                return loss;
            if (what == "loss")
                return loss.mul(torch.tensor(float.NaN));
            using (no_grad())
                model.LmHeadWeight.grad!.view(-1)[0] = torch.tensor(float.NaN);
            return loss;
        }

        public long InputTokens(MicroBatch batch) => inner.InputTokens(batch);

        public IReadOnlyDictionary<string, double>? TakeMetrics() => inner.TakeMetrics();

        public bool HasValidation => inner.HasValidation;

        public (double Loss, IReadOnlyDictionary<string, double>? Metrics) Evaluate() => inner.Evaluate();
    }
}
