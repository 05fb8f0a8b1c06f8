using System.Globalization;
using Microsoft.ML.Liger.Distributed;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Training;

namespace Liger.Distributed.Worker;

/// <summary>
/// A small fine-tuning run both the worker ranks and the tests' single-process reference build the same way (this file is
/// linked into the test project): random token data of uneven lengths with prompts, a one-layer Llama, fp32 (or bf16 with
/// fp32 master weights) on the CPU.
/// </summary>
internal sealed record DistributedScenario
{
    public const int PadId = 0, EosId = 1, Vocabulary = 67;

    public int Seed { get; init; } = 11;
    public int Rows { get; init; } = 23;
    public int BatchSize { get; init; } = 3;
    public int Accumulation { get; init; } = 2;
    public int Steps { get; init; } = 4;
    public double MaxNorm { get; init; } = 0.5;
    public int ZeroStage { get; init; }
    public double BucketMegabytes { get; init; } = 0.01;
    public bool Packing { get; init; }
    public int CheckpointInterval { get; init; }
    public bool BFloat16 { get; init; }

    /// <summary>Rows of 2 to 19 tokens, the first 0 to 3 of them prompt.</summary>
    public List<TokenizedExample> Data()
    {
        var random = new Random(Seed);
        return Enumerable.Range(0, Rows).Select(_ =>
        {
            var tokens = Enumerable.Range(0, 2 + random.Next(18)).Select(_ => 2 + random.Next(Vocabulary - 2)).ToArray();
            return new TokenizedExample(tokens, Math.Min(tokens.Length - 1, random.Next(4)));
        }).ToList();
    }

    public CausalLM Model(string device = "cpu")
    {
        var config = CausalLMArchitectures.Create("tiny-llama", Vocabulary, new Dictionary<string, object?>
        {
            ["hidden_size"] = 24L, ["intermediate_size"] = 40L, ["num_hidden_layers"] = 1L,
            ["num_attention_heads"] = 2L, ["num_key_value_heads"] = 1L, ["head_dim"] = 12L, ["tie_word_embeddings"] = false,
        });
        var model = new CausalLM(config, new CausalLMOptions
        {
            Seed = Seed, Device = TorchSharp.torch.device(device),
            DType = BFloat16 ? TorchSharp.torch.ScalarType.BFloat16 : TorchSharp.torch.ScalarType.Float32,
        });
        model.InitializeWeights(Seed);
        return model;
    }

    /// <summary>The loop's options; <paramref name="batchSize"/> is per process.</summary>
    public CausalLMTrainingOptions Options(int batchSize, DistributedOptions? distributed) => new()
    {
        MaxContextLength = 16,
        Packing = Packing,
        BatchSize = batchSize,
        GradientAccumulationSteps = Accumulation,
        MaxSteps = Steps,
        LearningRate = 2e-2,
        WarmupSteps = 1,
        WeightDecay = 0.1,
        MaxGradientNorm = MaxNorm,
        Precision = BFloat16 ? TrainingPrecision.BFloat16 : TrainingPrecision.Float32,
        LoggingInterval = 1,
        CheckpointInterval = CheckpointInterval,
        Seed = Seed,
        Distributed = distributed,
    };

    public string[] ToArgs() =>
    [
        "--seed", Str(Seed), "--rows", Str(Rows), "--batch", Str(BatchSize), "--accumulation", Str(Accumulation), "--steps", Str(Steps),
        "--max-norm", Str(MaxNorm), "--zero", Str(ZeroStage), "--bucket-mb", Str(BucketMegabytes), "--packing", Str(Packing),
        "--checkpoint-interval", Str(CheckpointInterval), "--bf16", Str(BFloat16),
    ];

    /// <summary>The scenario from <paramref name="args"/> (unknown options are left to the caller).</summary>
    public static DistributedScenario Parse(IReadOnlyList<string> args)
    {
        string? Get(string name) => args.Select((a, i) => (a, i)).Where(x => x.a == name && x.i + 1 < args.Count).Select(x => args[x.i + 1]).FirstOrDefault();
        var d = new DistributedScenario();
        return d with
        {
            Seed = Int(Get("--seed")) ?? d.Seed,
            Rows = Int(Get("--rows")) ?? d.Rows,
            BatchSize = Int(Get("--batch")) ?? d.BatchSize,
            Accumulation = Int(Get("--accumulation")) ?? d.Accumulation,
            Steps = Int(Get("--steps")) ?? d.Steps,
            MaxNorm = Get("--max-norm") is { } n ? double.Parse(n, CultureInfo.InvariantCulture) : d.MaxNorm,
            ZeroStage = Int(Get("--zero")) ?? d.ZeroStage,
            BucketMegabytes = Get("--bucket-mb") is { } b ? double.Parse(b, CultureInfo.InvariantCulture) : d.BucketMegabytes,
            Packing = Get("--packing") is { } p ? bool.Parse(p) : d.Packing,
            CheckpointInterval = Int(Get("--checkpoint-interval")) ?? d.CheckpointInterval,
            BFloat16 = Get("--bf16") is { } h ? bool.Parse(h) : d.BFloat16,
        };
    }

    private static int? Int(string? text) => text is null ? null : int.Parse(text, CultureInfo.InvariantCulture);

    private static string Str(object value) => Convert.ToString(value, CultureInfo.InvariantCulture)!;
}
