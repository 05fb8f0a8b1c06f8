using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models;

/// <summary>How <see cref="SafetensorsWeights.Load"/> maps a weights folder onto a module.</summary>
public sealed record WeightLoadOptions
{
    /// <summary>
    /// The floating-point type the module's floating-point parameters and buffers should have after loading
    /// (the module is converted first). Null keeps the module's types. Either way stored tensors are converted
    /// (bf16, fp16, fp32, fp64) to the type of the module tensor they are copied into, as torch's copy_ does.
    /// </summary>
    public ScalarType? DType { get; init; }

    /// <summary>
    /// Stored tensors that are not loaded, even when the module has an entry of that name: patterns where
    /// '*' matches any run of characters (dots included). Defaults to "*.rotary_emb.inv_freq", the rotary
    /// buffers older weight files carry but models recompute. Add "lm_head.weight" when the module ties it to
    /// the embeddings and the weights folder stores it anyway.
    /// </summary>
    public IReadOnlyList<string> IgnoredNames { get; init; } = ["*.rotary_emb.inv_freq"];

    /// <summary>
    /// True (default): every module tensor must be in the weights, and every stored tensor not ignored
    /// must be in the module. False: missing tensors keep their initial values and unexpected ones are skipped;
    /// <see cref="WeightLoadResult"/> lists both. Shape mismatches are errors either way.
    /// </summary>
    public bool Strict { get; init; } = true;
}

/// <summary>How <see cref="SafetensorsWeights.Save"/> writes a module.</summary>
public sealed record WeightSaveOptions
{
    /// <summary>Hugging Face's default shard size, 5 GB (decimal, as "5GB" in transformers).</summary>
    public const long DefaultMaxShardBytes = 5_000_000_000;

    /// <summary>
    /// Largest shard in bytes of tensor data: above it the weights folder is split into
    /// model-00001-of-0000N.safetensors files and a model.safetensors.index.json. A tensor larger than this
    /// gets a shard of its own. Must be positive.
    /// </summary>
    public long MaxShardBytes { get; init; } = DefaultMaxShardBytes;

    /// <summary>The type floating-point tensors are stored as; null stores each in its current type. Other tensors keep theirs.</summary>
    public ScalarType? DType { get; init; }

    /// <summary>
    /// State-dict entries not written, as patterns where '*' matches any run of characters: for instance
    /// "lm_head.weight" when it is tied to the embeddings (Hugging Face omits it). Entries that are the very
    /// same tensor as an earlier entry are written once, under the earlier name, without being listed here.
    /// </summary>
    public IReadOnlyList<string> SkippedNames { get; init; } = [];

    /// <summary>Extra "__metadata__" entries of each file, besides {"format": "pt"}, which is always written.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }
}

/// <summary>What a load did, by state-dict name.</summary>
/// <param name="Loaded">Module entries filled from the weights (directly or as the same tensor as a loaded one).</param>
/// <param name="Missing">Module entries the weights folder lacks, left as they were (only non-strict loads get here).</param>
/// <param name="Unexpected">Stored tensors the module does not have, skipped (only non-strict loads get here).</param>
/// <param name="Ignored">Stored tensors skipped because they match <see cref="WeightLoadOptions.IgnoredNames"/>.</param>
public sealed record WeightLoadResult(
    IReadOnlyList<string> Loaded, IReadOnlyList<string> Missing, IReadOnlyList<string> Unexpected, IReadOnlyList<string> Ignored);

/// <summary>One tensor of a weights folder as its header describes it.</summary>
/// <param name="Name">The state-dict name.</param>
/// <param name="StoredDType">The safetensors dtype string ("BF16", "F32", ...).</param>
/// <param name="DType">The torch type of <paramref name="StoredDType"/>; null when it has none here (F8 types, unsigned above 8 bits).</param>
/// <param name="Shape">The shape.</param>
/// <param name="FilePath">The safetensors file holding it.</param>
/// <param name="ByteLength">The bytes of its data.</param>
public sealed record WeightTensorInfo(
    string Name, string StoredDType, ScalarType? DType, IReadOnlyList<long> Shape, string FilePath, long ByteLength);
