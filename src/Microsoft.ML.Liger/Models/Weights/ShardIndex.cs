using System.Text.Json;

namespace Microsoft.ML.Liger.Models.Weights;

/// <summary>
/// model.safetensors.index.json as Hugging Face writes it: {"metadata": {"total_parameters": elements,
/// "total_size": bytes}, "weight_map": {tensor name: shard file name}}. Shard names are relative to the model folder.
/// </summary>
internal sealed class ShardIndex
{
    public const string FileName = "model.safetensors.index.json";

    public ShardIndex(IReadOnlyDictionary<string, string> weightMap, long totalSize, long totalParameters = -1)
    {
        WeightMap = weightMap;
        TotalSize = totalSize;
        TotalParameters = totalParameters;
    }

    /// <summary>Tensor name → shard file, relative to the folder.</summary>
    public IReadOnlyDictionary<string, string> WeightMap { get; }

    /// <summary>metadata.total_size: the bytes of tensor data over all shards; -1 when absent.</summary>
    public long TotalSize { get; }

    /// <summary>metadata.total_parameters (transformers 5 writes it): the elements over all shards; -1 when absent.</summary>
    public long TotalParameters { get; }

    /// <summary>The distinct shard files, in order of first mention.</summary>
    public IEnumerable<string> ShardFiles => WeightMap.Values.Distinct(StringComparer.Ordinal);

    public static ShardIndex Read(string indexPath)
    {
        if (!File.Exists(indexPath))
            throw new FileNotFoundException($"Weight index '{indexPath}' does not exist.", indexPath);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(indexPath));
        }
        catch (JsonException error)
        {
            throw Corrupt(indexPath, null, $"it is not valid JSON ({error.Message})");
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object
                || !root.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw Corrupt(indexPath, null, "it has no \"weight_map\" object");

            var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                    throw Corrupt(indexPath, entry.Name, $"its weight_map value for '{entry.Name}' is not a file name");
                string shard = entry.Value.GetString()!;
                if (!IsInsideFolder(shard))
                    throw Corrupt(indexPath, entry.Name, $"its weight_map maps '{entry.Name}' to '{shard}', which is not a file inside the model folder");
                if (!weightMap.TryAdd(entry.Name, shard))
                    throw Corrupt(indexPath, entry.Name, $"its weight_map lists '{entry.Name}' twice");
            }

            return new ShardIndex(weightMap, ReadMetadataNumber(root, "total_size"), ReadMetadataNumber(root, "total_parameters"));
        }
    }

    private static long ReadMetadataNumber(JsonElement root, string name) =>
        root.TryGetProperty("metadata", out var metadata) && metadata.ValueKind == JsonValueKind.Object
        && metadata.TryGetProperty(name, out var value) && value.TryGetInt64(out long number) ? number : -1;

    /// <summary>Reads the index if it is there and readable; null otherwise (for clean-up, which must not fail a save).</summary>
    public static ShardIndex? TryRead(string indexPath)
    {
        try
        {
            return File.Exists(indexPath) ? Read(indexPath) : null;
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Writes the index as Hugging Face does (indented, names sorted) to a new file at <paramref name="path"/>.</summary>
    public void Write(string path)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteStartObject("metadata");
            if (TotalParameters >= 0)
                json.WriteNumber("total_parameters", TotalParameters);
            json.WriteNumber("total_size", TotalSize);
            json.WriteEndObject();
            json.WriteStartObject("weight_map");
            foreach (var (name, shard) in WeightMap.OrderBy(e => e.Key, StringComparer.Ordinal))
                json.WriteString(name, shard);
            json.WriteEndObject();
            json.WriteEndObject();
        }
        stream.WriteByte((byte)'\n');
        stream.Flush(flushToDisk: true);
    }

    /// <summary>A relative path that stays inside the folder (no root, no "..").</summary>
    public static bool IsInsideFolder(string relativePath) =>
        relativePath.Length > 0
        && !Path.IsPathRooted(relativePath)
        && !relativePath.Split('/', '\\').Any(part => part is "" or "." or "..");

    private static WeightFormatException Corrupt(string path, string? tensorName, string reason) =>
        new(path, tensorName, $"'{path}' is not a valid weight index: {reason}.");
}
