using Liger.Kernels.Runtime;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger;

/// <summary>What the estimators share before training: the device, the dtype, and the model (loaded or built from an architecture).</summary>
internal static class ModelSetup
{
    /// <summary>The Device option as a torch device, or the catalog's (MLContext.GpuDeviceId) when null.</summary>
    public static Device ResolveDevice(string? name, LigerCatalog catalog)
    {
        if (name is null)
            return catalog.Device;
        const string accepted = "\"cpu\", \"cuda\" or \"cuda:N\" (N a CUDA device index)";
        Device device;
        try
        {
            device = torch.device(name);
        }
        catch (Exception e)
        {
            // TorchSharp parses the type with Enum.Parse, whose message ("Requested value 'TPU' was not found.") names neither the option nor the choices.
            throw new ArgumentException($"Option 'Device' is '{name}', which is not a device Liger trains on; use {accepted}.", "Device", e);
        }
        if (device.type is not (DeviceType.CPU or DeviceType.CUDA))
            throw new ArgumentException($"Option 'Device' is '{name}', a {device.type} device; Liger trains on {accepted}.", "Device");
        if (device.type == DeviceType.CUDA && TorchRuntimeCheck.WhyCudaUnavailable(Math.Max(device.index, 0)) is { } reason)
            throw new ArgumentException($"Option 'Device' is '{name}', but {reason} Or use \"cpu\".", "Device");
        return device;
    }

    /// <summary>bf16 on a GPU and fp32 on the CPU for Auto.</summary>
    public static ScalarType ResolvePrecision(TrainingPrecision precision, Device device) => precision switch
    {
        TrainingPrecision.Float32 => ScalarType.Float32,
        TrainingPrecision.BFloat16 => ScalarType.BFloat16,
        _ => device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32,
    };

    /// <summary>
    /// The checkpoint in <paramref name="baseModelPath"/>, or <paramref name="architecture"/> from random init
    /// (seeded) with its vocabulary sized to the tokenizer and the tokenizer's special ids in its config.
    /// </summary>
    public static CausalLM Build(string? baseModelPath, string architecture, IReadOnlyDictionary<string, object?>? overrides,
        CausalLMTokenizer tokenizer, LigerKernelOptions kernels, int seed, Device device, ScalarType dtype)
    {
        var modelOptions = new CausalLMOptions { Kernels = kernels, DType = dtype, Device = device, Seed = seed };
        if (baseModelPath is { } path)
            return CausalLM.FromPretrained(path, modelOptions);
        var config = CausalLMArchitectures.Create(architecture, tokenizer.VocabularySize, WithTokens(tokenizer, overrides));
        var model = new CausalLM(config, modelOptions);
        model.InitializeWeights(seed);
        return model;
    }

    /// <summary>Throws naming the Tokenizer option when the model's vocabulary cannot hold the tokenizer's ids.</summary>
    public static void CheckVocabulary(CausalLM model, CausalLMTokenizer tokenizer)
    {
        if (model.Config.VocabSize < tokenizer.VocabularySize)
            throw new ArgumentException(
                $"The tokenizer has {tokenizer.VocabularySize} tokens but the model's vocab_size is {model.Config.VocabSize}.", "Tokenizer");
    }

    public static long Parameters(CausalLM model) => model.parameters().Sum(p => p.numel());

    /// <summary>The architecture's overrides, plus the tokenizer's special ids so the saved config.json names them.</summary>
    private static Dictionary<string, object?> WithTokens(CausalLMTokenizer tokenizer, IReadOnlyDictionary<string, object?>? overrides)
    {
        var fields = new Dictionary<string, object?>();
        if (tokenizer.BosTokenId is int bos) fields["bos_token_id"] = (long)bos;
        if (tokenizer.EosTokenIds.Count > 0) fields["eos_token_id"] = (long)tokenizer.EosTokenIds.Min();
        if (tokenizer.PadTokenId is int pad && !tokenizer.EosTokenIds.Contains(pad)) fields["pad_token_id"] = (long)pad;
        if (overrides is not null)
            foreach (var (key, value) in overrides)
                fields[key] = value;
        return fields;
    }
}
