using Microsoft.ML.Liger.Models.Weights;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models;

/// <summary>
/// Reads and writes Hugging Face weights (model.safetensors, or model-0000i-of-0000N.safetensors shards
/// with model.safetensors.index.json) for any module whose state-dict names are Hugging Face's
/// (<c>model.layers.0.self_attn.q_proj.weight</c>), so a weights folder loads by name with no mapping table.
/// </summary>
public static class SafetensorsWeights
{
    /// <summary>
    /// Copies the weights in <paramref name="folder"/> into <paramref name="model"/>'s parameters and
    /// persistent buffers, by name, in place: the module keeps its device, and its dtype unless
    /// <see cref="WeightLoadOptions.DType"/> asks for another. Every header is validated and every name
    /// and shape checked before anything is copied, so a failed load leaves the module as it was.
    /// Tensors are read one at a time, shard by shard.
    /// </summary>
    /// <returns>Which entries were loaded, missing, unexpected or ignored.</returns>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">The folder has no weights, or the index names a shard that does not exist (both named).</exception>
    /// <exception cref="WeightFormatException">A file is truncated or its header or index is invalid (the file and tensor are named).</exception>
    /// <exception cref="WeightMismatchException">Missing, unexpected (strict) or mis-shaped tensors, or a stored dtype that cannot be loaded.</exception>
    public static WeightLoadResult Load(nn.Module model, string folder, WeightLoadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(folder);
        RequireLittleEndian();
        return WeightLoader.Load(model, folder, options ?? new WeightLoadOptions());
    }

    /// <summary>
    /// Writes <paramref name="model"/>'s parameters and persistent buffers into <paramref name="folder"/> (created
    /// if needed) as model.safetensors, or as shards and an index when they exceed
    /// <see cref="WeightSaveOptions.MaxShardBytes"/>. Each file's metadata holds {"format": "pt"}. The save is
    /// atomic: the files are staged and moved into place only when complete, so an interrupted save leaves the
    /// previous weights loadable; old weight files are then removed and other files (config.json, tokenizer)
    /// are left alone. Tensors are written contiguous, in their own dtype or <see cref="WeightSaveOptions.DType"/>.
    /// </summary>
    public static void Save(nn.Module model, string folder, WeightSaveOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(folder);
        RequireLittleEndian();
        WeightSaver.Save(model, folder, options ?? new WeightSaveOptions());
    }

    /// <summary>
    /// The tensors of the weights in <paramref name="folder"/> as their headers describe them (name, stored
    /// dtype, shape, file), without reading tensor data: for instance to tell whether a weights folder stores
    /// lm_head.weight or relies on tied embeddings. Throws as <see cref="Load"/> does for a missing or corrupt weights folder.
    /// </summary>
    public static IReadOnlyDictionary<string, WeightTensorInfo> ReadIndex(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        return WeightFiles.ReadTensors(folder).ToDictionary(
            entry => entry.Key,
            entry => new WeightTensorInfo(
                entry.Key, entry.Value.Entry.DType, SafetensorsDType.ToScalarType(entry.Value.Entry.DType),
                entry.Value.Entry.Shape, entry.Value.File.Path, entry.Value.Entry.ByteLength),
            StringComparer.Ordinal);
    }

    /// <summary>
    /// Every tensor of one safetensors file, by name, as CPU tensors in their stored dtype (for files that are
    /// not a module's state, such as reference outputs). The header is validated as <see cref="Load"/> validates it.
    /// </summary>
    public static Dictionary<string, Tensor> ReadTensors(string file)
    {
        ArgumentException.ThrowIfNullOrEmpty(file);
        RequireLittleEndian();
        var header = SafetensorsHeader.Read(file);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        foreach (var entry in header.Entries)
        {
            var dtype = SafetensorsDType.ToScalarType(entry.DType)
                ?? throw new WeightFormatException(file, entry.Name, $"stored dtype {entry.DType} cannot be read into a torch tensor");
            var tensor = empty(entry.Shape, dtype);
            stream.Position = header.DataStart + entry.Begin;
            if (entry.ByteLength > 0)
                tensor.ReadBytesFromStream(stream, 1 << 20);
            tensors[entry.Name] = tensor;
        }
        return tensors;
    }

    // The format stores little-endian data and tensors are copied as raw bytes.
    private static void RequireLittleEndian()
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("Safetensors weights are read and written on little-endian machines only.");
    }
}
