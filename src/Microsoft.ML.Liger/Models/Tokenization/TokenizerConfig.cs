using System.Text.Json;

namespace Microsoft.ML.Liger.Models;

/// <summary>
/// The settings around the vocabulary that a checkpoint keeps in tokenizer_config.json,
/// generation_config.json and config.json.
/// </summary>
internal sealed class TokenizerConfig
{
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
        using JsonDocument? tokenizerConfig = JsonFiles.ParseIfExists(Path.Combine(folder, "tokenizer_config.json"));
        using JsonDocument? generationConfig = JsonFiles.ParseIfExists(Path.Combine(folder, "generation_config.json"));
        using JsonDocument? modelConfig = JsonFiles.ParseIfExists(Path.Combine(folder, "config.json"));
        JsonElement config = tokenizerConfig?.RootElement ?? default;
        JsonElement generation = generationConfig?.RootElement ?? default;
        JsonElement model = modelConfig?.RootElement ?? default;

        var eosIds = generation.Ids("eos_token_id").Concat(model.Ids("eos_token_id")).Distinct().ToList();
        return new TokenizerConfig
        {
            BosToken = config.TokenContent("bos_token"),
            EosToken = config.TokenContent("eos_token"),
            PadToken = config.TokenContent("pad_token"),
            AddBosToken = config.Bool("add_bos_token"),
            AddEosToken = config.Bool("add_eos_token"),
            Legacy = config.Bool("legacy") ?? true,
            CleanUpTokenizationSpaces = config.Bool("clean_up_tokenization_spaces") ?? false,
            ChatTemplate = ReadChatTemplate(folder, config),
            AddedTokens = ReadAddedTokensDecoder(config),
            EosTokenIds = eosIds,
            ConfigBosTokenId = generation.Ids("bos_token_id").Concat(model.Ids("bos_token_id")).Cast<int?>().FirstOrDefault(),
            ConfigPadTokenId = generation.Ids("pad_token_id").Concat(model.Ids("pad_token_id")).Cast<int?>().FirstOrDefault(),
        };
    }

    // The template is a string, a list of named templates (the one named "default" is used), or, in newer
    // checkpoints, a chat_template.jinja file beside the config.
    private static string? ReadChatTemplate(string folder, JsonElement config)
    {
        JsonElement? template = config.Property("chat_template");
        if (template?.ValueKind == JsonValueKind.String)
            return template.Value.GetString();
        if (template?.ValueKind == JsonValueKind.Array)
            foreach (JsonElement named in template.Value.EnumerateArray())
                if (named.String("name") == "default")
                    return named.String("template");

        string jinja = Path.Combine(folder, "chat_template.jinja");
        return File.Exists(jinja) ? File.ReadAllText(jinja) : null;
    }

    private static List<AddedToken> ReadAddedTokensDecoder(JsonElement config)
    {
        var tokens = new List<AddedToken>();
        if (config.Property("added_tokens_decoder") is not { ValueKind: JsonValueKind.Object } decoder)
            return tokens;
        foreach (JsonProperty entry in decoder.EnumerateObject())
        {
            if (!int.TryParse(entry.Name, out int id))
                continue;
            JsonElement token = entry.Value;
            tokens.Add(new AddedToken(id, token.String("content") ?? "", token.Bool("special") ?? false,
                token.Bool("lstrip") ?? false, token.Bool("rstrip") ?? false));
        }
        return tokens;
    }
}
