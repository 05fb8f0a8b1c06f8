using System.Text.Json;

namespace Microsoft.ML.Liger.Models;

/// <summary>Reads the JSON files of a checkpoint folder, with errors that name the file.</summary>
internal static class JsonFiles
{
    public static JsonDocument Parse(string path)
    {
        try
        {
            using FileStream stream = File.OpenRead(path);
            return JsonDocument.Parse(stream, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"'{path}' is not valid JSON: {ex.Message}", ex);
        }
    }

    /// <summary>The file parsed when it exists, null otherwise.</summary>
    public static JsonDocument? ParseIfExists(string path) => File.Exists(path) ? Parse(path) : null;

    public static string? String(this JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out JsonElement value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : null;

    public static bool? Bool(this JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out JsonElement value) && value.ValueKind is JsonValueKind.True or JsonValueKind.False
            ? value.GetBoolean()
            : null;

    public static JsonElement? Property(this JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out JsonElement value) && value.ValueKind != JsonValueKind.Null
            ? value
            : null;

    /// <summary>A token field that is either a string or an object with a "content" string (tokenizer_config.json).</summary>
    public static string? TokenContent(this JsonElement element, string name)
    {
        JsonElement? value = element.Property(name);
        return value?.ValueKind switch
        {
            JsonValueKind.String => value.Value.GetString(),
            JsonValueKind.Object => value.Value.String("content"),
            _ => null,
        };
    }

    /// <summary>An id field that is an int or a list of ints (generation_config.json's eos_token_id), each checked.</summary>
    public static IEnumerable<int> Ids(this JsonElement element, string name, string path)
    {
        JsonElement? value = element.Property(name);
        if (value is null)
            return [];
        if (value.Value.ValueKind == JsonValueKind.Array)
            return value.Value.EnumerateArray().Select(item => Id(item, name, path)).ToList();
        return [Id(value.Value, name, path)];
    }

    /// <summary>A token id: a whole JSON number from 0 to int.MaxValue (64.5, -1, "3" and 1e12 are refused, naming the file and field).</summary>
    public static int Id(JsonElement value, string field, string path) =>
        value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int id) && id >= 0
            ? id
            : throw new InvalidDataException($"'{path}' field '{field}' must be a token id (a whole number from 0 to {int.MaxValue}); got {(value.ValueKind == JsonValueKind.Undefined ? "nothing" : value.GetRawText())}.");
}
