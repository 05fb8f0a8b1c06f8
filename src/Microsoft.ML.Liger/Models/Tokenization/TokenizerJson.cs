using System.Text;
using System.Text.Json;

namespace Microsoft.ML.Liger.Models.Tokenization;

/// <summary>
/// What a byte-level BPE tokenizer.json (GPT-2, Llama 3, Qwen2/3, GLM-4 style) says, in the terms the
/// library's BPE and Tiktoken tokenizers take.
/// </summary>
internal sealed class TokenizerJson
{
    /// <summary>GPT-2's split regex: what a ByteLevel pre-tokenizer with use_regex applies.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    public required string Path { get; init; }
    public required Dictionary<string, int> Vocabulary { get; init; }
    /// <summary>Merges as "left right", highest priority first.</summary>
    public required List<string> Merges { get; init; }
    /// <summary>Whether a word found whole in the vocabulary skips the merges (Llama 3's tiktoken behaviour).</summary>
    public bool IgnoreMerges { get; init; }
    public string? UnknownToken { get; init; }
    public string? ContinuingSubwordPrefix { get; init; }
    public string? EndOfWordSuffix { get; init; }
    /// <summary>Split regexes applied one after another (each splits the pieces of the one before).</summary>
    public required List<string> PreTokenizerPatterns { get; init; }
    public required List<NormalizationForm> Normalizations { get; init; }
    public required List<AddedToken> AddedTokens { get; init; }
    /// <summary>Ids the post-processor puts before and after a single sequence; null when it adds none.</summary>
    public IReadOnlyList<int>? PrefixIds { get; init; }
    public IReadOnlyList<int>? SuffixIds { get; init; }

    /// <summary>The added tokens of a tokenizer.json, supported model or not.</summary>
    public static List<AddedToken> ReadAddedTokens(string path, JsonElement root)
    {
        var tokens = new List<AddedToken>();
        if (root.Property("added_tokens") is { ValueKind: JsonValueKind.Array } added)
            foreach (JsonElement token in added.EnumerateArray())
                tokens.Add(token.AddedToken(JsonFiles.Id(token.Property("id") ?? default, "added_tokens[].id", path), "added_tokens", path));
        return tokens;
    }

    /// <summary>
    /// Reads a byte-level BPE tokenizer.json. Throws <see cref="UnsupportedTokenizerException"/> for other
    /// kinds (WordPiece, Unigram, SentencePiece-style BPE), which the caller may answer with tokenizer.model.
    /// </summary>
    public static TokenizerJson Read(string path, JsonElement root)
    {
        JsonElement model = root.Property("model") ?? throw new InvalidDataException($"'{path}' has no \"model\" object.");
        string type = model.String("type") ?? (model.Property("merges") is not null ? "BPE" : "(none)");
        if (type != "BPE")
            throw new UnsupportedTokenizerException($"'{path}': model type '{type}' is not supported (only byte-level BPE is).");

        var preTokenizerPatterns = new List<string>();
        bool byteLevel = false;
        if (root.Property("pre_tokenizer") is JsonElement preTokenizer)
            ReadPreTokenizer(path, preTokenizer, preTokenizerPatterns, ref byteLevel);
        if (!byteLevel)
            throw new UnsupportedTokenizerException(
                $"'{path}': a BPE model without a ByteLevel pre-tokenizer (SentencePiece-style, byte_fallback) is not supported from tokenizer.json; tokenizer.model is needed.");
        if (root.Property("decoder") is JsonElement decoder && decoder.String("type") != "ByteLevel")
            throw new UnsupportedTokenizerException($"'{path}': decoder '{decoder.String("type")}' is not supported with a ByteLevel pre-tokenizer (only ByteLevel is).");

        var normalizations = new List<NormalizationForm>();
        if (root.Property("normalizer") is JsonElement normalizer)
            ReadNormalizer(path, normalizer, normalizations);

        List<AddedToken> addedTokens = ReadAddedTokens(path, root);
        (List<int>? prefix, List<int>? suffix) = root.Property("post_processor") is JsonElement post
            ? ReadPostProcessor(path, post)
            : (null, null);

        JsonElement vocab = model.Property("vocab") ?? throw new InvalidDataException($"'{path}' has no \"model.vocab\".");
        var vocabulary = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (JsonProperty entry in vocab.EnumerateObject())
            vocabulary[entry.Name] = JsonFiles.Id(entry.Value, $"model.vocab[\"{entry.Name}\"]", path);

        return new TokenizerJson
        {
            Path = path,
            Vocabulary = vocabulary,
            Merges = ReadMerges(path, model),
            IgnoreMerges = model.Bool("ignore_merges") ?? false,
            UnknownToken = model.String("unk_token"),
            ContinuingSubwordPrefix = NullIfEmpty(model.String("continuing_subword_prefix")),
            EndOfWordSuffix = NullIfEmpty(model.String("end_of_word_suffix")),
            PreTokenizerPatterns = preTokenizerPatterns,
            Normalizations = normalizations,
            AddedTokens = addedTokens,
            PrefixIds = prefix,
            SuffixIds = suffix,
        };
    }

    private static string? NullIfEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    // Merges are "a b" strings in older files and [a, b] pairs in newer ones.
    private static List<string> ReadMerges(string path, JsonElement model)
    {
        var merges = new List<string>();
        if (model.Property("merges") is not { ValueKind: JsonValueKind.Array } array)
            return merges;
        foreach (JsonElement merge in array.EnumerateArray())
        {
            if (merge.ValueKind == JsonValueKind.String)
            {
                merges.Add(merge.GetString()!);
                continue;
            }
            if (merge.ValueKind != JsonValueKind.Array || merge.GetArrayLength() != 2)
                throw new InvalidDataException($"'{path}': model.merges entry {merge} is neither \"a b\" nor [\"a\", \"b\"].");
            string left = merge[0].GetString()!, right = merge[1].GetString()!;
            if (left.Contains(' ') || right.Contains(' '))
                throw new UnsupportedTokenizerException($"'{path}': merge [\"{left}\", \"{right}\"] has a space inside a token, which the BPE tokenizer cannot take.");
            merges.Add(left + " " + right);
        }
        return merges;
    }

    private static void ReadPreTokenizer(string path, JsonElement node, List<string> patterns, ref bool byteLevel)
    {
        string? type = node.String("type");
        switch (type)
        {
            case "Sequence":
                foreach (JsonElement inner in node.GetProperty("pretokenizers").EnumerateArray())
                    ReadPreTokenizer(path, inner, patterns, ref byteLevel);
                break;
            case "ByteLevel":
                byteLevel = true;
                if (node.Bool("add_prefix_space") == true)
                    throw new UnsupportedTokenizerException($"'{path}': ByteLevel pre-tokenizer with add_prefix_space is not supported.");
                if (node.Bool("use_regex") ?? true)
                    patterns.Add(Gpt2Pattern);
                break;
            case "Split":
                if (node.String("behavior") is string behavior && behavior != "Isolated")
                    throw new UnsupportedTokenizerException($"'{path}': Split pre-tokenizer behavior '{behavior}' is not supported (only Isolated is).");
                if (node.Bool("invert") == true)
                    throw new UnsupportedTokenizerException($"'{path}': inverted Split pre-tokenizer is not supported.");
                JsonElement pattern = node.GetProperty("pattern");
                patterns.Add(pattern.String("Regex") ?? System.Text.RegularExpressions.Regex.Escape(pattern.String("String") ?? ""));
                break;
            default:
                throw new UnsupportedTokenizerException($"'{path}': pre-tokenizer '{type}' is not supported.");
        }
    }

    private static void ReadNormalizer(string path, JsonElement node, List<NormalizationForm> forms)
    {
        string? type = node.String("type");
        switch (type)
        {
            case "Sequence":
                foreach (JsonElement inner in node.GetProperty("normalizers").EnumerateArray())
                    ReadNormalizer(path, inner, forms);
                break;
            case "NFC": forms.Add(NormalizationForm.FormC); break;
            case "NFD": forms.Add(NormalizationForm.FormD); break;
            case "NFKC": forms.Add(NormalizationForm.FormKC); break;
            case "NFKD": forms.Add(NormalizationForm.FormKD); break;
            default:
                throw new UnsupportedTokenizerException($"'{path}': normalizer '{type}' is not supported with byte-level BPE.");
        }
    }

    // TemplateProcessing's "single" template: special tokens around sequence A (Llama 3's BOS).
    private static (List<int>?, List<int>?) ReadPostProcessor(string path, JsonElement node)
    {
        string? type = node.String("type");
        switch (type)
        {
            case "ByteLevel":
                return (null, null);
            case "Sequence":
                (List<int>?, List<int>?) found = (null, null);
                foreach (JsonElement inner in node.GetProperty("processors").EnumerateArray())
                {
                    (List<int>? prefix, List<int>? suffix) = ReadPostProcessor(path, inner);
                    if (prefix is not null || suffix is not null)
                        found = (prefix, suffix);
                }
                return found;
            case "TemplateProcessing":
                var before = new List<int>();
                var after = new List<int>();
                bool sawSequence = false;
                JsonElement specials = node.Property("special_tokens") ?? default;
                foreach (JsonElement item in node.GetProperty("single").EnumerateArray())
                {
                    if (item.Property("Sequence") is not null)
                    {
                        sawSequence = true;
                        continue;
                    }
                    string name = item.GetProperty("SpecialToken").GetProperty("id").GetString()!;
                    if (specials.ValueKind != JsonValueKind.Object || !specials.TryGetProperty(name, out JsonElement special))
                        throw new InvalidDataException($"'{path}': post_processor template names special token '{name}' but special_tokens does not define it.");
                    (sawSequence ? after : before).AddRange(special.GetProperty("ids").EnumerateArray()
                        .Select(id => JsonFiles.Id(id, $"post_processor.special_tokens.{name}.ids", path)));
                }
                return (before, after);
            default:
                throw new UnsupportedTokenizerException($"'{path}': post-processor '{type}' is not supported.");
        }
    }
}

/// <summary>A tokenizer file this library cannot build a tokenizer from (another file of the folder may do).</summary>
internal sealed class UnsupportedTokenizerException(string message) : NotSupportedException(message);
