using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Liger.Models.Tokenization;

/// <summary>Builds the library's SentencePiece tokenizer from a tokenizer.model (Llama 2, Mistral, Gemma, Phi-3).</summary>
internal static class SentencePieceFactory
{
    /// <summary>
    /// The tokenizer, and the same tokenizer without the "▁" it puts before a text: transformers leaves the
    /// prefix off a piece that already starts with a space, and off the pieces after an added token when the
    /// model folder is not in legacy mode.
    /// </summary>
    public static (SentencePieceTokenizer Prefixed, SentencePieceTokenizer Unprefixed) Create(string path, IReadOnlyDictionary<string, int> addedTokens)
    {
        byte[] model = File.ReadAllBytes(path);
        SentencePieceTokenizer prefixed = Load(path, model, addedTokens);
        return prefixed.AddDummyPrefix
            ? (prefixed, Load(path, SentencePieceModelProto.WithoutDummyPrefix(model), addedTokens))
            : (prefixed, prefixed);
    }

    private static SentencePieceTokenizer Load(string path, byte[] model, IReadOnlyDictionary<string, int> addedTokens)
    {
        try
        {
            using var stream = new MemoryStream(model);
            // BOS/EOS are added by CausalLMTokenizer, which reads when to from the weights's configs.
            return SentencePieceTokenizer.Create(stream, addBeginningOfSentence: false, addEndOfSentence: false,
                addedTokens.Count > 0 ? addedTokens : null);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            throw new InvalidDataException($"'{path}' is not a SentencePiece model the tokenizer library can load: {ex.Message}", ex);
        }
    }
}
