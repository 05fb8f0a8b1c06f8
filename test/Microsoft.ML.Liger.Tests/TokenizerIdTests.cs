using System.Text.Json.Nodes;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Tests.Models;

namespace Microsoft.ML.Liger.Tests;

/// <summary>Token ids a tokenizer's files give it: checked when read, naming the file and the field, never emitted out of range.</summary>
[TestClass]
public sealed class TokenizerIdTests
{
    private string _folder = "";

    [TestInitialize]
    public void CreateFolder() => _folder = LoadingFixtures.CopyInto(LoadingFixtures.BpeTokenizer, Directory.CreateTempSubdirectory("liger-tokids-").FullName);

    [TestCleanup]
    public void DeleteFolder() => Directory.Delete(_folder, recursive: true);

    private string TokenizerJson => Path.Combine(_folder, "tokenizer.json");
    private string TokenizerConfig => Path.Combine(_folder, "tokenizer_config.json");

    private void AddToTokenizerJson(long id, string content)
    {
        var root = JsonNode.Parse(File.ReadAllText(TokenizerJson))!.AsObject();
        root["added_tokens"]!.AsArray().Add(new JsonObject
        {
            ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
            ["normalized"] = false, ["special"] = true,
        });
        File.WriteAllText(TokenizerJson, root.ToJsonString());
    }

    [TestMethod]
    [DataRow(2147483647L)]
    [DataRow(100000L)]
    public void AddedTokenIdFarBeyondTheVocabulary_IsRefusedAtLoad(long id)
    {
        AddToTokenizerJson(id, "<|far|>");

        var error = Assert.ThrowsExactly<InvalidDataException>(() => CausalLMTokenizer.FromPretrained(_folder));

        StringAssert.Contains(error.Message, TokenizerJson);
        StringAssert.Contains(error.Message, "added_tokens");
        StringAssert.Contains(error.Message, id.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    [TestMethod]
    public void AddedTokenRightAfterTheVocabulary_Loads_AndEncodesToItsId()
    {
        // 400 vocabulary ids, of which 0..3 are the added specials: the next free id is 400.
        AddToTokenizerJson(400, "<|tool|>");
        var tokenizer = CausalLMTokenizer.FromPretrained(_folder);
        CollectionAssert.Contains(tokenizer.Encode("a<|tool|>b", addSpecialTokens: false).ToList(), 400);
        Assert.AreEqual(401, tokenizer.VocabularySize);
    }

    [TestMethod]
    [DataRow("-1")]
    [DataRow("1.5")]
    [DataRow("\"3\"")]
    [DataRow("1e12")]
    public void AddedTokenIdThatIsNotAnId_IsRefused_NamingTheFile(string rawId)
    {
        var root = JsonNode.Parse(File.ReadAllText(TokenizerJson))!.AsObject();
        root["added_tokens"]![0]!["id"] = JsonNode.Parse(rawId);
        File.WriteAllText(TokenizerJson, root.ToJsonString());

        var error = Assert.ThrowsExactly<InvalidDataException>(() => CausalLMTokenizer.FromPretrained(_folder));

        StringAssert.Contains(error.Message, TokenizerJson);
        StringAssert.Contains(error.Message, "added_tokens");
    }

    [TestMethod]
    public void NegativeIdInAddedTokensDecoder_IsRefused()
    {
        LoadingFixtures.SetRaw(TokenizerConfig, "added_tokens_decoder",
            "{\"-3\": {\"content\": \"<|neg|>\", \"special\": true, \"lstrip\": false, \"rstrip\": false}}");

        var error = Assert.ThrowsExactly<InvalidDataException>(() => CausalLMTokenizer.FromPretrained(_folder));

        StringAssert.Contains(error.Message, TokenizerConfig);
        StringAssert.Contains(error.Message, "added_tokens_decoder");
    }

    [TestMethod]
    [DataRow("generation_config.json", "eos_token_id", "2.5")]
    [DataRow("generation_config.json", "eos_token_id", "[1, -4]")]
    [DataRow("config.json", "pad_token_id", "3000000000")]
    [DataRow("config.json", "bos_token_id", "\"<s>\"")]
    public void MalformedIdInAConfigFile_IsRefused_NamingFileAndField(string file, string field, string rawJson)
    {
        File.WriteAllText(Path.Combine(_folder, file), "{}");
        LoadingFixtures.SetRaw(Path.Combine(_folder, file), field, rawJson);

        var error = Assert.ThrowsExactly<InvalidDataException>(() => CausalLMTokenizer.FromPretrained(_folder));

        StringAssert.Contains(error.Message, Path.Combine(_folder, file));
        StringAssert.Contains(error.Message, $"'{field}'");
    }

    [TestMethod]
    [DataRow("add_bos_token", "\"yes\"", "true or false")]
    [DataRow("legacy", "1", "true or false")]
    [DataRow("bos_token", "5", "must be a token")]
    [DataRow("eos_token", "{\"text\": \"</s>\"}", "must be a token")]
    [DataRow("chat_template", "5", "chat_template")]
    [DataRow("added_tokens_decoder", "{\"401\": {\"special\": true}}", "content")]
    [DataRow("added_tokens_decoder", "{\"401\": {\"content\": \"<x>\", \"special\": \"no\"}}", "true or false")]
    public void WronglyTypedTokenizerConfigField_IsRefused_NamingIt(string field, string rawJson, string reason)
    {
        LoadingFixtures.SetRaw(TokenizerConfig, field, rawJson);

        var error = Assert.ThrowsExactly<InvalidDataException>(() => CausalLMTokenizer.FromPretrained(_folder));

        StringAssert.Contains(error.Message, TokenizerConfig);
        StringAssert.Contains(error.Message, reason);
    }

    [TestMethod]
    [DataRow("eos_token")]
    [DataRow("bos_token")]
    [DataRow("pad_token")]
    public void NamedSpecialTokenThatIsNoToken_IsRefused(string field)
    {
        // Encoded as plain text it would never end generation (eos) or would pad with several ids.
        LoadingFixtures.SetField(TokenizerConfig, field, "<|not_a_token|>");

        var error = Assert.ThrowsExactly<InvalidDataException>(() => CausalLMTokenizer.FromPretrained(_folder));

        StringAssert.Contains(error.Message, field);
        StringAssert.Contains(error.Message, "<|not_a_token|>");
        StringAssert.Contains(error.Message, _folder);
    }

    [TestMethod]
    public void PostProcessorIdOutsideTheTokenizer_IsRefused()
    {
        var root = JsonNode.Parse(File.ReadAllText(TokenizerJson))!.AsObject();
        root["post_processor"]!["processors"]![1]!["special_tokens"]!["<|begin_of_text|>"]!["ids"] = new JsonArray(5000);
        File.WriteAllText(TokenizerJson, root.ToJsonString());

        var error = Assert.ThrowsExactly<InvalidDataException>(() => CausalLMTokenizer.FromPretrained(_folder));

        StringAssert.Contains(error.Message, _folder);
        StringAssert.Contains(error.Message, "5000");
    }

    [TestMethod]
    public void TokenizerLargerThanTheModelsVocabulary_IsRefusedWhenLoadedTogether()
    {
        // The tiny llama has vocab_size 200; the BPE fixture has 400 ids.
        LoadingFixtures.CopyInto(LoadingFixtures.TinyModel(), _folder);
        File.WriteAllText(Path.Combine(_folder, "liger_model.json"), "{\"FormatVersion\": 1}");
        var ml = new MLContext(seed: 1);

        var error = Assert.ThrowsExactly<InvalidDataException>(() => ml.Liger().LoadCausalLM(_folder));

        StringAssert.Contains(error.Message, "vocab_size");
        StringAssert.Contains(error.Message, "400");
        StringAssert.Contains(error.Message, "200");
    }
}
