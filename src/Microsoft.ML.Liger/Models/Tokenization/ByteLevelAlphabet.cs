namespace Microsoft.ML.Liger.Models.Tokenization;

/// <summary>
/// GPT-2's byte-to-character table: byte-level BPE vocabularies store each UTF-8 byte as a printable character
/// (space is 'Ġ', newline 'Ċ'). Needed to turn a tokenizer.json vocabulary back into the byte ranks the
/// library's Tiktoken tokenizer loads.
/// </summary>
internal static class ByteLevelAlphabet
{
    private static readonly Dictionary<char, byte> CharToByte = Build();

    private static Dictionary<char, byte> Build()
    {
        var map = new Dictionary<char, byte>(256);
        int shifted = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[printable ? (char)b : (char)(256 + shifted++)] = (byte)b;
        }
        return map;
    }

    /// <summary>The bytes a byte-level token stands for, or null when it has a character outside the table.</summary>
    public static byte[]? ToBytes(string token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            if (!CharToByte.TryGetValue(token[i], out bytes[i]))
                return null;
        }
        return bytes;
    }
}
