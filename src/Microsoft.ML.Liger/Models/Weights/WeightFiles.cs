namespace Microsoft.ML.Liger.Models.Weights;

/// <summary>A stored tensor: the file whose header lists it, and its entry there.</summary>
internal sealed record StoredTensor(SafetensorsHeader File, SafetensorsEntry Entry);

/// <summary>Finds a weights folder's files in a folder the way transformers does, and reads their headers.</summary>
internal static class WeightFiles
{
    public const string SingleFileName = "model.safetensors";

    /// <summary>
    /// Every tensor of the weights in <paramref name="folder"/>, by name, from validated headers (no tensor
    /// data is read). model.safetensors takes precedence over model.safetensors.index.json, as in transformers;
    /// the atomic save relies on that order.
    /// </summary>
    public static Dictionary<string, StoredTensor> ReadTensors(string folder)
    {
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException($"Model folder '{folder}' does not exist.");

        string single = ModelFolder.PathOf(folder, SingleFileName);
        if (File.Exists(single))
            return Collect([SafetensorsHeader.Read(single)]);

        string indexPath = ModelFolder.PathOf(folder, ShardIndex.FileName);
        if (!File.Exists(indexPath))
            throw new FileNotFoundException(
                $"Model folder '{folder}' has neither {SingleFileName} nor {ShardIndex.FileName}.", single);

        var index = ShardIndex.Read(indexPath);
        var headers = new Dictionary<string, SafetensorsHeader>(StringComparer.Ordinal);
        foreach (var shard in index.ShardFiles)
        {
            string shardPath = ModelFolder.PathOf(folder, shard);
            if (!File.Exists(shardPath))
            {
                string firstTensor = index.WeightMap.First(entry => entry.Value == shard).Key;
                throw new FileNotFoundException(
                    $"Weight index '{indexPath}' maps tensor '{firstTensor}' to shard '{shard}', but '{shardPath}' does not exist.",
                    shardPath);
            }
            headers[shard] = SafetensorsHeader.Read(shardPath);
        }

        var tensors = Collect(headers.Values);
        foreach (var (name, shard) in index.WeightMap)
        {
            if (!tensors.TryGetValue(name, out var stored) || stored.File != headers[shard])
                throw new WeightFormatException(indexPath, name,
                    $"Weight index '{indexPath}' maps tensor '{name}' to shard '{shard}', whose header has no tensor '{name}'.");
        }
        return tensors;
    }

    // Every tensor of every shard counts, as transformers loads whole shards: the weight map only says where to look.
    private static Dictionary<string, StoredTensor> Collect(IEnumerable<SafetensorsHeader> headers)
    {
        var tensors = new Dictionary<string, StoredTensor>(StringComparer.Ordinal);
        foreach (var header in headers)
        {
            foreach (var entry in header.Entries)
            {
                if (tensors.TryGetValue(entry.Name, out var earlier))
                    throw new WeightFormatException(header.Path, entry.Name,
                        $"Tensor '{entry.Name}' is stored twice, in '{earlier.File.Path}' and in '{header.Path}'.");
                tensors.Add(entry.Name, new StoredTensor(header, entry));
            }
        }
        return tensors;
    }
}
