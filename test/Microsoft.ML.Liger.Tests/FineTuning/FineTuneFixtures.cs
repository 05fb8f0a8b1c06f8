using Microsoft.ML.Liger.FineTuning;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Training;

namespace Microsoft.ML.Liger.Tests.FineTuning;

/// <summary>Small data and options that make a fine-tuning run take a second or two on the CPU.</summary>
internal static class FineTuneFixtures
{
    private static readonly string[] Words = ["red", "blue", "green", "cat", "dog", "bird", "tree", "stone", "river", "cloud", "sun", "moon"];

    /// <summary>The 400-token byte-level BPE tokenizer transformers built for the tokenizer oracle (BOS 0, EOS 1, ChatML template).</summary>
    public static CausalLMTokenizer Tokenizer() =>
        CausalLMTokenizer.FromPretrained(Path.Combine(AppContext.BaseDirectory, "Fixtures", "hf-tokenizers", "bpe"));

    /// <summary>Prompt/response rows with a learnable rule: the response is the prompt's last word, twice.</summary>
    public static List<PromptResponseRow> Rows(int count, int seed)
    {
        var random = new Random(seed);
        var rows = new List<PromptResponseRow>();
        for (int i = 0; i < count; i++)
        {
            var words = Enumerable.Range(0, 2 + random.Next(3)).Select(_ => Words[random.Next(Words.Length)]).ToArray();
            rows.Add(new PromptResponseRow { Prompt = $"last: {string.Join(' ', words)} =", Response = $" {words[^1]} {words[^1]}" });
        }
        return rows;
    }

    /// <summary>Text rows for language modelling (the same rule written as one text).</summary>
    public static List<TextRow> TextRows(int count, int seed) =>
        Rows(count, seed).Select(r => new TextRow { Text = r.Prompt + r.Response }).ToList();

    /// <summary>A one-layer 32-wide Llama over the fixture tokenizer, fp32 on the CPU, no checkpoints.</summary>
    public static FineTuneCausalLMOptions Options(Action<FineTuneCausalLMOptions>? change = null)
    {
        var options = new FineTuneCausalLMOptions
        {
            Tokenizer = Tokenizer(),
            Architecture = "tiny-llama",
            ArchitectureOverrides = new Dictionary<string, object?>
            {
                ["hidden_size"] = 32L, ["intermediate_size"] = 64L, ["num_hidden_layers"] = 1L,
                ["num_attention_heads"] = 2L, ["num_key_value_heads"] = 1L, ["head_dim"] = 16L,
            },
            MaxContextLength = 32,
            BatchSize = 8,
            LearningRate = 3e-3,
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

    /// <summary>A fresh empty folder under the test run's temp folder.</summary>
    public static string TempFolder(string name)
    {
        string path = Path.Combine(Path.GetTempPath(), "liger-tests", $"{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(path);
        return path;
    }
}

/// <summary>A prompt/response row.</summary>
public sealed class PromptResponseRow
{
    public string Prompt { get; set; } = "";
    public string Response { get; set; } = "";
}

/// <summary>A text row.</summary>
public sealed class TextRow
{
    public string Text { get; set; } = "";
}
