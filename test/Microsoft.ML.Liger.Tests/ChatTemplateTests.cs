using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.ML.Liger.Models;
using static Microsoft.ML.Liger.Tests.TokenizerFixtures;

namespace Microsoft.ML.Liger.Tests;

[TestClass]
public sealed class ChatTemplateTests
{
    public static IEnumerable<object[]> RenderedCases =>
        ChatTemplateCases.Rendered.Select(c => new object[] { c.Family, c.Case });

    [TestMethod]
    [DynamicData(nameof(RenderedCases))]
    public void Recognized_WritesWhatTheJinjaTemplateRenders(string family, string caseName)
    {
        var c = ChatTemplateCases.Rendered.Single(r => r.Family == family && r.Case == caseName);
        ChatTemplate template = ChatTemplate.Recognize(ChatTemplateCases.Templates[family], c.Bos, c.Eos);
        string expected = c.Expected.Replace("{TODAY}", DateTime.Now.ToString("dd MMM yyyy", CultureInfo.InvariantCulture));
        string actual = template.Format(c.Messages.Select(m => new ChatMessage(m.Role, m.Content)), c.AddGenerationPrompt);
        Assert.AreEqual(expected, actual, $"{family} ({template.Name}), {caseName}");
    }

    [TestMethod]
    [DataRow("llama3", "Llama 3", "<|eot_id|>")]
    [DataRow("llama31", "Llama 3.1", "<|eot_id|>")]
    [DataRow("llama32", "Llama 3.1", "<|eot_id|>")]
    [DataRow("qwen2", "ChatML", "<|im_end|>")]
    [DataRow("qwen25", "ChatML", "<|im_end|>")]
    [DataRow("qwen3", "ChatML (Qwen3)", "<|im_end|>")]
    [DataRow("gemma", "Gemma", "<end_of_turn>")]
    [DataRow("gemma3", "Gemma", "<end_of_turn>")]
    [DataRow("llama2", "Llama 2", "</s>")]
    [DataRow("mistral", "Mistral", "</s>")]
    [DataRow("mistral_v1", "Mistral v1", "</s>")]
    [DataRow("mistral_v3", "Mistral v3", "</s>")]
    [DataRow("phi3", "Phi-3", "<|end|>")]
    [DataRow("phi3_original", "Phi-3 (original)", "<|end|>")]
    public void Recognized_FamilyAndEndOfTurn(string family, string name, string endOfTurn)
    {
        ChatTemplate template = ChatTemplate.Recognize(ChatTemplateCases.Templates[family], "<s>", "</s>");
        Assert.AreEqual(name, template.Name);
        Assert.AreEqual(endOfTurn, template.EndOfTurn);
    }

    [TestMethod]
    [DataRow("gemma")]
    [DataRow("mistral")]
    public void SystemMessage_WhereTheTemplateRefusesIt_IsAnError(string family)
    {
        ChatTemplate template = ChatTemplate.Recognize(ChatTemplateCases.Templates[family], "<s>", "</s>");
        var error = Assert.ThrowsExactly<ArgumentException>(() => template.Format([ChatMessage.System("Be brief."), ChatMessage.User("Hi")]));
        StringAssert.Contains(error.Message, "system");
        Assert.AreEqual("messages", error.ParamName);
    }

    [TestMethod]
    public void TurnsThatDoNotAlternate_AreNamedByIndex()
    {
        ChatTemplate template = ChatTemplate.Recognize(ChatTemplateCases.Templates["llama2"], "<s>", "</s>");
        var error = Assert.ThrowsExactly<ArgumentException>(() =>
            template.Format([ChatMessage.System("s"), ChatMessage.User("a"), ChatMessage.User("b")]));
        StringAssert.Contains(error.Message, "message 2 is 'user'");
    }

    [TestMethod]
    public void UnknownTemplate_TellsToPassOneExplicitly()
    {
        const string granite = "{%- for message in messages %}{{- '<|start_of_role|>' + message['role'] + '<|end_of_role|>' + message['content'] + '<|end_of_text|>\\n' }}{%- endfor %}";
        var error = Assert.ThrowsExactly<NotSupportedException>(() => ChatTemplate.Recognize(granite, "", ""));
        StringAssert.Contains(error.Message, "ChatTemplate.FromRoles");
    }

    [TestMethod]
    public void FromRoles_WritesPrefixContentSuffix()
    {
        ChatTemplate template = ChatTemplate.FromRoles(new ChatTemplateOptions
        {
            Name = "granite",
            SystemPrefix = "<|start_of_role|>system<|end_of_role|>",
            SystemSuffix = "<|end_of_text|>\n",
            UserPrefix = "<|start_of_role|>user<|end_of_role|>",
            UserSuffix = "<|end_of_text|>\n",
            AssistantPrefix = "<|start_of_role|>assistant<|end_of_role|>",
            AssistantSuffix = "<|end_of_text|>\n",
        });
        Assert.AreEqual("<|end_of_text|>", template.EndOfTurn);
        Assert.AreEqual(
            "<|start_of_role|>system<|end_of_role|>S<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>U<|end_of_text|>\n"
            + "<|start_of_role|>assistant<|end_of_role|>A<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>",
            template.Format([ChatMessage.System("S"), ChatMessage.User("U"), ChatMessage.Assistant("A")]));
        var error = Assert.ThrowsExactly<ArgumentException>(() => template.Format([new ChatMessage("tool", "x")]));
        StringAssert.Contains(error.Message, "'tool'");
    }

    [TestMethod]
    public void Plain_HasNoMarkers_AndStopsAtEos()
    {
        ChatTemplate plain = ChatTemplate.Plain("</s>");
        Assert.AreEqual("S\nU\nA\n", plain.Format([ChatMessage.System("S"), ChatMessage.User("U"), ChatMessage.Assistant("A")]));
        Assert.AreEqual("</s>", plain.EndOfTurn);
    }

    private static CausalLMTokenizer LoadWithTemplate(string? template)
    {
        string folder = NewFolder();
        WriteGpt2Json(folder, new JsonOptions { AddedTokens = [(50257, "<|im_start|>", true), (50258, "<|im_end|>", true)] });
        var config = new JsonObject { ["eos_token"] = EndOfText };
        if (template is not null)
            config["chat_template"] = template;
        WriteJson(folder, "tokenizer_config.json", config);
        return CausalLMTokenizer.FromPretrained(folder);
    }

    [TestMethod]
    public void Tokenizer_EncodesTheChatWithoutAddingSpecialTokens_AndStopsAtTheEndOfTurn()
    {
        CausalLMTokenizer tokenizer = LoadWithTemplate(ChatTemplateCases.Templates["qwen25"]);
        ChatMessage[] chat = [ChatMessage.User("Hello")];
        string text = tokenizer.ApplyChatTemplate(chat);
        StringAssert.StartsWith(text, "<|im_start|>system\nYou are Qwen");
        CollectionAssert.AreEqual(tokenizer.Encode(text, addSpecialTokens: false).ToArray(), tokenizer.EncodeChat(chat).ToArray());
        CollectionAssert.AreEquivalent(new[] { EndOfTextId, 50258 }, tokenizer.GetStopTokenIds().ToArray());
    }

    [TestMethod]
    public void Tokenizer_WithAnUnknownTemplate_AsksForOne_AndTakesOne()
    {
        CausalLMTokenizer tokenizer = LoadWithTemplate("{{ messages[0]['content'] }}<|role|>");
        Assert.IsNull(tokenizer.ChatTemplate);
        var error = Assert.ThrowsExactly<NotSupportedException>(() => tokenizer.ApplyChatTemplate([ChatMessage.User("Hi")]));
        StringAssert.Contains(error.Message, "CausalLMTokenizer.ChatTemplate");
        tokenizer.ChatTemplate = ChatTemplate.FromRoles(new ChatTemplateOptions { UserPrefix = "Q: ", UserSuffix = "\n", AssistantPrefix = "A: ", AssistantSuffix = "\n" });
        Assert.AreEqual("Q: Hi\nA: ", tokenizer.ApplyChatTemplate([ChatMessage.User("Hi")]));
    }

    [TestMethod]
    public void Tokenizer_WithoutTemplate_IsPlain()
    {
        CausalLMTokenizer tokenizer = LoadWithTemplate(null);
        Assert.AreEqual("plain", tokenizer.ChatTemplate!.Name);
        Assert.AreEqual(EndOfText, tokenizer.ChatTemplate.EndOfTurn);
    }
}
