using Microsoft.ML.Liger.Training;

namespace Microsoft.ML.Liger.PreferenceAlignment;

/// <summary>
/// One tokenized training row: a prompt and its responses, already cut to fit. Paired algorithms: <see cref="First"/>
/// is the chosen response and <see cref="Second"/> the rejected one. KTO: <see cref="First"/> is the completion,
/// <see cref="Desirable"/> its label, and <see cref="Second"/> the completion of its KL sequence (this prompt with
/// another row's completion), when the KL baseline is on.
/// </summary>
internal sealed record PreferenceExample(int[] Prompt, int[] First, int[]? Second, bool Desirable = true)
{
    /// <summary>Tokens a response is scored on after this prompt (with an empty prompt, the response's first token has nothing before it).</summary>
    public int TargetsOf(int[] response) => Prompt.Length == 0 ? response.Length - 1 : response.Length;
}

/// <summary>Turns prompt and response texts into <see cref="PreferenceExample"/>s, cut as the options say.</summary>
internal sealed class PreferenceEncoder(ExampleEncoder encoder, int maxContextLength, int? maxPromptLength)
{
    /// <summary>A prompt with its chosen and rejected responses.</summary>
    public PreferenceExample Pair(string prompt, string chosen, string rejected)
    {
        int[] head = Prompt(prompt);
        return new PreferenceExample(head, Response(head, chosen), Response(head, rejected));
    }

    /// <summary>A KTO row, its KL completion attached later (<see cref="WithKlCompletions"/>).</summary>
    public PreferenceExample Labeled(string prompt, string completion, bool desirable)
    {
        int[] head = Prompt(prompt);
        return new PreferenceExample(head, Response(head, completion), null, desirable);
    }

    /// <summary>
    /// Gives each KTO row the completion of the row before it (the last row's goes to the first), as TRL builds its KL
    /// dataset, cut to fit after this row's prompt. With a single row the KL sequence is the row itself.
    /// </summary>
    public static List<PreferenceExample> WithKlCompletions(IReadOnlyList<PreferenceExample> rows, int maxContextLength)
    {
        var result = new List<PreferenceExample>(rows.Count);
        for (int i = 0; i < rows.Count; i++)
        {
            var previous = rows[(i + rows.Count - 1) % rows.Count].First;
            int room = maxContextLength - rows[i].Prompt.Length;
            result.Add(rows[i] with { Second = previous.Length > room ? previous[..room] : previous });
        }
        return result;
    }

    /// <summary>
    /// The prompt's tokens, cut to MaxPromptLength and to MaxContextLength − 1 (one response token must fit), keeping the
    /// end, which the response continues; a leading BOS stays in front.
    /// </summary>
    private int[] Prompt(string prompt)
    {
        int[] ids = encoder.Prompt(prompt);
        int budget = Math.Min(maxPromptLength ?? int.MaxValue, maxContextLength - 1);
        if (ids.Length <= budget)
            return ids;
        if (budget >= 2 && encoder.BosTokenId is int bos && ids[0] == bos)
            return [bos, .. ids[^(budget - 1)..]];
        return ids[^budget..];
    }

    /// <summary>The response's tokens (ending in EOS or the end-of-turn marker), cut to what fits after the prompt, keeping the start.</summary>
    private int[] Response(int[] prompt, string response)
    {
        int[] ids = encoder.Response(response);
        int room = maxContextLength - prompt.Length;
        return ids.Length > room ? ids[..room] : ids;
    }

    /// <summary>The fingerprint of the examples (every id and label), checked on resume.</summary>
    public static string Fingerprint(IReadOnlyList<PreferenceExample> data)
    {
        using var fingerprint = new DataFingerprint();
        foreach (var example in data)
        {
            fingerprint.Add(example.Prompt).Add(example.First).Add(example.Desirable ? 1 : 0);
            if (example.Second is { } second)
                fingerprint.Add(second);
        }
        return fingerprint.Value();
    }
}
