using System.Text.Json.Nodes;

namespace Microsoft.ML.Liger.Tests.Models;

/// <summary>Bad model folders made in a temp folder from the committed tiny fixtures.</summary>
internal static class LoadingFixtures
{
    public static string TinyModel(string name = "llama3") => Path.Combine(AppContext.BaseDirectory, "Fixtures", "hf-tiny", name);

    public static string BpeTokenizer => Path.Combine(AppContext.BaseDirectory, "Fixtures", "hf-tokenizers", "bpe");

    /// <summary>Copies the files of <paramref name="source"/> (not its sub-folders) into <paramref name="target"/>.</summary>
    public static string CopyInto(string source, string target)
    {
        Directory.CreateDirectory(target);
        foreach (var file in Directory.GetFiles(source))
            File.Copy(file, Path.Combine(target, Path.GetFileName(file)), overwrite: true);
        return target;
    }

    /// <summary>Sets (or, for a null value, removes) a top-level field of a JSON file, keeping the rest.</summary>
    public static void SetField(string path, string field, JsonNode? value)
    {
        var root = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        if (value is null)
            root.Remove(field);
        else
            root[field] = value;
        File.WriteAllText(path, root.ToJsonString());
    }

    /// <summary>Replaces a field with raw JSON text (NaN strings, fractions, lists), for what a serializer would not write.</summary>
    public static void SetRaw(string path, string field, string rawJson) => SetField(path, field, JsonNode.Parse(rawJson));
}
