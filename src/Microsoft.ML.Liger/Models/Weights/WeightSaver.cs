using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models.Weights;

/// <summary>
/// Writes a module's state dict as a Hugging Face weights folder, atomically: the new files are written into a
/// hidden folder inside the model folder and moved into place only once complete, in an order where
/// every instant leaves either the old or the new weights loadable (model.safetensors shadows the index,
/// and the index is replaced by a rename).
/// </summary>
internal static class WeightSaver
{
    /// <summary>Prefix of the staging folder; a leftover one is from an interrupted save.</summary>
    public const string StagingPrefix = ".liger-save-";

    public static void Save(nn.Module model, string folder, WeightSaveOptions options)
    {
        if (options.MaxShardBytes <= 0)
            throw new ArgumentException($"WeightSaveOptions.MaxShardBytes must be positive, not {options.MaxShardBytes}.", nameof(options));
        if (options.DType is { } requested && !SafetensorsDType.IsFloatingPoint(requested))
            throw new ArgumentException(
                $"WeightSaveOptions.DType must be a floating-point type (Float16, BFloat16, Float32, Float64), not {requested}.",
                nameof(options));

        var tensors = SelectTensors(model, options);
        var metadata = BuildMetadata(options);
        var shards = PlanShards(tensors, options.MaxShardBytes);
        WriteAndCommit(folder, shards, metadata);
    }

    private static List<TensorToSave> SelectTensors(nn.Module model, WeightSaveOptions options)
    {
        var skipped = new NamePatterns(options.SkippedNames, nameof(WeightSaveOptions.SkippedNames));
        var written = new HashSet<object>();
        var tensors = new List<TensorToSave>();
        foreach (var (name, tensor) in model.state_dict())
        {
            // A tied tensor is written once, under its first name (the embeddings come before lm_head in
            // HF models, which is what transformers keeps too).
            if (skipped.Matches(name) || !written.Add(SameTensor.Key(tensor)))
                continue;
            var dtype = options.DType is { } requested && SafetensorsDType.IsFloatingPoint(tensor.dtype) ? requested : tensor.dtype;
            if (SafetensorsDType.FromScalarType(dtype) is null)
                throw new ArgumentException($"State-dict entry '{name}' is {dtype}, which safetensors cannot store.", nameof(model));
            tensors.Add(new TensorToSave(name, tensor, dtype));
        }
        return tensors;
    }

    private static Dictionary<string, string> BuildMetadata(WeightSaveOptions options)
    {
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in options.Metadata ?? new Dictionary<string, string>())
            metadata[key] = value;
        // transformers refuses a safetensors file whose metadata does not say it holds PyTorch tensors.
        if (metadata.TryGetValue("format", out var format) && format != "pt")
            throw new ArgumentException($"WeightSaveOptions.Metadata sets \"format\" to '{format}'; it must be \"pt\".", nameof(options));
        metadata["format"] = "pt";
        return metadata;
    }

    // As transformers: fill a shard in state-dict order until the next tensor would overflow it.
    private static List<List<TensorToSave>> PlanShards(List<TensorToSave> tensors, long maxShardBytes)
    {
        var shards = new List<List<TensorToSave>> { new() };
        long shardBytes = 0;
        foreach (var tensor in tensors)
        {
            if (shards[^1].Count > 0 && shardBytes + tensor.ByteLength > maxShardBytes)
            {
                shards.Add([]);
                shardBytes = 0;
            }
            shards[^1].Add(tensor);
            shardBytes += tensor.ByteLength;
        }
        return shards;
    }

    private static void WriteAndCommit(string folder, List<List<TensorToSave>> shards, Dictionary<string, string> metadata)
    {
        Directory.CreateDirectory(folder);
        string indexPath = Path.Combine(folder, ShardIndex.FileName);
        string singlePath = Path.Combine(folder, WeightFiles.SingleFileName);
        var oldIndex = ShardIndex.TryRead(indexPath);
        RemoveAbandonedStaging(folder, oldIndex);

        string stagingName = StagingPrefix + Guid.NewGuid().ToString("N");
        string staging = Path.Combine(folder, stagingName);
        Directory.CreateDirectory(staging);
        var shardNames = shards.Count == 1
            ? [WeightFiles.SingleFileName]
            : Enumerable.Range(1, shards.Count).Select(i => $"model-{i:D5}-of-{shards.Count:D5}.safetensors").ToList();
        try
        {
            for (int i = 0; i < shards.Count; i++)
                SafetensorsWriter.Write(Path.Combine(staging, shardNames[i]), shards[i], metadata);
        }
        catch
        {
            TryDeleteFolder(staging);
            throw;
        }

        if (shards.Count == 1)
        {
            File.Move(Path.Combine(staging, shardNames[0]), singlePath, overwrite: true); // the commit
            if (oldIndex is not null)
            {
                File.Delete(indexPath);
                DeleteShards(folder, oldIndex);
            }
        }
        else
        {
            var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            for (int i = 0; i < shards.Count; i++)
                foreach (var tensor in shards[i])
                    weightMap[tensor.Name] = shardNames[i];
            long totalSize = shards.Sum(shard => shard.Sum(tensor => tensor.ByteLength));
            long totalParameters = shards.Sum(shard => shard.Sum(tensor => tensor.Tensor.NumberOfElements));

            // The index first points into the staging folder: replacing it is the commit (or, when an old
            // model.safetensors shadows it, deleting that is). Only then are old shards, whose names the new
            // ones may share, replaced, and the index rewritten with the plain names.
            var staged = new ShardIndex(weightMap.ToDictionary(e => e.Key, e => $"{stagingName}/{e.Value}"), totalSize, totalParameters);
            ReplaceFile(indexPath, staging, staged.Write);
            File.Delete(singlePath);
            if (oldIndex is not null)
                DeleteShards(folder, oldIndex);
            foreach (var shardName in shardNames)
                File.Move(Path.Combine(staging, shardName), Path.Combine(folder, shardName), overwrite: true);
            ReplaceFile(indexPath, staging, new ShardIndex(weightMap, totalSize, totalParameters).Write);
        }
        TryDeleteFolder(staging);
    }

    private static void ReplaceFile(string path, string staging, Action<string> write)
    {
        string temporary = Path.Combine(staging, Path.GetFileName(path) + ".tmp");
        File.Delete(temporary);
        write(temporary);
        File.Move(temporary, path, overwrite: true);
    }

    // Only files the old index names, inside the folder, with the safetensors extension: never anything else.
    private static void DeleteShards(string folder, ShardIndex oldIndex)
    {
        var shards = oldIndex.ShardFiles.Where(shard => shard.EndsWith(".safetensors", StringComparison.Ordinal)).ToList();
        foreach (var shard in shards)
        {
            string path = Path.Combine(folder, shard);
            if (File.Exists(path))
                File.Delete(path);
        }
        // Shards of a save interrupted after its commit sit in its staging folder, now empty.
        foreach (var shardFolder in shards.Select(Path.GetDirectoryName).OfType<string>().Distinct())
            if (shardFolder.StartsWith(StagingPrefix, StringComparison.Ordinal))
                TryDeleteFolder(Path.Combine(folder, shardFolder));
    }

    // A staging folder the current index still points into (a save interrupted after its commit) is in use.
    private static void RemoveAbandonedStaging(string folder, ShardIndex? currentIndex)
    {
        var inUse = currentIndex?.ShardFiles.Select(Path.GetDirectoryName).OfType<string>().ToHashSet(StringComparer.Ordinal) ?? [];
        foreach (var leftover in Directory.EnumerateDirectories(folder, StagingPrefix + "*"))
            if (!inUse.Contains(Path.GetFileName(leftover)))
                TryDeleteFolder(leftover);
    }

    private static void TryDeleteFolder(string path)
    {
        try
        {
            if (Directory.Exists(path))
                Directory.Delete(path, recursive: true);
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            // Left for the next save to remove; it never shadows a weights folder.
        }
    }
}
