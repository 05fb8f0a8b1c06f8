using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Models.Weights;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Training;

internal sealed partial class TrainingOptimizer
{
    /// <summary>File of AdamW's state in a checkpoint.</summary>
    public const string StateFile = "optimizer.bin";

    /// <summary>File of the fp32 master weights in a checkpoint of bf16 training.</summary>
    public const string MasterFile = "master_weights.safetensors";

    /// <summary>Writes AdamW's state and the master weights (bf16 training) under the given file names in <paramref name="folder"/>.</summary>
    public void Save(string folder) => Save(folder, StateFile, MasterFile);

    /// <summary>Restores what <see cref="Save(string)"/> wrote.</summary>
    public void Load(string folder) => Load(folder, StateFile, MasterFile);

    internal void Save(string folder, string stateFile, string masterFile)
    {
        SaveState(Path.Combine(folder, stateFile));
        if (MasterWeights is { } masters)
            SafetensorsWriter.Write(Path.Combine(folder, masterFile),
                masters.Select(m => new TensorToSave(m.Name, m.Master, ScalarType.Float32)).ToList(),
                new Dictionary<string, string> { ["format"] = "pt" });
    }

    internal void Load(string folder, string stateFile, string masterFile)
    {
        string masterPath = Path.Combine(folder, masterFile);
        var stored = File.Exists(masterPath) ? SafetensorsWeights.ReadTensors(masterPath) : null;
        try
        {
            LoadState(Path.Combine(folder, stateFile), stored);
        }
        finally
        {
            if (stored is not null)
                foreach (var t in stored.Values)
                    t.Dispose();
        }
    }
}
