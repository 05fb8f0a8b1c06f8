using System.Runtime.InteropServices;
using Microsoft.ML.Liger.FineTuning;
using Microsoft.ML.Liger.Sweeps;
using Microsoft.ML.Liger.Tests.FineTuning;

namespace Microsoft.ML.Liger.Tests.Sweeps;

/// <summary>Sweeps whose trials are fakes (no training): the sweep's logic alone, in milliseconds.</summary>
internal static class SweepFakes
{
    public static IDataView FakeData(MLContext ml) => ml.Data.LoadFromEnumerable(FineTuneFixtures.TextRows(5, seed: 3));

    public static SweepExperiment Sweep(MLContext ml, Func<TrialContext, TrialMetrics> runner, FineTuneCausalLMOptions? options = null)
    {
        var sweep = ml.Liger().CreateSweep(options ?? new FineTuneCausalLMOptions()).SetDataset(FakeData(ml));
        sweep.TrialRunner = runner;
        return sweep;
    }

    /// <summary>A <see cref="FineTuneCausalLMSearchSpace"/> narrowed to the given values (learning rate fixed unless given).</summary>
    public static SearchSpace<FineTuneCausalLMSearchSpace> Space(int[] contexts, int[] batches, int[]? accumulation = null, bool[]? checkpointing = null,
        bool[]? liger = null, double[]? rates = null) =>
        new SearchSpace<FineTuneCausalLMSearchSpace>()
            .WithChoice(nameof(FineTuneCausalLMSearchSpace.MaxContextLength), contexts.Cast<object>().ToArray())
            .WithChoice(nameof(FineTuneCausalLMSearchSpace.BatchSize), batches.Cast<object>().ToArray())
            .WithChoice(nameof(FineTuneCausalLMSearchSpace.GradientAccumulationSteps), (accumulation ?? [1]).Cast<object>().ToArray())
            .WithChoice(nameof(FineTuneCausalLMSearchSpace.LearningRate), (rates ?? [1e-3]).Cast<object>().ToArray())
            .WithChoice(nameof(FineTuneCausalLMSearchSpace.GradientCheckpointing), (checkpointing ?? [false]).Cast<object>().ToArray())
            .WithChoice(nameof(FineTuneCausalLMSearchSpace.Liger), (liger ?? [true]).Cast<object>().ToArray());

    public static int Context(IReadOnlyDictionary<string, object> p) => (int)p[nameof(FineTuneCausalLMSearchSpace.MaxContextLength)];
    public static int Batch(IReadOnlyDictionary<string, object> p) => (int)p[nameof(FineTuneCausalLMSearchSpace.BatchSize)];
    public static int Accumulation(IReadOnlyDictionary<string, object> p) => (int)p[nameof(FineTuneCausalLMSearchSpace.GradientAccumulationSteps)];
    public static bool Checkpointing(IReadOnlyDictionary<string, object> p) => (bool)p[nameof(FineTuneCausalLMSearchSpace.GradientCheckpointing)];
    public static bool LigerOn(IReadOnlyDictionary<string, object> p) => (bool)p[nameof(FineTuneCausalLMSearchSpace.Liger)];

    /// <summary>A point's identity for comparisons in tests.</summary>
    public static string Key(IReadOnlyDictionary<string, object> p) =>
        string.Join(";", p.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}"));

    /// <summary>What TorchSharp throws when the CUDA caching allocator cannot satisfy a request.</summary>
    public static Exception CudaOutOfMemory() =>
        new ExternalException("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.2 GiB is free.");
}
