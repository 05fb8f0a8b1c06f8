namespace Microsoft.ML.Liger.Models.Tokenization;

/// <summary>
/// The one edit we make to a SentencePiece ModelProto: add_dummy_prefix turned off, every other setting kept.
/// </summary>
/// <remarks>
/// Why the edit goes inside the existing NormalizerSpec: Microsoft.ML.Tokenizers 3.0 reads the model with its
/// own protobuf reader, which replaces a repeated embedded message (last wins) where Google.Protobuf merged it.
/// Appending a second NormalizerSpec holding only add_dummy_prefix = false (what we did under 2.0.1) now drops
/// the model's own settings and brings back the proto defaults, remove_extra_whitespaces = true among them,
/// so spaces were trimmed (the transformers oracle caught it). A scalar written twice inside one message is
/// last-wins under every protobuf reader, so appending the field to the spec's own bytes keeps the rest.
/// </remarks>
internal static class SentencePieceModelProto
{
    private const int NormalizerSpecField = 3;            // ModelProto.normalizer_spec
    private static readonly byte[] AddDummyPrefixFalse = [0x18, 0x00];   // NormalizerSpec field 3 (varint) = 0

    /// <summary>The model with add_dummy_prefix = false in its NormalizerSpec (one is added if it has none).</summary>
    /// <exception cref="InvalidDataException">The bytes are not a protobuf message.</exception>
    public static byte[] WithoutDummyPrefix(byte[] model)
    {
        using var output = new MemoryStream(model.Length + 8);
        bool edited = false;
        int pos = 0;
        while (pos < model.Length)
        {
            int start = pos;
            ulong tag = ReadVarint(model, ref pos);
            int wireType = (int)(tag & 7);
            if (tag >> 3 == NormalizerSpecField && wireType == 2)
            {
                int length = checked((int)ReadVarint(model, ref pos));
                Require(pos + length <= model.Length);
                WriteVarint(output, tag);
                WriteVarint(output, (ulong)(length + AddDummyPrefixFalse.Length));
                output.Write(model, pos, length);
                output.Write(AddDummyPrefixFalse);
                pos += length;
                edited = true;
                continue;
            }
            Skip(model, wireType, ref pos);
            output.Write(model, start, pos - start);
        }
        if (!edited)
        {
            WriteVarint(output, (NormalizerSpecField << 3) | 2);
            WriteVarint(output, (ulong)AddDummyPrefixFalse.Length);
            output.Write(AddDummyPrefixFalse);
        }
        return output.ToArray();
    }

    private static void Skip(byte[] data, int wireType, ref int pos)
    {
        switch (wireType)
        {
            case 0: ReadVarint(data, ref pos); break;
            case 1: pos += 8; break;
            case 2:
                int length = checked((int)ReadVarint(data, ref pos));   // read first: `pos += Read(ref pos)` would add to the old pos
                pos += length;
                break;
            case 5: pos += 4; break;
            default: throw new InvalidDataException($"Protobuf wire type {wireType} is not one a SentencePiece model uses.");
        }
        Require(pos <= data.Length);
    }

    private static ulong ReadVarint(byte[] data, ref int pos)
    {
        ulong value = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            Require(pos < data.Length);
            byte b = data[pos++];
            value |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
                return value;
        }
        throw new InvalidDataException("A protobuf varint is longer than 10 bytes.");
    }

    private static void WriteVarint(Stream output, ulong value)
    {
        while (value >= 0x80)
        {
            output.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }
        output.WriteByte((byte)value);
    }

    private static void Require(bool inside)
    {
        if (!inside)
            throw new InvalidDataException("The SentencePiece model ends inside a protobuf field.");
    }
}
