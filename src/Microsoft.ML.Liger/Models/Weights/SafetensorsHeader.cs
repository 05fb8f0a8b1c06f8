using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace Microsoft.ML.Liger.Models.Weights;

/// <summary>One tensor's header entry: its dtype string, shape and byte range within the data section.</summary>
internal sealed record SafetensorsEntry(string Name, string DType, long[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;
}

/// <summary>
/// The validated header of one safetensors file: an 8-byte little-endian length N, N bytes of JSON
/// ({name: {dtype, shape, data_offsets}, "__metadata__": {string: string}}), then the data section.
/// Validation follows the reference reader, so a file it accepts is accepted here and a corrupt file
/// is reported (with the tensor to blame) before any tensor memory is touched.
/// </summary>
internal sealed class SafetensorsHeader
{
    /// <summary>The reference reader's cap on the header, which also bounds what a corrupt length makes us allocate.</summary>
    public const long MaxHeaderLength = 100_000_000;

    private SafetensorsHeader(string path, long dataStart, IReadOnlyList<SafetensorsEntry> entries, IReadOnlyDictionary<string, string> metadata)
    {
        Path = path;
        DataStart = dataStart;
        Entries = entries;
        Metadata = metadata;
    }

    public string Path { get; }

    /// <summary>File position of the data section (8 + header length).</summary>
    public long DataStart { get; }

    /// <summary>Tensors in header order.</summary>
    public IReadOnlyList<SafetensorsEntry> Entries { get; }

    /// <summary>The "__metadata__" map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public static SafetensorsHeader Read(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"Safetensors file '{path}' does not exist.", path);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        long fileLength = stream.Length;
        if (fileLength < 8)
            throw Corrupt(path, null, $"it is {fileLength} bytes long, shorter than the 8-byte header length (truncated file?)");

        Span<byte> lengthBytes = stackalloc byte[8];
        stream.ReadExactly(lengthBytes);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        // Not a safetensors file at all (or cut short): say so without quoting what the file holds.
        if (headerLength > (ulong)(fileLength - 8))
            throw new WeightFormatException(path, null,
                $"'{path}' is not a safetensors file: its header length exceeds its size of {fileLength} bytes (truncated, or another kind of file?).");
        if (headerLength > MaxHeaderLength)
            throw Corrupt(path, null, $"its header length exceeds the format's limit of {MaxHeaderLength} bytes");

        var json = new byte[(int)headerLength];
        stream.ReadExactly(json);
        long dataStart = 8 + (long)headerLength;
        var (entries, metadata) = Parse(path, json, fileLength - dataStart);
        return new SafetensorsHeader(path, dataStart, entries, metadata);
    }

    private static (List<SafetensorsEntry>, Dictionary<string, string>) Parse(string path, byte[] json, long dataLength)
    {
        JsonDocument document;
        try
        {
            // The format requires strict UTF-8 JSON; a lenient decode would let a corrupt header through.
            _ = new UTF8Encoding(false, throwOnInvalidBytes: true).GetCharCount(json);
            document = JsonDocument.Parse(json);
        }
        catch (Exception error) when (error is JsonException or DecoderFallbackException)
        {
            throw Corrupt(path, null, $"its header is not valid UTF-8 JSON ({error.Message})");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw Corrupt(path, null, $"its header is a JSON {document.RootElement.ValueKind}, not an object");

            var entries = new List<SafetensorsEntry>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (!seen.Add(property.Name))
                    throw Corrupt(path, property.Name, $"its header lists tensor '{property.Name}' twice");
                if (property.Name == "__metadata__")
                    ReadMetadata(path, property.Value, metadata);
                else
                    entries.Add(ReadEntry(path, property.Name, property.Value, dataLength));
            }
            CheckDataIsCovered(path, entries, dataLength);
            return (entries, metadata);
        }
    }

    private static void ReadMetadata(string path, JsonElement element, Dictionary<string, string> metadata)
    {
        if (element.ValueKind != JsonValueKind.Object)
            throw Corrupt(path, null, "its \"__metadata__\" is not a JSON object");
        foreach (var item in element.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
                throw Corrupt(path, null, $"its \"__metadata__\" value for '{item.Name}' is not a string");
            metadata[item.Name] = item.Value.GetString()!;
        }
    }

    private static SafetensorsEntry ReadEntry(string path, string name, JsonElement element, long dataLength)
    {
        if (element.ValueKind != JsonValueKind.Object
            || !element.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String
            || !element.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array
            || !element.TryGetProperty("data_offsets", out var offsetsElement) || offsetsElement.ValueKind != JsonValueKind.Array)
            throw Corrupt(path, name, $"the header entry of tensor '{name}' is not an object with dtype, shape and data_offsets");

        string dtype = dtypeElement.GetString()!;
        if (!SafetensorsDType.TryGetElementSize(dtype, out int elementSize))
            throw Corrupt(path, name, $"tensor '{name}' has dtype '{dtype}', which this reader does not know (loadable: {SafetensorsDType.Supported})");

        var shape = ReadNonNegativeIntegers(path, name, "shape", shapeElement);
        var offsets = ReadNonNegativeIntegers(path, name, "data_offsets", offsetsElement);
        if (offsets.Length != 2 || offsets[0] > offsets[1])
            throw Corrupt(path, name, $"tensor '{name}' has data_offsets [{string.Join(", ", offsets)}], not a [begin, end] pair with begin <= end");
        if (offsets[1] > dataLength)
            throw Corrupt(path, name, $"tensor '{name}' has data_offsets [{offsets[0]}, {offsets[1]}] outside the {dataLength}-byte data section (truncated file?)");

        long expectedBytes;
        try
        {
            expectedBytes = checked(shape.Aggregate(1L, (product, dim) => product * dim) * elementSize);
        }
        catch (OverflowException)
        {
            throw Corrupt(path, name, $"tensor '{name}' has shape [{string.Join(", ", shape)}], too large to address");
        }
        if (offsets[1] - offsets[0] != expectedBytes)
            throw Corrupt(path, name,
                $"tensor '{name}' ({dtype}, shape [{string.Join(", ", shape)}]) needs {expectedBytes} bytes but its data_offsets [{offsets[0]}, {offsets[1]}] span {offsets[1] - offsets[0]}");
        return new SafetensorsEntry(name, dtype, shape, offsets[0], offsets[1]);
    }

    private static long[] ReadNonNegativeIntegers(string path, string name, string field, JsonElement array)
    {
        var values = new long[array.GetArrayLength()];
        int i = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out long value) || value < 0)
                throw Corrupt(path, name, $"tensor '{name}' has a {field} entry '{item.GetRawText()}' that is not a non-negative integer");
            values[i++] = value;
        }
        return values;
    }

    // As the reference reader: the tensors tile the data section exactly, with no gap, overlap or tail.
    private static void CheckDataIsCovered(string path, List<SafetensorsEntry> entries, long dataLength)
    {
        long end = 0;
        foreach (var entry in entries.OrderBy(e => e.Begin).ThenBy(e => e.End))
        {
            if (entry.Begin != end)
                throw Corrupt(path, entry.Name,
                    $"tensor '{entry.Name}' starts at data offset {entry.Begin} but the previous tensor ends at {end} (overlapping or gapped data_offsets)");
            end = entry.End;
        }
        if (end != dataLength)
            throw Corrupt(path, null, $"its tensors cover {end} bytes of the {dataLength}-byte data section (extra bytes at the end)");
    }

    private static WeightFormatException Corrupt(string path, string? tensorName, string reason) =>
        new(path, tensorName, $"'{path}' is not a valid safetensors file: {reason}.");
}
