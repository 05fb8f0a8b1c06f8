using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Microsoft.ML.Liger.Models;

/// <summary>
/// A chat format: how a conversation is written as text for a model, and where an assistant turn ends.
/// Full Jinja is out of scope: <see cref="Recognize"/> knows the template families of the supported models by
/// their role markers and writes what those templates write for system/user/assistant conversations;
/// <see cref="FromRoles"/> builds any other format from role prefixes and suffixes.
/// </summary>
public sealed class ChatTemplate
{
    private readonly ChatTemplateOptions _options;

    /// <summary>A copy of the markers this format writes (saved with a fine-tuned model).</summary>
    internal ChatTemplateOptions Options => _options.Clone();

    private ChatTemplate(ChatTemplateOptions options)
    {
        _options = options.Clone();
        Name = options.Name;
        GenerationPrompt = options.GenerationPrompt ?? options.AssistantPrefix;
        EndOfTurn = options.EndOfTurn ?? options.AssistantSuffix.Trim();
    }

    /// <summary>The format's name (the recognised family, or the name given in the options).</summary>
    public string Name { get; }

    /// <summary>What opens the assistant's turn for generation.</summary>
    public string GenerationPrompt { get; }

    /// <summary>The text that ends an assistant turn (&lt;|eot_id|&gt;, &lt;|im_end|&gt;, &lt;end_of_turn&gt;, EOS): a stop string for generation.</summary>
    public string EndOfTurn { get; }

    /// <summary>A format built from role markers.</summary>
    public static ChatTemplate FromRoles(ChatTemplateOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new ChatTemplate(options);
    }

    /// <summary>The format for models without a chat template: contents one per line, no markers, turns end at EOS.</summary>
    public static ChatTemplate Plain(string? eosToken = null) => new(new ChatTemplateOptions
    {
        Name = "plain",
        SystemSuffix = "\n",
        UserSuffix = "\n",
        AssistantSuffix = "\n",
        OtherRolePrefix = "",
        OtherRoleSuffix = "\n",
        GenerationPrompt = "",
        EndOfTurn = eosToken ?? "",
    });

    /// <summary>
    /// The family of a Hugging Face chat template, recognised by its markers: Llama 3 (and 3.1+ with its
    /// knowledge-cutoff system block), ChatML (Qwen2, Qwen2.5 with its default system message, Qwen3 with its
    /// thinking block), Gemma (1, 2, 3), Llama 2 and Mistral [INST] (v1, v3, v3-tekken, v7), Phi-3.
    /// </summary>
    /// <param name="template">The Jinja template text (tokenizer_config.json's chat_template).</param>
    /// <param name="bosToken">The BOS token text the template writes as bos_token.</param>
    /// <param name="eosToken">The EOS token text the template writes as eos_token.</param>
    /// <exception cref="NotSupportedException">The template is not one of those families.</exception>
    public static ChatTemplate Recognize(string template, string? bosToken, string? eosToken)
    {
        ArgumentNullException.ThrowIfNull(template);
        string bos = bosToken ?? "", eos = eosToken ?? "";
        ChatTemplateOptions? options =
            Has(template, "<|start_header_id|>", "<|eot_id|>") ? Llama3(template, bos)
            : Has(template, "<|im_start|>", "<|im_end|>") && !template.Contains("<|im_sep|>") ? ChatML(template, bos)
            : Has(template, "<start_of_turn>", "<end_of_turn>") ? Gemma(template, bos)
            : Has(template, "[INST]", "[/INST]") ? Instruct(template, bos, eos)
            : Has(template, "<|end|>") && (Has(template, "<|user|>", "<|assistant|>") || Has(template, PhiRoleMarker)) ? Phi3(template, bos, eos)
            : null;
        return options is null
            ? throw new NotSupportedException(
                "The chat template is not one of the recognised families (Llama 3, ChatML/Qwen, Gemma, Llama 2/Mistral [INST], Phi-3), "
                + "and full Jinja is not supported. Pass the format explicitly: ChatTemplate.FromRoles(new ChatTemplateOptions { UserPrefix = ..., ... }).")
            : new ChatTemplate(options);
    }

    /// <summary>Writes a conversation in this format.</summary>
    /// <param name="messages">The conversation, an optional system message first.</param>
    /// <param name="addGenerationPrompt">Whether to end with <see cref="GenerationPrompt"/> so the model writes the assistant's turn.</param>
    public string Format(IEnumerable<ChatMessage> messages, bool addGenerationPrompt = true)
    {
        ArgumentNullException.ThrowIfNull(messages);
        List<ChatMessage> all = messages.ToList();
        if (all.Count == 0)
            throw new ArgumentException("A conversation needs at least one message.", nameof(messages));
        for (int i = 0; i < all.Count; i++)
            if (all[i] is null || all[i].Role is null || all[i].Content is null)
                throw new ArgumentException($"Message {i} is null or has a null role or content.", nameof(messages));

        ChatTemplateOptions o = _options;
        int first = all[0].Role == "system" ? 1 : 0;
        string? system = first == 1 ? all[0].Content : o.DefaultSystemMessage;
        List<ChatMessage> turns = all.GetRange(first, all.Count - first);
        if (o.RequireAlternation)
            CheckAlternation(turns, first);

        var text = new StringBuilder(o.Begin);
        string? merged = null;
        int mergeInto = -1;
        if (system is not null)
        {
            string content = (o.SystemPreambleFactory?.Invoke() ?? o.SystemPreamble) + (o.TrimSystem ? system.Trim() : system);
            switch (o.SystemPlacement)
            {
                case SystemMessagePlacement.OwnTurn:
                    if (!(o.SkipEmptySystemMessage && system.Length == 0))
                        text.Append(o.SystemPrefix).Append(content).Append(o.SystemSuffix);
                    break;
                case SystemMessagePlacement.FirstUserTurn:
                    merged = content;
                    mergeInto = 0;
                    break;
                case SystemMessagePlacement.LastUserTurn:
                    merged = content;
                    mergeInto = turns.Count - 1;
                    break;
                case SystemMessagePlacement.NotSupported when first == 1:
                    throw new ArgumentException($"The {Name} chat template does not support a system message.", nameof(messages));
            }
        }

        int lastUser = all.FindLastIndex(m => m.Role == "user");
        for (int i = 0; i < turns.Count; i++)
        {
            ChatMessage message = turns[i];
            string content = message.Content;
            switch (message.Role)
            {
                case "user":
                    if (merged is not null && i == mergeInto)
                        content = o.TrimMergedUserTurn
                            ? (o.SystemMergePrefix + merged + o.SystemMergeSuffix + content).Trim()
                            : o.SystemMergePrefix + merged + o.SystemMergeSuffix + (o.TrimUser ? content.Trim() : content);
                    else if (o.TrimUser)
                        content = content.Trim();
                    text.Append(o.UserPrefix).Append(content).Append(o.UserSuffix);
                    break;
                case "assistant":
                    if (o.AssistantContent is not null)
                        content = o.AssistantContent(content, first + i > lastUser, first + i == all.Count - 1);
                    text.Append(o.AssistantPrefix).Append(o.TrimAssistant ? content.Trim() : content).Append(o.AssistantSuffix);
                    break;
                case "system" when o.SystemPlacement == SystemMessagePlacement.OwnTurn:
                    text.Append(o.SystemPrefix).Append(o.TrimSystem ? content.Trim() : content).Append(o.SystemSuffix);
                    break;
                default:
                    if (o.OtherRolePrefix is null)
                        throw new ArgumentException($"The {Name} chat template has no '{message.Role}' role (message {first + i}).", nameof(messages));
                    text.Append(o.OtherRolePrefix.Replace("{role}", message.Role))
                        .Append(o.TrimUser ? content.Trim() : content)
                        .Append(o.OtherRoleSuffix.Replace("{role}", message.Role));
                    break;
            }
        }

        text.Append(addGenerationPrompt ? GenerationPrompt : o.EndWithoutGenerationPrompt);
        return text.ToString();
    }

    private void CheckAlternation(List<ChatMessage> turns, int offset)
    {
        for (int i = 0; i < turns.Count; i++)
        {
            string expected = i % 2 == 0 ? "user" : "assistant";
            if (turns[i].Role != expected)
                throw new ArgumentException(
                    $"The {Name} chat template needs user/assistant/user/... turns after the optional system message; message {offset + i} is '{turns[i].Role}', expected '{expected}'.",
                    "messages");
        }
    }

    private static bool Has(string template, params string[] markers) => markers.All(m => template.Contains(m, StringComparison.Ordinal));

    private static ChatTemplateOptions Llama3(string template, string bos)
    {
        var options = new ChatTemplateOptions
        {
            Name = "Llama 3",
            Begin = bos,
            SystemPrefix = "<|start_header_id|>system<|end_header_id|>\n\n",
            SystemSuffix = "<|eot_id|>",
            UserPrefix = "<|start_header_id|>user<|end_header_id|>\n\n",
            UserSuffix = "<|eot_id|>",
            AssistantPrefix = "<|start_header_id|>assistant<|end_header_id|>\n\n",
            AssistantSuffix = "<|eot_id|>",
            OtherRolePrefix = "<|start_header_id|>{role}<|end_header_id|>\n\n",
            OtherRoleSuffix = "<|eot_id|>",
            TrimSystem = true,
            TrimUser = true,
            TrimAssistant = true,
        };
        if (!template.Contains("Cutting Knowledge Date", StringComparison.Ordinal))
            return options;

        // Llama 3.1 and later always open with a system turn holding the knowledge cutoff and a date: a fixed
        // one (3.1, 3.3) or today's (3.2, through transformers' strftime_now).
        options.Name = "Llama 3.1";
        options.DefaultSystemMessage = "";
        const string cutoff = "Cutting Knowledge Date: December 2023\nToday Date: ";
        if (template.Contains("strftime_now", StringComparison.Ordinal))
            options.SystemPreambleFactory = () => cutoff + DateTime.Now.ToString("dd MMM yyyy", CultureInfo.InvariantCulture) + "\n\n";
        else
        {
            Match date = Regex.Match(template, "date_string\\s*=\\s*\"([^\"]+)\"");
            options.SystemPreamble = cutoff + (date.Success ? date.Groups[1].Value : "26 Jul 2024") + "\n\n";
        }
        return options;
    }

    private static ChatTemplateOptions ChatML(string template, string bos)
    {
        var options = new ChatTemplateOptions
        {
            Name = "ChatML",
            Begin = template.Contains("bos_token", StringComparison.Ordinal) ? bos : "",
            SystemPrefix = "<|im_start|>system\n",
            SystemSuffix = "<|im_end|>\n",
            UserPrefix = "<|im_start|>user\n",
            UserSuffix = "<|im_end|>\n",
            AssistantPrefix = "<|im_start|>assistant\n",
            AssistantSuffix = "<|im_end|>\n",
            OtherRolePrefix = "<|im_start|>{role}\n",
            OtherRoleSuffix = "<|im_end|>\n",
        };

        // Qwen2 and Qwen2.5 write a system turn of their own when the conversation has none: a literal
        // '<|im_start|>system\n...<|im_end|>' in the template (the \n as written in a Jinja string or a newline).
        Match defaultSystem = Regex.Match(template, @"'<\|im_start\|>system(?:\\n|\n)([^'""{}+]*?)<\|im_end\|>");
        if (defaultSystem.Success)
            options.DefaultSystemMessage = defaultSystem.Groups[1].Value.Replace("\\n", "\n");

        if (template.Contains("</think>", StringComparison.Ordinal) && template.Contains("last_query_index", StringComparison.Ordinal))
        {
            options.Name = "ChatML (Qwen3)";
            options.AssistantContent = Qwen3AssistantContent;
        }
        return options;
    }

    // Qwen3: reasoning is split out of the content, and the assistant turns after the last user message carry a
    // <think> block (empty when there was no reasoning) when they are the last message or have reasoning.
    private static string Qwen3AssistantContent(string content, bool afterLastUser, bool isLast)
    {
        string reasoning = "";
        int close = content.IndexOf("</think>", StringComparison.Ordinal);
        if (close >= 0)
        {
            string before = content[..close].TrimEnd('\n');
            int open = before.LastIndexOf("<think>", StringComparison.Ordinal);
            reasoning = (open >= 0 ? before[(open + "<think>".Length)..] : before).TrimStart('\n');
            content = content[(content.LastIndexOf("</think>", StringComparison.Ordinal) + "</think>".Length)..].TrimStart('\n');
        }
        return afterLastUser && (isLast || reasoning.Length > 0)
            ? "<think>\n" + reasoning.Trim('\n') + "\n</think>\n\n" + content.TrimStart('\n')
            : content;
    }

    private static ChatTemplateOptions Gemma(string template, string bos) => new()
    {
        Name = "Gemma",
        Begin = template.Contains("bos_token", StringComparison.Ordinal) ? bos : "",
        UserPrefix = "<start_of_turn>user\n",
        UserSuffix = "<end_of_turn>\n",
        AssistantPrefix = "<start_of_turn>model\n",
        AssistantSuffix = "<end_of_turn>\n",
        TrimUser = true,
        TrimAssistant = true,
        RequireAlternation = true,
        // Gemma 3 puts the system text at the head of the first user turn; Gemma 1 and 2 refuse it.
        SystemPlacement = template.Contains("first_user_prefix", StringComparison.Ordinal)
            ? SystemMessagePlacement.FirstUserTurn
            : SystemMessagePlacement.NotSupported,
        SystemMergeSuffix = "\n\n",
    };

    private static ChatTemplateOptions? Instruct(string template, string bos, string eos)
    {
        var options = new ChatTemplateOptions
        {
            Begin = bos,
            GenerationPrompt = "",
            EndOfTurn = eos,
            AssistantSuffix = eos,
            RequireAlternation = true,
        };
        if (template.Contains("<<SYS>>", StringComparison.Ordinal))
        {
            // Llama 2: every user turn opens with BOS; the system text sits in <<SYS>> at the head of the first one.
            options.Name = "Llama 2";
            options.Begin = "";
            options.UserPrefix = bos + "[INST] ";
            options.UserSuffix = " [/INST]";
            options.AssistantPrefix = " ";
            options.AssistantSuffix = " " + eos;
            options.TrimUser = true;
            options.TrimAssistant = true;
            options.TrimMergedUserTurn = true;
            options.SystemPlacement = SystemMessagePlacement.FirstUserTurn;
            options.SystemMergePrefix = "<<SYS>>\n";
            options.SystemMergeSuffix = "\n<</SYS>>\n\n";
        }
        else if (template.Contains("[SYSTEM_PROMPT]", StringComparison.Ordinal))
        {
            options.Name = "Mistral v7";
            options.RequireAlternation = false;
            options.SystemPrefix = "[SYSTEM_PROMPT] ";
            options.SystemSuffix = "[/SYSTEM_PROMPT]";
            options.UserPrefix = "[INST] ";
            options.UserSuffix = "[/INST]";
            options.AssistantPrefix = " ";
        }
        else if (template.Contains("loop.last and system_message", StringComparison.Ordinal))
        {
            // Mistral v3: the system text goes into the last user turn; tekken drops the spaces.
            bool tekken = template.Contains("\"[INST]\" + ", StringComparison.Ordinal);
            options.Name = tekken ? "Mistral v3 (tekken)" : "Mistral v3";
            options.UserPrefix = tekken ? "[INST]" : "[INST] ";
            options.UserSuffix = "[/INST]";
            options.AssistantPrefix = tekken ? "" : " ";
            options.TrimAssistant = !tekken;
            options.SystemPlacement = SystemMessagePlacement.LastUserTurn;
        }
        else if (template.Contains("' [INST] '", StringComparison.Ordinal))
        {
            options.Name = "Mistral v1";
            options.UserPrefix = " [INST] ";
            options.UserSuffix = " [/INST]";
            options.AssistantPrefix = " ";
            options.SystemPlacement = SystemMessagePlacement.FirstUserTurn;
        }
        else if (template.Contains("'[INST] ' + message['content'] + ' [/INST]'", StringComparison.Ordinal))
        {
            options.Name = "Mistral";
            options.UserPrefix = "[INST] ";
            options.UserSuffix = " [/INST]";
            options.SystemPlacement = SystemMessagePlacement.NotSupported;
        }
        else
            return null;
        return options;
    }

    // Phi-3-small writes every role as <|role|>.
    private const string PhiRoleMarker = "'<|' + message['role'] + '|>'";

    private static ChatTemplateOptions Phi3(string template, string bos, string eos)
    {
        string begin = Regex.IsMatch(template, @"\{\{-?\s*bos_token\s*-?\}\}") ? bos : "";
        if (!template.Contains("add_generation_prompt", StringComparison.Ordinal))
        {
            // The first Phi-3 template: the assistant header follows every user turn, and system messages are dropped.
            return new ChatTemplateOptions
            {
                Name = "Phi-3 (original)",
                Begin = begin,
                UserPrefix = "<|user|>\n",
                UserSuffix = "<|end|>\n<|assistant|>\n",
                AssistantSuffix = "<|end|>\n",
                GenerationPrompt = "",
                EndOfTurn = "<|end|>",
                SystemPlacement = SystemMessagePlacement.Ignored,
            };
        }
        return new ChatTemplateOptions
        {
            Name = "Phi-3",
            Begin = begin,
            SystemPrefix = "<|system|>\n",
            SystemSuffix = "<|end|>\n",
            UserPrefix = "<|user|>\n",
            UserSuffix = "<|end|>\n",
            AssistantPrefix = "<|assistant|>\n",
            AssistantSuffix = "<|end|>\n",
            OtherRolePrefix = Has(template, PhiRoleMarker) ? "<|{role}|>\n" : null,
            OtherRoleSuffix = "<|end|>\n",
            EndWithoutGenerationPrompt = eos,
            SkipEmptySystemMessage = template.Contains("'system' and message['content']", StringComparison.Ordinal),
        };
    }
}
