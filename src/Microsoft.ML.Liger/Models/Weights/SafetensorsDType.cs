using TorchSharp;

namespace Microsoft.ML.Liger.Models.Weights;

/// <summary>The dtype strings of the safetensors format and how they map onto torch element types.</summary>
internal static class SafetensorsDType
{
    // The byte-sized dtypes the format defines, in the order of the reference implementation's Dtype enum
    // (its writer lays tensors out by that order, descending, then by name), with their element sizes. A
    // header naming one we cannot load is still validated, and can be ignored, instead of rejected as
    // corrupt. Sub-byte types (F4, F6_*) are left out: no weights we load uses them.
    private static readonly (string Name, int Size)[] Defined =
    [
        ("BOOL", 1), ("U8", 1), ("I8", 1), ("F8_E5M2", 1), ("F8_E4M3", 1), ("F8_E8M0", 1), ("F8_E4M3FNUZ", 1),
        ("F8_E5M2FNUZ", 1), ("I16", 2), ("U16", 2), ("F16", 2), ("BF16", 2), ("I32", 4), ("U32", 4), ("F32", 4),
        ("C64", 8), ("F64", 8), ("I64", 8), ("U64", 8),
    ];

    private static readonly Dictionary<string, int> ElementSizes = Defined.ToDictionary(d => d.Name, d => d.Size, StringComparer.Ordinal);

    private static readonly Dictionary<string, int> Ranks =
        Defined.Select((d, rank) => (d.Name, rank)).ToDictionary(d => d.Name, d => d.rank, StringComparer.Ordinal);

    private static readonly Dictionary<string, torch.ScalarType> ScalarTypes = new(StringComparer.Ordinal)
    {
        ["BOOL"] = torch.ScalarType.Bool, ["U8"] = torch.ScalarType.Byte, ["I8"] = torch.ScalarType.Int8,
        ["I16"] = torch.ScalarType.Int16, ["F16"] = torch.ScalarType.Float16, ["BF16"] = torch.ScalarType.BFloat16,
        ["I32"] = torch.ScalarType.Int32, ["F32"] = torch.ScalarType.Float32,
        ["I64"] = torch.ScalarType.Int64, ["F64"] = torch.ScalarType.Float64,
    };

    /// <summary>The dtypes this loader reads and writes, for error messages.</summary>
    public static string Supported => string.Join(", ", ScalarTypes.Keys);

    /// <summary>The element size in bytes of a dtype the format defines; false for an unknown string.</summary>
    public static bool TryGetElementSize(string dtype, out int size) => ElementSizes.TryGetValue(dtype, out size);

    /// <summary>Where a dtype stands in the reference writer's layout order (higher first).</summary>
    public static int LayoutRank(string dtype) => Ranks[dtype];

    /// <summary>The torch type of a stored dtype; null when torch (or this loader) has none.</summary>
    public static torch.ScalarType? ToScalarType(string dtype) =>
        ScalarTypes.TryGetValue(dtype, out var type) ? type : null;

    /// <summary>The safetensors string of a torch type; null when the format has none (complex types).</summary>
    public static string? FromScalarType(torch.ScalarType type)
    {
        foreach (var (name, scalarType) in ScalarTypes)
            if (scalarType == type)
                return name;
        return null;
    }

    /// <summary>Whether a torch type is a floating-point type (the ones a dtype option converts).</summary>
    public static bool IsFloatingPoint(torch.ScalarType type) => type is torch.ScalarType.Float16
        or torch.ScalarType.BFloat16 or torch.ScalarType.Float32 or torch.ScalarType.Float64;
}
