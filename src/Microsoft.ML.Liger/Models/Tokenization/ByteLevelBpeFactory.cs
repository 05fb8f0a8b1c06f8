using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Liger.Models.Tokenization;

/// <summary>
/// Builds the library tokenizer for a byte-level BPE tokenizer.json: the Tiktoken tokenizer when the file asks
/// for tiktoken's behaviour (ignore_merges, Llama 3), the BPE tokenizer with its merges otherwise.
/// </summary>
internal static class ByteLevelBpeFactory
{
    public static Tokenizer Create(TokenizerJson json)
    {
        PreTokenizer? preTokenizer = CreatePreTokenizer(json);
        Normalizer? normalizer = json.Normalizations.Count > 0 ? new UnicodeNormalizer(json.Normalizations) : null;

        // Added tokens are cut out of the text before the library sees it (AddedTokenSplitter); the library
        // only needs them to decode ids past the model vocabulary.
        var addedTokens = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (AddedToken token in json.AddedTokens)
            addedTokens[token.Content] = token.Id;

        if (json.IgnoreMerges && json.ContinuingSubwordPrefix is null && json.EndOfWordSuffix is null
            && MergesFollowRanks(json) && CreateRanks(json) is MemoryStream ranks)
        {
            // Tiktoken encodes a word found whole in the vocabulary as that token and otherwise merges the
            // lowest-ranked pair: exactly ignore_merges with merges ordered by rank, which is how files
            // converted from tiktoken (Llama 3) are made.
            using (ranks)
                return TiktokenTokenizer.Create(ranks, preTokenizer, normalizer, addedTokens);
        }

        return BpeTokenizer.Create(new BpeOptions(json.Vocabulary)
        {
            Merges = json.Merges,
            SpecialTokens = addedTokens,
            PreTokenizer = preTokenizer,
            Normalizer = normalizer,
            ByteLevel = true,
            UnknownToken = json.UnknownToken,
            ContinuingSubwordPrefix = json.ContinuingSubwordPrefix,
            EndOfWordSuffix = json.EndOfWordSuffix,
        });
    }

    private static PreTokenizer? CreatePreTokenizer(TokenizerJson json)
    {
        var splitters = new List<PreTokenizer>();
        foreach (string pattern in json.PreTokenizerPatterns)
        {
            Regex regex;
            try
            {
                regex = new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
            }
            catch (ArgumentException ex)
            {
                throw new UnsupportedTokenizerException($"'{json.Path}': the pre-tokenizer regex '{pattern}' is not valid in .NET: {ex.Message}");
            }
            splitters.Add(new RegexPreTokenizer(regex, specialTokens: null));
        }
        return splitters.Count switch
        {
            0 => null,
            1 => splitters[0],
            _ => new CompositePreTokenizer(splitters),
        };
    }

    // True when merge i's result never outranks merge i+1's: then merging by merge order and by token rank agree.
    private static bool MergesFollowRanks(TokenizerJson json)
    {
        int previous = int.MinValue;
        foreach (string merge in json.Merges)
        {
            int space = merge.IndexOf(' ');
            if (!json.Vocabulary.TryGetValue(string.Concat(merge.AsSpan(0, space), merge.AsSpan(space + 1)), out int rank) || rank < previous)
                return false;
            previous = rank;
        }
        return true;
    }

    // The vocabulary as tiktoken ranks ("base64-bytes rank" lines), or null when a token is not byte-level.
    private static MemoryStream? CreateRanks(TokenizerJson json)
    {
        var text = new StringBuilder(json.Vocabulary.Count * 16);
        text.Append("Capacity: ").Append(json.Vocabulary.Count).Append('\n');
        foreach ((string token, int id) in json.Vocabulary)
        {
            if (ByteLevelAlphabet.ToBytes(token) is not byte[] bytes)
                return null;
            text.Append(Convert.ToBase64String(bytes)).Append(' ').Append(id).Append('\n');
        }
        return new MemoryStream(Encoding.UTF8.GetBytes(text.ToString()));
    }
}
