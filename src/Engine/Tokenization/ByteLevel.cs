namespace BitMoe.Engine.Tokenization;

/// <summary>
/// GPT-2's reversible map between bytes and printable characters: byte-level BPE vocabularies
/// spell every token with these characters (a space is 'Ġ', a newline 'Ċ').
/// </summary>
public static class ByteLevel
{
    public static readonly char[] ByteToChar = BuildByteToChar();
    private static readonly Dictionary<char, byte> CharToByte =
        ByteToChar.Select((c, b) => (c, b)).ToDictionary(p => p.c, p => (byte)p.b);

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        var printable = new bool[256];
        for (int b = '!'; b <= '~'; b++) printable[b] = true;
        for (int b = 0xA1; b <= 0xAC; b++) printable[b] = true;
        for (int b = 0xAE; b <= 0xFF; b++) printable[b] = true;
        int next = 0;
        for (int b = 0; b < 256; b++) map[b] = printable[b] ? (char)b : (char)(256 + next++);
        return map;
    }

    /// <summary>The bytes a vocabulary token stands for, or null when it is not byte-level text.</summary>
    public static byte[]? TokenToBytes(string token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            if (!CharToByte.TryGetValue(token[i], out bytes[i])) return null;
        }
        return bytes;
    }
}
