using Microsoft.ML;
using Microsoft.ML.Liger;
using Microsoft.ML.Liger.Distributed;
using Microsoft.ML.Liger.FineTuning;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.PreferenceAlignment;
using Microsoft.ML.Liger.Training;

namespace Liger.Distributed.Worker;

/// <summary>
/// The public estimators with the Distributed option (linked into the test project, which runs the single-process
/// reference): supervised fine-tuning, or DPO, of a one-layer Llama over a tokenizer folder, on generated rows.
/// </summary>
internal static class EstimatorScenario
{
    private static readonly string[] Words = ["red", "blue", "green", "cat", "dog", "bird", "tree", "stone", "river", "cloud", "sun", "moon"];

    /// <summary>Trains <paramref name="kind"/> ("sft" or "dpo") with <paramref name="batchSize"/> rows per process and returns the transformer.</summary>
    public static CausalLMTransformer Fit(string kind, string tokenizerFolder, int seed, int rows, int batchSize, DistributedOptions? distributed)
    {
        var ml = new MLContext(seed);
        var random = new Random(seed);
        var overrides = new Dictionary<string, object?>
        {
            ["hidden_size"] = 32L, ["intermediate_size"] = 48L, ["num_hidden_layers"] = 1L,
            ["num_attention_heads"] = 2L, ["num_key_value_heads"] = 1L, ["head_dim"] = 16L,
        };
        var tokenizer = CausalLMTokenizer.FromPretrained(tokenizerFolder);
        string Phrase() => string.Join(' ', Enumerable.Range(0, 1 + random.Next(4)).Select(_ => Words[random.Next(Words.Length)]));
        if (kind == "sft")
        {
            var data = Enumerable.Range(0, rows).Select(_ => new SftRow { Prompt = $"say: {Phrase()} =", Response = $" {Phrase()}" }).ToList();
            var options = new FineTuneCausalLMOptions
            {
                Tokenizer = tokenizer, Architecture = "tiny-llama", ArchitectureOverrides = overrides, MaxContextLength = 24, BatchSize = batchSize,
                GradientAccumulationSteps = 2, LearningRate = 1e-2, WarmupSteps = 1, MaxSteps = 3, MaxGradientNorm = 0.5,
                Precision = TrainingPrecision.Float32, Device = "cpu", Seed = seed, Distributed = distributed,
            };
            return ml.Liger().FineTuneCausalLM(options).Fit(ml.Data.LoadFromEnumerable(data));
        }
        var pairs = Enumerable.Range(0, rows).Select(_ => new PairRow { Prompt = $"pick: {Phrase()} =", Chosen = $" {Phrase()}", Rejected = $" {Phrase()}" }).ToList();
        var dpo = new PreferenceAlignmentOptions
        {
            Algorithm = PreferenceAlgorithm.Dpo, Tokenizer = tokenizer, Architecture = "tiny-llama", ArchitectureOverrides = overrides, MaxContextLength = 24,
            BatchSize = batchSize, LearningRate = 1e-2, WarmupSteps = 1, MaxSteps = 3, MaxGradientNorm = 0.5,
            Precision = TrainingPrecision.Float32, Device = "cpu", Seed = seed, Distributed = distributed,
        };
        return ml.Liger().PreferenceAlignment(dpo).Fit(ml.Data.LoadFromEnumerable(pairs));
    }

    /// <summary>A prompt/response row.</summary>
    public sealed class SftRow
    {
        public string Prompt { get; set; } = "";
        public string Response { get; set; } = "";
    }

    /// <summary>A preference pair.</summary>
    public sealed class PairRow
    {
        public string Prompt { get; set; } = "";
        public string Chosen { get; set; } = "";
        public string Rejected { get; set; } = "";
    }
}
