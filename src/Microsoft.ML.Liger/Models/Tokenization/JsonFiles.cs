using System.Text.Json;

namespace Microsoft.ML.Liger.Models.Tokenization;

/// <summary>Reads the JSON files of a model folder, with errors that name the file.</summary>
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

    /// <summary>A true/false field of a model folder's file; absent or null is null, any other JSON type is an error naming the file and field.</summary>
    public static bool? Flag(this JsonElement element, string name, string path) => element.Property(name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.True or JsonValueKind.False } value => value.GetBoolean(),
        var other => throw new InvalidDataException($"'{path}' field '{name}' must be true or false; got {other.Value.GetRawText()}."),
    };

    /// <summary>A token field (a string, or an object whose "content" is one); any other JSON type is an error naming the file and field.</summary>
    public static string? Token(this JsonElement element, string name, string path) => element.Property(name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.String } value => value.GetString(),
        { ValueKind: JsonValueKind.Object } value when value.Property("content") is { ValueKind: JsonValueKind.String } content => content.GetString(),
        var other => throw new InvalidDataException($"'{path}' field '{name}' must be a token (a string, or an object with a \"content\" string); got {other.Value.GetRawText()}."),
    };

    /// <summary>An added token's entry (tokenizer.json added_tokens, tokenizer_config.json added_tokens_decoder): non-empty content, flags true/false.</summary>
    public static AddedToken AddedToken(this JsonElement token, int id, string field, string path)
    {
        string content = token.Property("content") is { ValueKind: JsonValueKind.String } text && text.GetString() is { Length: > 0 } s ? s
            : throw new InvalidDataException($"'{path}' field '{field}' has a token (id {id}) without a non-empty \"content\" string.");
        return new AddedToken(id, content, token.Flag("special", path) ?? false, token.Flag("lstrip", path) ?? false, token.Flag("rstrip", path) ?? false);
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
