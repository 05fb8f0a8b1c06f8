using Microsoft.ML.Liger.Models.Weights;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models;

public sealed partial class CausalLM
{
    /// <summary>
    /// Loads a Hugging Face model folder (config.json + model.safetensors or a sharded index) of any
    /// supported family, with the family's Liger layers as <paramref name="options"/> say (by default every
    /// Liger kernel the family can use, with the fused linear cross-entropy): the analogue of Liger-Kernel's
    /// <c>AutoLigerKernelForCausalLM.from_pretrained(path)</c>. The dtype is the options' or, if unset, the one
    /// config.json says the weights were saved in. Tied embeddings are one tensor (a stored lm_head.weight is ignored).
    /// </summary>
    /// <exception cref="NotSupportedException">config.json's model_type is not a supported family (the message lists them).</exception>
    /// <exception cref="WeightMismatchException">Missing, unexpected or mis-shaped tensors (named), or a config.json whose
    /// sizes disagree with the weights' headers (the field and both values named; found before the model is built).</exception>
    /// <exception cref="WeightFormatException">A file is corrupt, or a symbolic link takes it out of the folder.</exception>
    public static CausalLM FromPretrained(string folder, CausalLMOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException($"Model folder '{folder}' does not exist.");
        var config = CausalLMConfig.Load(folder);
        // Sizes checked against the headers first: the model is allocated from config.json, which may lie.
        ConfigAgainstWeights.Check(config, ModelFolder.PathOf(folder, "config.json"), folder, WeightFiles.ReadTensors(folder));
        options ??= new CausalLMOptions();
        options = options with { DType = options.DType ?? StoredDType(config) };
        var model = new CausalLM(config, options, initialize: false);
        try
        {
            var ignored = new List<string> { "*.rotary_emb.inv_freq" };
            if (config.TieWordEmbeddings)
                ignored.Add("lm_head.weight");
            SafetensorsWeights.Load(model, folder, new WeightLoadOptions { IgnoredNames = ignored });
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Saves config.json and the weights in Hugging Face's format (model.safetensors, or shards and an index
    /// above <paramref name="maxShardBytes"/>), loadable by <see cref="FromPretrained"/> and by transformers.
    /// The weights are written atomically: an interrupted save leaves the previous weights loadable.
    /// </summary>
    public void SavePretrained(string folder, long maxShardBytes = WeightSaveOptions.DefaultMaxShardBytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        Directory.CreateDirectory(folder);
        var dtypeName = LmHeadWeight.dtype switch
        {
            ScalarType.BFloat16 => "bfloat16",
            ScalarType.Float16 => "float16",
            _ => "float32",
        };
        var config = Config.With(new Dictionary<string, object?> { ["dtype"] = dtypeName });
        // config.json by write-and-rename too, so a crash never leaves it half written.
        string staged = Path.Combine(folder, $".config.json.{Environment.ProcessId}.tmp");
        File.WriteAllText(staged, config.ToJson());
        File.Move(staged, Path.Combine(folder, "config.json"), overwrite: true);
        SafetensorsWeights.Save(this, folder, new WeightSaveOptions { MaxShardBytes = maxShardBytes });
    }

    private static ScalarType StoredDType(CausalLMConfig config) => config.TorchDtype switch
    {
        "bfloat16" => ScalarType.BFloat16,
        "float16" => ScalarType.Float16,
        "float64" => ScalarType.Float64,
        _ => ScalarType.Float32,
    };
}
