using System.Text;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Liger.Models.Tokenization;

/// <summary>
/// Decodes SentencePiece ids as transformers does: added tokens are written as their text, the model ids
/// between them by the library, and only the very start of the text loses the "▁" prefix's space (the
/// library drops it at the first model token even when an added token such as &lt;s&gt; comes before).
/// </summary>
internal sealed class SentencePieceDecoder(SentencePieceTokenizer model, IEnumerable<AddedToken> addedTokens)
{
    private readonly Dictionary<int, string> _added = addedTokens.GroupBy(t => t.Id).ToDictionary(g => g.Key, g => g.First().Content);
    private Dictionary<int, string>? _pieces;

    public string Decode(IEnumerable<int> ids)
    {
        var text = new StringBuilder();
        var run = new List<int>();
        foreach (int id in ids)
        {
            if (_added.TryGetValue(id, out string? content))
            {
                Flush(text, run);
                text.Append(content);
            }
            else
                run.Add(id);
        }
        Flush(text, run);
        return text.ToString();
    }

    private void Flush(StringBuilder text, List<int> run)
    {
        if (run.Count == 0)
            return;
        string decoded = model.Decode(run, considerSpecialTokens: true);
        if (text.Length > 0 && model.AddDummyPrefix && !model.TreatWhitespaceAsSuffix && Piece(run[0]).StartsWith('\u2581'))
            text.Append(' ');
        text.Append(decoded);
        run.Clear();
    }

    private string Piece(int id)
    {
        _pieces ??= model.Vocabulary.GroupBy(p => p.Value).ToDictionary(g => g.Key, g => g.First().Key);
        return _pieces.TryGetValue(id, out string? piece) ? piece : "";
    }
}
