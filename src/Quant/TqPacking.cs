using System.Buffers.Binary;

namespace BitMoe.Quant;

/// <summary>What Tq1Layout and Tq2Layout share: the code of a ternary value and the per-block fp16 scale.</summary>
internal static class TernaryPacking
{
    /// <summary>w + 1 for w in {-1, 0, 1}; anything else is a caller bug.</summary>
    public static int Code(sbyte w)
    {
        if ((uint)(w + 1) > 2u) throw new ArgumentException($"weight {w} is not ternary (-1, 0 or 1)");
        return w + 1;
    }

    public static void CheckScale(float d)
    {
        if (!(d >= 0) || float.IsInfinity(d)) throw new ArgumentOutOfRangeException(nameof(d), d, "the block scale d must be finite and >= 0");
    }

    /// <summary>
    /// fp16(d) rounded to nearest even (GGML_FP32_TO_FP16), or 0 when the block has no nonzero weight:
    /// llama.cpp's d is the block's max |x|, which is d for a block with a +-1 and 0 otherwise.
    /// </summary>
    public static void WriteScale(Span<byte> dst, ReadOnlySpan<sbyte> block, float d)
    {
        bool any = block.IndexOfAnyExcept((sbyte)0) >= 0;
        BinaryPrimitives.WriteHalfLittleEndian(dst, any ? (Half)d : (Half)0f);
    }
}
