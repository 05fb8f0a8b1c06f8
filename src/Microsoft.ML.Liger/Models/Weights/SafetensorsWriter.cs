using System.Buffers.Binary;
using System.Text.Encodings.Web;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models.Weights;

/// <summary>A tensor to save under its state-dict name, converted to <paramref name="DType"/> on the way.</summary>
internal sealed record TensorToSave(string Name, Tensor Tensor, ScalarType DType)
{
    public string StoredDType => SafetensorsDType.FromScalarType(DType)!;

    public long ByteLength => Tensor.NumberOfElements * ElementSize;

    public int ElementSize => SafetensorsDType.TryGetElementSize(StoredDType, out int size) ? size : 0;
}

/// <summary>Writes one safetensors file, laid out as the reference writer does.</summary>
internal static class SafetensorsWriter
{
    private const int CopyBufferBytes = 1 << 20;

    /// <summary>
    /// Writes <paramref name="tensors"/> to a new file at <paramref name="path"/> (which must not exist) and
    /// flushes it to disk. The layout is the reference writer's, byte for byte: compact JSON header with
    /// "__metadata__" first, padded with spaces to a multiple of 8, tensors ordered by dtype (wider first) then
    /// name, so every tensor starts at an offset aligned to its element size (readers that map the file can
    /// view it in place).
    /// </summary>
    public static void Write(string path, IReadOnlyList<TensorToSave> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        var ordered = tensors.OrderByDescending(t => SafetensorsDType.LayoutRank(t.StoredDType))
            .ThenBy(t => t.Name, StringComparer.Ordinal).ToList();
        byte[] header = BuildHeader(ordered, metadata);

        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: CopyBufferBytes);
        Span<byte> lengthBytes = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(lengthBytes, (ulong)header.Length);
        stream.Write(lengthBytes);
        stream.Write(header);
        foreach (var tensor in ordered)
            WriteData(stream, tensor);
        stream.Flush(flushToDisk: true);
    }

    private static byte[] BuildHeader(IReadOnlyList<TensorToSave> ordered, IReadOnlyDictionary<string, string> metadata)
    {
        using var buffer = new MemoryStream();
        // Names are written as they are (UTF-8), not \u-escaped as the default encoder does with '+' or '<'.
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteStartObject("__metadata__");
            foreach (var (key, value) in metadata)
                json.WriteString(key, value);
            json.WriteEndObject();
            long offset = 0;
            foreach (var tensor in ordered)
            {
                json.WriteStartObject(tensor.Name);
                json.WriteString("dtype", tensor.StoredDType);
                json.WriteStartArray("shape");
                foreach (long dim in tensor.Tensor.shape)
                    json.WriteNumberValue(dim);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + tensor.ByteLength);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += tensor.ByteLength;
            }
            json.WriteEndObject();
        }
        int padding = (int)((8 - buffer.Length % 8) % 8);
        for (int i = 0; i < padding; i++)
            buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }

    private static void WriteData(Stream stream, TensorToSave tensor)
    {
        using var scope = NewDisposeScope();
        // detach: the bytes are read outside autograd; contiguous: the stored layout is row-major.
        var data = tensor.Tensor.detach().to(tensor.DType).cpu().contiguous();
        long start = stream.Position;
        if (tensor.ByteLength > 0)
            data.WriteBytesToStream(stream, CopyBufferBytes);
        if (stream.Position - start != tensor.ByteLength)
            throw new InvalidOperationException(
                $"Writing tensor '{tensor.Name}' produced {stream.Position - start} bytes instead of {tensor.ByteLength}.");
    }
}
