namespace Microsoft.ML.Liger.Models;

/// <summary>Where a chat format puts the system message.</summary>
public enum SystemMessagePlacement
{
    /// <summary>A turn of its own, between <see cref="ChatTemplateOptions.SystemPrefix"/> and <see cref="ChatTemplateOptions.SystemSuffix"/>.</summary>
    OwnTurn,
    /// <summary>Inside the first user turn, before the user's text (Gemma 3, Llama 2, Mistral v1).</summary>
    FirstUserTurn,
    /// <summary>Inside the last user turn, before the user's text (Mistral v3).</summary>
    LastUserTurn,
    /// <summary>Dropped, as templates without a system branch do.</summary>
    Ignored,
    /// <summary>A system message is an error (Gemma 1 and 2 raise one).</summary>
    NotSupported,
}

/// <summary>
/// A chat format written as role markers: each turn is prefix + content + suffix. Build one with
/// <see cref="ChatTemplate.FromRoles"/> for a model whose template is not recognised.
/// </summary>
public sealed class ChatTemplateOptions
{
    /// <summary>A name for error messages. Default "custom".</summary>
    public string Name { get; set; } = "custom";

    /// <summary>Text before the first turn (a BOS token written as text, for example). Default empty.</summary>
    public string Begin { get; set; } = "";

    /// <summary>Text before a system message's content.</summary>
    public string SystemPrefix { get; set; } = "";

    /// <summary>Text after a system message's content.</summary>
    public string SystemSuffix { get; set; } = "";

    /// <summary>Text before a user message's content.</summary>
    public string UserPrefix { get; set; } = "";

    /// <summary>Text after a user message's content.</summary>
    public string UserSuffix { get; set; } = "";

    /// <summary>Text before an assistant message's content.</summary>
    public string AssistantPrefix { get; set; } = "";

    /// <summary>Text after an assistant message's content.</summary>
    public string AssistantSuffix { get; set; } = "";

    /// <summary>Prefix for any other role, with "{role}" replaced by the role; null rejects other roles. Default null.</summary>
    public string? OtherRolePrefix { get; set; }

    /// <summary>Suffix for any other role, with "{role}" replaced by the role. Default empty.</summary>
    public string OtherRoleSuffix { get; set; } = "";

    /// <summary>What opens the assistant's turn when a generation prompt is asked for; null means <see cref="AssistantPrefix"/>.</summary>
    public string? GenerationPrompt { get; set; }

    /// <summary>Text that ends the conversation when no generation prompt is asked for (Phi-3 writes EOS). Default empty.</summary>
    public string EndWithoutGenerationPrompt { get; set; } = "";

    /// <summary>The text that ends an assistant turn: where generation stops. Null means <see cref="AssistantSuffix"/> without surrounding whitespace.</summary>
    public string? EndOfTurn { get; set; }

    /// <summary>Whether to strip whitespace around system content. Default false.</summary>
    public bool TrimSystem { get; set; }

    /// <summary>Whether to strip whitespace around user content. Default false.</summary>
    public bool TrimUser { get; set; }

    /// <summary>Whether to strip whitespace around assistant content. Default false.</summary>
    public bool TrimAssistant { get; set; }

    /// <summary>Where the system message goes. Default <see cref="SystemMessagePlacement.OwnTurn"/>.</summary>
    public SystemMessagePlacement SystemPlacement { get; set; } = SystemMessagePlacement.OwnTurn;

    /// <summary>With a system message placed inside a user turn: text before the system content. Default empty.</summary>
    public string SystemMergePrefix { get; set; } = "";

    /// <summary>With a system message placed inside a user turn: text between the system and user content. Default "\n\n".</summary>
    public string SystemMergeSuffix { get; set; } = "\n\n";

    /// <summary>System message used when the conversation has none; null for none (Qwen2.5 has one).</summary>
    public string? DefaultSystemMessage { get; set; }

    /// <summary>Text put before the system content (Llama 3.1's knowledge-cutoff block). Default empty.</summary>
    public string SystemPreamble { get; set; } = "";

    /// <summary>Whether an empty system message writes no turn (Phi-3.5). Default false.</summary>
    public bool SkipEmptySystemMessage { get; set; }

    /// <summary>Whether turns after the system message must alternate user/assistant starting with user. Default false.</summary>
    public bool RequireAlternation { get; set; }

    /// <summary>Rewrites assistant content given (content, after the last user message, last message) — Qwen3's thinking block.</summary>
    internal Func<string, bool, bool, string>? AssistantContent { get; set; }

    /// <summary>Computes <see cref="SystemPreamble"/> at formatting time (Llama 3.2's date of today).</summary>
    internal Func<string>? SystemPreambleFactory { get; set; }

    /// <summary>Trim the whole user turn after the system text is merged in (Llama 2 strips the merged content).</summary>
    internal bool TrimMergedUserTurn { get; set; }

    internal ChatTemplateOptions Clone() => (ChatTemplateOptions)MemberwiseClone();
}
