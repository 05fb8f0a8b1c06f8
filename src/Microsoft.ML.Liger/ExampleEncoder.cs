using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Training;

namespace Microsoft.ML.Liger;

/// <summary>
/// Turns rows into token ids the same way for training, scoring and generation: prompt tokens (context only),
/// then response tokens ending in EOS or the chat template's end of turn, or plain text followed by EOS.
/// Prompt and response are tokenized separately, so the boundary the loss mask uses is exactly where
/// generation starts.
/// </summary>
internal sealed class ExampleEncoder
{
    private readonly CausalLMTokenizer tokenizer;
    private readonly bool useChatTemplate;
    private readonly string? systemPrompt;

    public ExampleEncoder(CausalLMTokenizer tokenizer, bool useChatTemplate, string? systemPrompt)
    {
        this.tokenizer = tokenizer;
        this.useChatTemplate = useChatTemplate;
        this.systemPrompt = systemPrompt;
        EndTokenId = tokenizer.EosTokenIds.Count > 0 ? tokenizer.EosTokenIds.Min() : tokenizer.PadTokenId ?? 0;
        PadTokenId = tokenizer.PadTokenId ?? EndTokenId;
        stopIds = tokenizer.GetStopTokenIds();
        StopTokenIds = stopIds.Select(i => (long)i).ToArray();
        if (useChatTemplate && tokenizer.ChatTemplate is null)
            throw new ArgumentException("UseChatTemplate is on, but the tokenizer has no chat template it can write; set CausalLMTokenizer.ChatTemplate.", "UseChatTemplate");
    }

    /// <summary>EOS: ends every example.</summary>
    public int EndTokenId { get; }

    /// <summary>Fills padding.</summary>
    public int PadTokenId { get; }

    /// <summary>Ids that stop generation.</summary>
    public IReadOnlyCollection<long> StopTokenIds { get; }

    // Encoding the end-of-turn marker each time would tokenize it once per example and per generated row.
    private readonly IReadOnlySet<int> stopIds;

    /// <summary>The prompt as the model sees it before the response (with the chat template's generation prompt when on).</summary>
    public int[] Prompt(string prompt)
    {
        if (!useChatTemplate)
            return WithoutSuffix(tokenizer.Encode(prompt, addSpecialTokens: true), tokenizer.Encode(prompt, addSpecialTokens: false));
        var messages = new List<ChatMessage>();
        if (systemPrompt is not null)
            messages.Add(new ChatMessage("system", systemPrompt));
        messages.Add(new ChatMessage("user", prompt));
        return [.. tokenizer.EncodeChat(messages, addGenerationPrompt: true)];
    }

    /// <summary>Prompt then response, closed by the end-of-turn marker or EOS; the loss goes on the response part.</summary>
    public TokenizedExample PromptResponse(string prompt, string response)
    {
        int[] head = Prompt(prompt);
        return new TokenizedExample([.. head, .. Response(response)], head.Length);
    }

    /// <summary>The response as it follows its prompt: its tokens, closed by the end-of-turn marker or EOS (never empty).</summary>
    public int[] Response(string response)
    {
        var tail = new List<int>(tokenizer.Encode(response, addSpecialTokens: false));
        if (useChatTemplate && tokenizer.ChatTemplate is { EndOfTurn.Length: > 0 } template)
            tail.AddRange(tokenizer.Encode(template.EndOfTurn, addSpecialTokens: false));
        if (tail.Count == 0 || !stopIds.Contains(tail[^1]))
            tail.Add(EndTokenId);
        return [.. tail];
    }

    /// <summary>The tokenizer's BOS id, or null.</summary>
    public int? BosTokenId => tokenizer.BosTokenId;

    /// <summary>Text for language modelling, followed by EOS; the loss goes on every token.</summary>
    public TokenizedExample Text(string text)
    {
        var ids = new List<int>(tokenizer.Encode(text, addSpecialTokens: true));
        if (ids.Count == 0 || ids[^1] != EndTokenId)
            ids.Add(EndTokenId);
        return new TokenizedExample([.. ids], 0);
    }

    /// <summary>Decodes generated ids, without special tokens.</summary>
    public string Decode(IEnumerable<int> ids) => tokenizer.Decode(ids, skipSpecialTokens: true);

    /// <summary>
    /// The encoding with special tokens, cut after the plain text: BOS stays, but an EOS that a tokenizer appends
    /// to every encoding (add_eos_token) would end the prompt before its response.
    /// </summary>
    private static int[] WithoutSuffix(IReadOnlyList<int> full, IReadOnlyList<int> plain)
    {
        for (int offset = 0; offset + plain.Count <= full.Count; offset++)
        {
            bool match = true;
            for (int i = 0; i < plain.Count && match; i++)
                match = full[offset + i] == plain[i];
            if (match)
                return [.. full.Take(offset + plain.Count)];
        }
        return [.. full];
    }
}
