namespace Microsoft.ML.Liger.Models.Tokenization;

/// <summary>
/// The ids a tokenizer can emit, checked when it is read: an added token with id 2147483647 would otherwise be
/// emitted by Encode and fail deep in libtorch's embedding ("index out of range in self"), or make
/// <see cref="CausalLMTokenizer.VocabularySize"/> wrap around.
/// </summary>
internal static class TokenizerIds
{
    /// <summary>
    /// Added tokens extend the vocabulary by at most their own number (transformers' len(tokenizer)): an id at or
    /// above the vocabulary's size plus the count of added tokens leaves a gap no real tokenizer has.
    /// </summary>
    public static void CheckAddedTokens(int modelVocabularySize, params (IReadOnlyList<AddedToken> Tokens, string File, string Field)[] sources)
    {
        long limit = (long)modelVocabularySize + sources.SelectMany(s => s.Tokens).Select(t => t.Id).Distinct().Count();
        foreach (var (tokens, file, field) in sources)
            foreach (var token in tokens)
                if (token.Id >= limit)
                    throw new InvalidDataException(
                        $"'{file}' field '{field}' gives added token \"{token.Content}\" id {token.Id}, beyond the tokenizer's ids 0 to {limit - 1} "
                        + $"({modelVocabularySize} in the vocabulary and {limit - modelVocabularySize} added).");
    }

    /// <summary>An id the tokenizer puts into encodings (BOS, EOS, PAD, a post-processor's specials) must be one of its own.</summary>
    public static void CheckEmitted(int vocabularySize, string? source, string what, IEnumerable<int> ids)
    {
        foreach (int id in ids)
            if (id < 0 || id >= vocabularySize)
                throw new InvalidDataException(
                    $"The tokenizer{(source is null ? "" : $" in '{source}'")} would emit {what} id {id}, outside its {vocabularySize} ids (0 to {vocabularySize - 1}).");
    }

    /// <summary>
    /// A tokenizer and a model read from one folder must agree: every id the tokenizer can emit must index the
    /// model's embedding, checked once at load instead of failing as libtorch's "index out of range in self".
    /// </summary>
    public static void CheckFitsModel(CausalLMTokenizer tokenizer, CausalLMConfig config, string folder)
    {
        if (tokenizer.VocabularySize > config.VocabSize)
            throw new InvalidDataException(
                $"The tokenizer in '{folder}' has {tokenizer.VocabularySize} ids (0 to {tokenizer.VocabularySize - 1}), but config.json field 'vocab_size' is "
                + $"{config.VocabSize}: the model cannot embed ids from {config.VocabSize} on.");
    }
}
