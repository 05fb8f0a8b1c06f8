namespace Microsoft.ML.Liger.Models;

/// <summary>One turn of a conversation.</summary>
/// <param name="Role">"system", "user", "assistant", or another role the chat template knows.</param>
/// <param name="Content">The turn's text.</param>
public sealed record ChatMessage(string Role, string Content)
{
    /// <summary>A system message.</summary>
    public static ChatMessage System(string content) => new("system", content);

    /// <summary>A user message.</summary>
    public static ChatMessage User(string content) => new("user", content);

    /// <summary>An assistant message.</summary>
    public static ChatMessage Assistant(string content) => new("assistant", content);
}
