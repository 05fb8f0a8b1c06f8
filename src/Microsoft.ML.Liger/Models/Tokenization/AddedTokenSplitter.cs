using System.Text.RegularExpressions;

namespace Microsoft.ML.Liger.Models.Tokenization;

/// <summary>
/// Cuts text at added tokens before the model tokenizer runs, as Hugging Face does: every piece between two
/// added tokens is tokenized on its own, so pre-tokenizer regexes and SentencePiece prefixes see the same
/// pieces they see in transformers.
/// </summary>
internal sealed class AddedTokenSplitter
{
    private readonly Regex? _pattern;
    private readonly Dictionary<string, AddedToken> _byContent;

    public AddedTokenSplitter(IEnumerable<AddedToken> tokens)
    {
        _byContent = new Dictionary<string, AddedToken>(StringComparer.Ordinal);
        foreach (AddedToken token in tokens)
            if (token.Content.Length > 0)
                _byContent[token.Content] = token;

        if (_byContent.Count == 0)
            return;

        // Longest first: .NET alternation takes the first alternative that matches, Hugging Face the longest.
        IEnumerable<string> alternatives = _byContent.Values
            .OrderByDescending(t => t.Content.Length)
            .ThenBy(t => t.Content, StringComparer.Ordinal)
            .Select(t => (t.LStrip ? @"\s*" : "") + "(" + Regex.Escape(t.Content) + ")" + (t.RStrip ? @"\s*" : ""));
        _pattern = new Regex(string.Join("|", alternatives), RegexOptions.CultureInvariant);
    }

    /// <summary>The pieces of <paramref name="text"/>: plain text (Token null) or an added token.</summary>
    public IEnumerable<(string Text, int Offset, AddedToken? Token)> Split(string text)
    {
        if (_pattern is null)
        {
            if (text.Length > 0)
                yield return (text, 0, null);
            yield break;
        }

        int start = 0;
        foreach (Match match in _pattern.Matches(text))
        {
            if (match.Index > start)
                yield return (text[start..match.Index], start, null);
            string content = match.Groups.Values.Skip(1).First(g => g.Success).Value;
            yield return (content, match.Index, _byContent[content]);
            start = match.Index + match.Length;
        }
        if (start < text.Length)
            yield return (text[start..], start, null);
    }
}
