using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Tokenizers;
using static Microsoft.ML.Liger.Tests.TokenizerFixtures;

namespace Microsoft.ML.Liger.Tests;

[TestClass]
public sealed class TokenizerTests
{
    // Text that exercises the split regexes: contractions, digits, runs of spaces, newlines, tabs, accents,
    // CJK, Greek, Cyrillic, emoji (surrogate pairs) and punctuation.
    private static readonly string[] FixedTexts =
    [
        "Hello world",
        "  leading spaces and trailing   ",
        "line one\nline two\n\n\tTabbed\r\nWindows line",
        "Numbers 1234567 and 3.14159, 2024-05-06",
        "It's we'll they've I'M YOU'RE she'd",
        "café naïve résumé Ελληνικά русский 日本語のテキスト 한국어",
        "emoji 🤖🎉 mixed👍🏽text",
        "!!!???... --- ***",
        "   ",
        "a",
        "tab\t\tand  double  spaces\n\n\n",
    ];

    private static readonly string[] Fragments =
    [
        "the", " quick", "Brown", " fox", "'s", "'ll", "n't", " ", "  ", "\n", "\t", "\r\n", "123", "4567890", "3.5",
        "é", "ñ", "ü", "ß", "日本", "語", "한", "Ω", "мир", "🤖", "🎉", "👍🏽", ",", ".", "!", "?", "(", ")", "\"", "--",
        "<", ">", "|", "_", "#", "@", "Ab", "CAPS", "x",
    ];

    private static List<string> VariedTexts(int seed, int count = 40)
    {
        var random = new Random(seed);
        var texts = new List<string>(FixedTexts);
        for (int i = 0; i < count; i++)
        {
            var text = new StringBuilder();
            int pieces = random.Next(1, 25);
            for (int p = 0; p < pieces; p++)
                text.Append(Fragments[random.Next(Fragments.Length)]);
            texts.Add(text.ToString());
        }
        return texts;
    }

    private static readonly Lazy<TiktokenTokenizer> LibraryGpt2 = new(() => TiktokenTokenizer.CreateForModel("gpt2"));

    private static CausalLMTokenizer Load(JsonOptions options, Action<string>? addFiles = null)
    {
        string folder = NewFolder();
        WriteGpt2Json(folder, options);
        addFiles?.Invoke(folder);
        return CausalLMTokenizer.FromPretrained(folder);
    }

    private static void AssertSameIds(IReadOnlyList<int> expected, IReadOnlyList<int> actual, string text, int seed) =>
        CollectionAssert.AreEqual(expected.ToArray(), actual.ToArray(),
            $"ids differ for {JsonValue.Create(text).ToJsonString()} (seed {seed}): expected [{string.Join(",", expected)}], got [{string.Join(",", actual)}]");

    [TestMethod]
    public void Gpt2StyleJson_UsesBpeMerges_AndMatchesTheLibraryGpt2Tokenizer()
    {
        CausalLMTokenizer tokenizer = Load(new JsonOptions());
        Assert.IsInstanceOfType<BpeTokenizer>(tokenizer.Inner);
        int seed = Environment.TickCount;
        foreach (string text in VariedTexts(seed))
            AssertSameIds(LibraryGpt2.Value.EncodeToIds(text), tokenizer.Encode(text, addSpecialTokens: false), text, seed);
    }

    [TestMethod]
    public void IgnoreMergesJsonWithPairMerges_UsesTiktoken_AndMatchesTheLibraryGpt2Tokenizer()
    {
        CausalLMTokenizer tokenizer = Load(new JsonOptions { IgnoreMerges = true, MergesAsPairs = true, SplitPattern = Gpt2Pattern });
        Assert.IsInstanceOfType<TiktokenTokenizer>(tokenizer.Inner);
        int seed = Environment.TickCount;
        foreach (string text in VariedTexts(seed))
            AssertSameIds(LibraryGpt2.Value.EncodeToIds(text), tokenizer.Encode(text, addSpecialTokens: false), text, seed);
    }

    [TestMethod]
    public void Llama3SplitRegex_IsTheOneApplied()
    {
        CausalLMTokenizer tokenizer = Load(new JsonOptions { IgnoreMerges = true, SplitPattern = Llama3Pattern });
        using Stream ranks = Gpt2RanksStream();
        TiktokenTokenizer reference = TiktokenTokenizer.Create(ranks, new RegexPreTokenizer(new Regex(Llama3Pattern), null), normalizer: null);
        int seed = Environment.TickCount;
        foreach (string text in VariedTexts(seed).Append("HE'S 1234567 digits\n\n  x"))
            AssertSameIds(reference.EncodeToIds(text), tokenizer.Encode(text, addSpecialTokens: false), text, seed);

        // Llama 3 cuts digits in threes where GPT-2 keeps the run whole: the two must differ here.
        CollectionAssert.AreNotEqual(
            LibraryGpt2.Value.EncodeToIds("1234567").ToArray(), tokenizer.Encode("1234567", addSpecialTokens: false).ToArray());
    }

    [TestMethod]
    public void EncodeThenDecode_GivesTheTextBack_OnBothByteLevelPaths()
    {
        int seed = Environment.TickCount;
        foreach (CausalLMTokenizer tokenizer in new[] { Load(new JsonOptions()), Load(new JsonOptions { IgnoreMerges = true, SplitPattern = Llama3Pattern }) })
            foreach (string text in VariedTexts(seed))
                Assert.AreEqual(text, tokenizer.Decode(tokenizer.Encode(text)), $"{tokenizer.Inner.GetType().Name}, seed {seed}");
    }

    [TestMethod]
    public void AddedTokensInText_AreMatchedWhole_AndDecodeDropsOnlySpecialOnes()
    {
        CausalLMTokenizer tokenizer = Load(new JsonOptions
        {
            AddedTokens = [(50257, "<|im_start|>", true), (50258, "<|im_end|>", true), (50259, "<tool>", false)],
        });
        Assert.AreEqual(50260, tokenizer.VocabularySize);
        const string text = "Hi<|im_start|>user\nhello <|im_end|><tool>x<|endoftext|>";
        var expected = new List<int>();
        expected.AddRange(LibraryGpt2.Value.EncodeToIds("Hi"));
        expected.Add(50257);
        expected.AddRange(LibraryGpt2.Value.EncodeToIds("user\nhello "));
        expected.AddRange([50258, 50259]);
        expected.AddRange(LibraryGpt2.Value.EncodeToIds("x"));
        expected.Add(EndOfTextId);
        IReadOnlyList<int> ids = tokenizer.Encode(text);
        AssertSameIds(expected, ids, text, 0);
        Assert.AreEqual(text, tokenizer.Decode(ids, skipSpecialTokens: false));
        Assert.AreEqual("Hiuser\nhello <tool>x", tokenizer.Decode(ids));
    }

    [TestMethod]
    public void OverlappingAddedTokens_TheLongestWins()
    {
        CausalLMTokenizer tokenizer = Load(new JsonOptions { AddedTokens = [(50257, "<a>", true), (50258, "<a><b>", true)] });
        CollectionAssert.AreEqual(new[] { 50258, 50257 }, tokenizer.Encode("<a><b><a>").ToArray());
    }

    [TestMethod]
    public void Bos_ComesFromThePostProcessor_UnlessTokenizerConfigSaysOtherwise()
    {
        const string text = "Hello there";
        int[] plain = LibraryGpt2.Value.EncodeToIds(text).ToArray();

        CausalLMTokenizer fromTemplate = Load(new JsonOptions { TemplateBos = EndOfText });
        CollectionAssert.AreEqual(new[] { EndOfTextId }.Concat(plain).ToArray(), fromTemplate.Encode(text).ToArray());
        CollectionAssert.AreEqual(plain, fromTemplate.Encode(text, addSpecialTokens: false).ToArray());
        Assert.AreEqual(EndOfTextId, fromTemplate.BosTokenId);

        CausalLMTokenizer noBos = Load(new JsonOptions { TemplateBos = EndOfText },
            folder => WriteJson(folder, "tokenizer_config.json", new JsonObject { ["bos_token"] = EndOfText, ["add_bos_token"] = false }));
        CollectionAssert.AreEqual(plain, noBos.Encode(text).ToArray());

        CausalLMTokenizer bosAndEos = Load(new JsonOptions(), folder => WriteJson(folder, "tokenizer_config.json", new JsonObject
        {
            ["bos_token"] = EndOfText, ["eos_token"] = EndOfText, ["add_bos_token"] = true, ["add_eos_token"] = true,
        }));
        CollectionAssert.AreEqual(new[] { EndOfTextId }.Concat(plain).Append(EndOfTextId).ToArray(), bosAndEos.Encode(text).ToArray());
    }

    [TestMethod]
    public void SpecialTokenIds_ComeFromTheThreeConfigs()
    {
        CausalLMTokenizer tokenizer = Load(new JsonOptions { AddedTokens = [(50257, "<pad>", true), (50258, "<|eot|>", true)] }, folder =>
        {
            WriteJson(folder, "tokenizer_config.json", new JsonObject
            {
                ["bos_token"] = EndOfText,
                ["eos_token"] = new JsonObject { ["content"] = "<|eot|>", ["special"] = true },
                ["pad_token"] = "<pad>",
            });
            WriteJson(folder, "generation_config.json", new JsonObject { ["eos_token_id"] = new JsonArray(50258, 11) });
            WriteJson(folder, "config.json", new JsonObject { ["eos_token_id"] = 13, ["pad_token_id"] = 7 });
        });
        Assert.AreEqual(EndOfTextId, tokenizer.BosTokenId);
        Assert.AreEqual(50257, tokenizer.PadTokenId);
        Assert.AreEqual("<|eot|>", tokenizer.EosToken);
        CollectionAssert.AreEquivalent(new[] { 50258, 11, 13 }, tokenizer.EosTokenIds.ToArray());
    }

    [TestMethod]
    public void NfcNormalizer_IsApplied()
    {
        CausalLMTokenizer tokenizer = Load(new JsonOptions { Normalizer = "NFC", IgnoreMerges = true, SplitPattern = Llama3Pattern });
        CausalLMTokenizer unnormalized = Load(new JsonOptions { IgnoreMerges = true, SplitPattern = Llama3Pattern });
        const string decomposed = "cafe\u0301 nai\u0308ve";
        CollectionAssert.AreEqual(unnormalized.Encode("caf\u00e9 na\u00efve").ToArray(), tokenizer.Encode(decomposed).ToArray());
        CollectionAssert.AreNotEqual(unnormalized.Encode(decomposed).ToArray(), tokenizer.Encode(decomposed).ToArray());
    }

    [TestMethod]
    public void CleanUpTokenizationSpaces_FollowsTheConfig()
    {
        const string text = "Hello , world . Is n't it ? I 'm here !";
        CausalLMTokenizer raw = Load(new JsonOptions());
        CausalLMTokenizer cleaned = Load(new JsonOptions(), folder =>
            WriteJson(folder, "tokenizer_config.json", new JsonObject { ["clean_up_tokenization_spaces"] = true }));
        Assert.AreEqual(text, raw.Decode(raw.Encode(text)));
        Assert.AreEqual("Hello, world. Isn't it? I'm here!", cleaned.Decode(cleaned.Encode(text)));
    }

    [TestMethod]
    public void Gpt2_FromTheDataPackage_MatchesTheLibraryAndUsesEndOfText()
    {
        CausalLMTokenizer gpt2 = CausalLMTokenizer.Gpt2();
        Assert.AreEqual(50257, gpt2.VocabularySize);
        Assert.AreEqual(EndOfTextId, gpt2.BosTokenId);
        Assert.AreEqual(EndOfTextId, gpt2.PadTokenId);
        CollectionAssert.AreEqual(new[] { EndOfTextId }, gpt2.EosTokenIds.ToArray());
        int seed = Environment.TickCount;
        foreach (string text in VariedTexts(seed))
        {
            AssertSameIds(LibraryGpt2.Value.EncodeToIds(text), gpt2.Encode(text), text, seed);
            Assert.AreEqual(text, gpt2.Decode(gpt2.Encode(text)), $"seed {seed}");
        }
        CollectionAssert.AreEqual(LibraryGpt2.Value.EncodeToIds("a").Append(EndOfTextId).ToArray(), gpt2.Encode("a<|endoftext|>").ToArray());
    }

    // A tiny SentencePiece BPE model whose ids can be worked out by hand: SentencePiece merges the adjacent
    // pair with the highest score first, and spells unknown characters as UTF-8 byte pieces (<0xC3> is id 3+0xC3).
    private static readonly (string, float)[] TinyPieces =
    [
        ("▁", 0), ("a", 0), ("b", 0), ("c", 0), ("h", 0), ("i", 0),   // 259..264
        ("▁a", -1), ("ab", -2), ("▁ab", -3), ("hi", -4), ("▁hi", -5), // 265..269
    ];

    private static CausalLMTokenizer LoadSentencePiece(JsonObject? config = null)
    {
        string folder = NewFolder();
        File.WriteAllBytes(Path.Combine(folder, "tokenizer.model"), SentencePieceModel(TinyPieces));
        if (config is not null)
            WriteJson(folder, "tokenizer_config.json", config);
        return CausalLMTokenizer.FromPretrained(folder);
    }

    [TestMethod]
    public void SentencePiece_MergesByScore_FallsBackToBytes_AndAddsBos()
    {
        CausalLMTokenizer tokenizer = LoadSentencePiece();
        Assert.IsInstanceOfType<SentencePieceTokenizer>(tokenizer.Inner);
        // "▁ab▁hi": ▁+a (-1), then ▁a+b (-3) before h+i (-4), then ▁+hi (-5).
        CollectionAssert.AreEqual(new[] { 1, 267, 269 }, tokenizer.Encode("ab hi").ToArray());
        CollectionAssert.AreEqual(new[] { 267, 269 }, tokenizer.Encode("ab hi", addSpecialTokens: false).ToArray());
        // "▁cab": only a+b merges; "é" is not a piece: bytes C3 A9.
        CollectionAssert.AreEqual(new[] { 259, 262, 266 }, tokenizer.Encode("cab", addSpecialTokens: false).ToArray());
        CollectionAssert.AreEqual(new[] { 259, 3 + 0xC3, 3 + 0xA9 }, tokenizer.Encode("é", addSpecialTokens: false).ToArray());
        Assert.AreEqual(1, tokenizer.BosTokenId);
        CollectionAssert.AreEqual(new[] { 2 }, tokenizer.EosTokenIds.ToArray());
        Assert.AreEqual(270, tokenizer.VocabularySize);
        foreach (string text in new[] { "ab hi", "cab é", "hi  ab", "日本 ab" })
            Assert.AreEqual(text, tokenizer.Decode(tokenizer.Encode(text)));
    }

    [TestMethod]
    public void SentencePiece_PiecesAfterAnAddedToken_GetThePrefixOnlyInLegacyMode()
    {
        // Legacy (transformers' default): every piece between added tokens is its own text, with a "▁" prefix.
        CausalLMTokenizer legacy = LoadSentencePiece();
        CollectionAssert.AreEqual(new[] { 267, 2, 269 }, legacy.Encode("ab</s>hi", addSpecialTokens: false).ToArray());
        Assert.AreEqual("ab hi", legacy.Decode(legacy.Encode("ab</s>hi")));
        Assert.AreEqual("<s> ab</s> hi", legacy.Decode(legacy.Encode("ab</s>hi"), skipSpecialTokens: false));

        // Like transformers' Metaspace, no "▁" is put before text that already starts with a space.
        CollectionAssert.AreEqual(new[] { 267 }, legacy.Encode(" ab", addSpecialTokens: false).ToArray());

        CausalLMTokenizer current = LoadSentencePiece(new JsonObject { ["legacy"] = false });
        CollectionAssert.AreEqual(new[] { 267, 2, 268 }, current.Encode("ab</s>hi", addSpecialTokens: false).ToArray());
    }

    [TestMethod]
    public void SentencePiece_AddBosFalseInConfig_AddsNone()
    {
        CausalLMTokenizer tokenizer = LoadSentencePiece(new JsonObject { ["add_bos_token"] = false, ["add_eos_token"] = true });
        CollectionAssert.AreEqual(new[] { 267, 2 }, tokenizer.Encode("ab").ToArray());
    }

    [TestMethod]
    public void MissingFolder_IsNamed()
    {
        string folder = Path.Combine(NewFolder(), "absent");
        var error = Assert.ThrowsExactly<DirectoryNotFoundException>(() => CausalLMTokenizer.FromPretrained(folder));
        StringAssert.Contains(error.Message, folder);
    }

    [TestMethod]
    public void FolderWithoutTokenizerFiles_NamesTheFolderAndTheFilesLookedFor()
    {
        string folder = NewFolder();
        var error = Assert.ThrowsExactly<FileNotFoundException>(() => CausalLMTokenizer.FromPretrained(folder));
        StringAssert.Contains(error.Message, folder);
        StringAssert.Contains(error.Message, "tokenizer.json");
        StringAssert.Contains(error.Message, "tokenizer.model");
    }

    [TestMethod]
    [DataRow("WordPiece")]
    [DataRow("Unigram")]
    public void UnsupportedModelType_IsNamed(string type)
    {
        string folder = NewFolder();
        WriteJson(folder, "tokenizer.json", new JsonObject { ["model"] = new JsonObject { ["type"] = type, ["vocab"] = new JsonObject() } });
        var error = Assert.ThrowsExactly<NotSupportedException>(() => CausalLMTokenizer.FromPretrained(folder));
        StringAssert.Contains(error.Message, $"'{type}'");
        StringAssert.Contains(error.Message, "tokenizer.json");
    }

    [TestMethod]
    public void UnsupportedTokenizerJson_FallsBackToTokenizerModel()
    {
        string folder = NewFolder();
        WriteJson(folder, "tokenizer.json", new JsonObject
        {
            ["added_tokens"] = new JsonArray(new JsonObject { ["id"] = 270, ["content"] = "<extra>", ["special"] = true }),
            ["model"] = new JsonObject { ["type"] = "Unigram", ["vocab"] = new JsonArray() },
        });
        File.WriteAllBytes(Path.Combine(folder, "tokenizer.model"), SentencePieceModel(TinyPieces));
        CausalLMTokenizer tokenizer = CausalLMTokenizer.FromPretrained(folder);
        Assert.IsInstanceOfType<SentencePieceTokenizer>(tokenizer.Inner);
        CollectionAssert.AreEqual(new[] { 1, 267, 270 }, tokenizer.Encode("ab<extra>").ToArray());
        Assert.AreEqual("ab<extra>", tokenizer.Decode(tokenizer.Encode("ab<extra>"), skipSpecialTokens: false)[4..]);
    }

    [TestMethod]
    [DataRow("tokenizer.json")]
    [DataRow("tokenizer_config.json")]
    [DataRow("generation_config.json")]
    public void MalformedJson_NamesTheFile(string file)
    {
        string folder = NewFolder();
        WriteGpt2Json(folder, new JsonOptions());
        File.WriteAllText(Path.Combine(folder, file), "{ \"model\": { \"type\": \"BPE\", ");
        var error = Assert.ThrowsExactly<InvalidDataException>(() => CausalLMTokenizer.FromPretrained(folder));
        StringAssert.Contains(error.Message, Path.Combine(folder, file));
    }

    [TestMethod]
    public void MalformedTokenizerModel_NamesTheFile()
    {
        string folder = NewFolder();
        File.WriteAllBytes(Path.Combine(folder, "tokenizer.model"), [0xFF, 0xFF, 0xFF, 0x01, 0x02]);
        var error = Assert.ThrowsExactly<InvalidDataException>(() => CausalLMTokenizer.FromPretrained(folder));
        StringAssert.Contains(error.Message, Path.Combine(folder, "tokenizer.model"));
    }
}
