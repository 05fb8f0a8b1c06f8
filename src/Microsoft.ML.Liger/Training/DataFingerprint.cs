using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Microsoft.ML.Liger.Training;

/// <summary>A hash of the training data as token ids and counts: a resume must see the same data.</summary>
internal sealed class DataFingerprint : IDisposable
{
    private readonly IncrementalHash hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

    public DataFingerprint Add(int value)
    {
        Span<byte> four = stackalloc byte[4];
        BitConverter.TryWriteBytes(four, value);
        hash.AppendData(four);
        return this;
    }

    /// <summary>The length, then the ids (so that concatenations cannot collide).</summary>
    public DataFingerprint Add(ReadOnlySpan<int> ids)
    {
        Add(ids.Length);
        hash.AppendData(MemoryMarshal.AsBytes(ids));
        return this;
    }

    /// <summary>The first 16 hex digits of the SHA-256.</summary>
    public string Value() => Convert.ToHexString(hash.GetHashAndReset())[..16];

    public void Dispose() => hash.Dispose();

    /// <summary>The fingerprint of tokenized examples (prompt length, length, ids; as issue 5's trainer wrote it).</summary>
    public static string Of(IReadOnlyList<TokenizedExample> data)
    {
        using var fingerprint = new DataFingerprint();
        foreach (var example in data)
            fingerprint.Add(example.PromptLength).Add(example.Tokens);
        return fingerprint.Value();
    }
}
