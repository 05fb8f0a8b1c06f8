using Microsoft.ML.Liger.PreferenceAlignment;
using Microsoft.ML.Liger.Tests.FineTuning;
using Microsoft.ML.Liger.Training;

namespace Microsoft.ML.Liger.Tests.PreferenceAlignment;

/// <summary>
/// A preference a one-layer model learns in a few dozen steps: the prompt lists three words, one of them an animal; the
/// chosen response is the animal, the rejected one another word from the list.
/// </summary>
internal static class PreferenceFixtures
{
    public static readonly string[] Animals = ["cat", "dog", "bird"];
    private static readonly string[] Others = ["red", "blue", "green", "tree", "stone", "river", "cloud", "sun", "moon"];

    /// <summary>Paired rows: prompt, chosen (the animal), rejected (another listed word).</summary>
    public static List<PairRow> Pairs(int count, int seed)
    {
        var random = new Random(seed);
        var rows = new List<PairRow>();
        for (int i = 0; i < count; i++)
        {
            string animal = Animals[random.Next(Animals.Length)];
            var others = Others.OrderBy(_ => random.Next()).Take(2).ToArray();
            var words = new[] { animal, others[0], others[1] }.OrderBy(_ => random.Next()).ToArray();
            rows.Add(new PairRow { Prompt = $"pick: {string.Join(' ', words)} =", Chosen = $" {animal}", Rejected = $" {others[random.Next(2)]}" });
        }
        return rows;
    }

    /// <summary>KTO rows from the same pairs: each prompt once with its animal (desirable) and once with another word (undesirable), apart in the data.</summary>
    public static List<KtoRow> Unpaired(int count, int seed)
    {
        var pairs = Pairs(count, seed);
        return pairs.Select(p => new KtoRow { Prompt = p.Prompt, Completion = p.Chosen, Label = true })
            .Concat(pairs.Select(p => new KtoRow { Prompt = p.Prompt, Completion = p.Rejected, Label = false }))
            .ToList();
    }

    /// <summary>The fine-tuning fixtures' one-layer 32-wide Llama over the fixture tokenizer, fp32 on the CPU.</summary>
    public static PreferenceAlignmentOptions Options(PreferenceAlgorithm? algorithm, Action<PreferenceAlignmentOptions>? change = null)
    {
        var baseline = FineTuneFixtures.Options();
        var options = new PreferenceAlignmentOptions
        {
            Algorithm = algorithm,
            Tokenizer = baseline.Tokenizer,
            Architecture = baseline.Architecture,
            ArchitectureOverrides = baseline.ArchitectureOverrides,
            MaxContextLength = 32,
            BatchSize = 8,
            LearningRate = 1e-2,
            WarmupSteps = 2,
            MaxSteps = 12,
            LoggingInterval = 1,
            Precision = TrainingPrecision.Float32,
            Device = "cpu",
            Seed = 7,
        };
        change?.Invoke(options);
        return options;
    }

    public static IDataView Data(MLContext ml, PreferenceAlgorithm algorithm, int count, int seed) => algorithm == PreferenceAlgorithm.Kto
        ? ml.Data.LoadFromEnumerable(Unpaired(count, seed))
        : ml.Data.LoadFromEnumerable(Pairs(count, seed));

    /// <summary>Mean of log p(chosen) − log p(rejected) over the pairs, and the fraction with a positive margin.</summary>
    public static (double Margin, double Accuracy) Preference(CausalLMTransformer model, IReadOnlyList<PairRow> pairs)
    {
        var margins = pairs.Select(p => model.LogProbability(p.Prompt, p.Chosen) - model.LogProbability(p.Prompt, p.Rejected)).ToList();
        return (margins.Average(), margins.Count(m => m > 0) / (double)margins.Count);
    }
}

/// <summary>A preference pair.</summary>
public sealed class PairRow
{
    public string Prompt { get; set; } = "";
    public string Chosen { get; set; } = "";
    public string Rejected { get; set; } = "";
}

/// <summary>A KTO row.</summary>
public sealed class KtoRow
{
    public string Prompt { get; set; } = "";
    public string Completion { get; set; } = "";
    public bool Label { get; set; }
}
