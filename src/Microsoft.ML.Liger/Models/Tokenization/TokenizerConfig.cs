using System.Text.Json;
using Microsoft.ML.Liger.Models.Weights;

namespace Microsoft.ML.Liger.Models.Tokenization;

/// <summary>
/// The settings around the vocabulary that a model folder keeps in tokenizer_config.json,
/// generation_config.json and config.json.
/// </summary>
internal sealed class TokenizerConfig
{
    /// <summary>Where tokenizer_config.json is (or would be), for errors.</summary>
    public string Path { get; private init; } = "";
    public string? BosToken { get; private init; }
    public string? EosToken { get; private init; }
    public string? PadToken { get; private init; }
    public bool? AddBosToken { get; private init; }
    public bool? AddEosToken { get; private init; }
    /// <summary>SentencePiece "legacy" mode: every piece between added tokens gets the "▁" prefix (transformers' default).</summary>
    public bool Legacy { get; private init; } = true;
    public bool CleanUpTokenizationSpaces { get; private init; }
    public string? ChatTemplate { get; private init; }
    public List<AddedToken> AddedTokens { get; private init; } = [];
    /// <summary>End-of-sequence ids from generation_config.json and config.json (an id or a list of ids).</summary>
    public List<int> EosTokenIds { get; private init; } = [];
    public int? ConfigBosTokenId { get; private init; }
    public int? ConfigPadTokenId { get; private init; }

    public static TokenizerConfig Read(string folder)
    {
        string tokenizerConfigPath = ModelFolder.PathOf(folder, "tokenizer_config.json");
        string generationPath = ModelFolder.PathOf(folder, "generation_config.json"), modelPath = ModelFolder.PathOf(folder, "config.json");
        using JsonDocument? tokenizerConfig = JsonFiles.ParseIfExists(tokenizerConfigPath);
        using JsonDocument? generationConfig = JsonFiles.ParseIfExists(generationPath);
        using JsonDocument? modelConfig = JsonFiles.ParseIfExists(modelPath);
        JsonElement config = tokenizerConfig?.RootElement ?? default;
        JsonElement generation = generationConfig?.RootElement ?? default;
        JsonElement model = modelConfig?.RootElement ?? default;

        var eosIds = generation.Ids("eos_token_id", generationPath).Concat(model.Ids("eos_token_id", modelPath)).Distinct().ToList();
        return new TokenizerConfig
        {
            Path = tokenizerConfigPath,
            BosToken = config.Token("bos_token", tokenizerConfigPath),
            EosToken = config.Token("eos_token", tokenizerConfigPath),
            PadToken = config.Token("pad_token", tokenizerConfigPath),
            AddBosToken = config.Flag("add_bos_token", tokenizerConfigPath),
            AddEosToken = config.Flag("add_eos_token", tokenizerConfigPath),
            Legacy = config.Flag("legacy", tokenizerConfigPath) ?? true,
            CleanUpTokenizationSpaces = config.Flag("clean_up_tokenization_spaces", tokenizerConfigPath) ?? false,
            ChatTemplate = ReadChatTemplate(folder, config, tokenizerConfigPath),
            AddedTokens = ReadAddedTokensDecoder(config, tokenizerConfigPath),
            EosTokenIds = eosIds,
            ConfigBosTokenId = generation.Ids("bos_token_id", generationPath).Concat(model.Ids("bos_token_id", modelPath)).Cast<int?>().FirstOrDefault(),
            ConfigPadTokenId = generation.Ids("pad_token_id", generationPath).Concat(model.Ids("pad_token_id", modelPath)).Cast<int?>().FirstOrDefault(),
        };
    }

    // The template is a string, a list of named templates (the one named "default" is used), or, in newer
    // model folders, a chat_template.jinja file beside the config.
    private static string? ReadChatTemplate(string folder, JsonElement config, string path)
    {
        JsonElement? template = config.Property("chat_template");
        if (template?.ValueKind == JsonValueKind.String)
            return template.Value.GetString();
        if (template?.ValueKind == JsonValueKind.Array)
            foreach (JsonElement named in template.Value.EnumerateArray())
                if (named.String("name") == "default")
                    return named.String("template");
        if (template is { ValueKind: not (JsonValueKind.String or JsonValueKind.Array) } other)
            throw new InvalidDataException($"'{path}' field 'chat_template' must be a string or a list of named templates; got a JSON {other.ValueKind}.");

        string jinja = ModelFolder.PathOf(folder, "chat_template.jinja");
        return File.Exists(jinja) ? File.ReadAllText(jinja) : null;
    }

    private static List<AddedToken> ReadAddedTokensDecoder(JsonElement config, string path)
    {
        var tokens = new List<AddedToken>();
        if (config.Property("added_tokens_decoder") is not { ValueKind: JsonValueKind.Object } decoder)
            return tokens;
        foreach (JsonProperty entry in decoder.EnumerateObject())
        {
            // Keys are ids written as text: one that is not is an error, not a token to skip.
            if (!int.TryParse(entry.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id))
                throw new InvalidDataException(
                    $"'{path}' field 'added_tokens_decoder' has key \"{entry.Name}\", which is not a token id (a whole number from 0 to {int.MaxValue}).");
            JsonElement token = entry.Value;
            tokens.Add(token.AddedToken(id, "added_tokens_decoder", path));
        }
        return tokens;
    }
}
