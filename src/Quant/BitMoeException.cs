namespace BitMoe.Quant;

/// <summary>
/// A problem with the user's input (a file, a tensor, an option). The CLI prints its message as
/// one line and exits non-zero; the message always names the file or option and what was expected.
/// </summary>
public sealed class BitMoeException : Exception
{
    public BitMoeException(string message) : base(message) { }
    public BitMoeException(string message, Exception inner) : base(message, inner) { }
}
