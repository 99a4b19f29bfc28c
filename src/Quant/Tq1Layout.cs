using System.Buffers.Binary;
using BitMoe.Kernels;

namespace BitMoe.Quant;

/// <summary>
/// llama.cpp's TQ1_0: per 256 weights <c>block_tq1_0 = { uint8 qs[48]; uint8 qh[4]; fp16 d }</c>,
/// 54 bytes. Codes c = w + 1 are base-3 digits; a byte holding digits c0..c4 (c0 most significant) stores
/// ceil((c0*81 + c1*27 + c2*9 + c3*3 + c4) * 256 / 243), so that trit n reads back as
/// ((byte)(q * 3^n) * 3) >> 8. Order, as in <c>quantize_row_tq1_0_ref</c>:
/// qs[m] (m &lt; 32) holds weights m + 32n (n = 0..4); qs[32 + m] (m &lt; 16) holds weights 160 + m + 16n;
/// qh[j] holds weights 240 + j + 4n (n = 0..3) as its top four trits, the fifth trit 0.
/// Rows whose length is not a multiple of 256 end in a short tail block (BitMoe's extension, see
/// docs/ternary-layouts.md): g = ceil(t/5) bytes, byte j holding tail weights j + n*g (n = 0..4, positions
/// past the row hold the zero code 1) in the same base-3 encoding, and no fp16 d: only llama.cpp reads block scales,
/// and it never sees a tail (rows that have one only occur in mhmoe files); BitMoe uses the float32 tensor scale.
/// Each row is padded on its own: row r starts at r * RowBytes(cols).
/// </summary>
public static class Tq1Layout
{
    public const int BlockSize = TernaryDot.BlockSize;
    public const int BlockBytes = TernaryDot.Tq1BlockBytes;

    public static int RowBytes(int cols) => TernaryDot.Tq1RowBytes(cols);

    /// <summary>
    /// Packs one row of ternary values. <paramref name="d"/> (>= 0) is the magnitude a +-1 weight stands
    /// for; every block stores it as fp16, except a block with no nonzero weight, which stores 0 like
    /// llama.cpp (whose d is the block's max |x|).
    /// </summary>
    public static void Pack(ReadOnlySpan<sbyte> row, float d, Span<byte> dst)
    {
        int cols = row.Length;
        TernaryPacking.CheckScale(d);
        if (dst.Length < RowBytes(cols)) throw new ArgumentException($"dst has {dst.Length} bytes, {cols} weights need {RowBytes(cols)}");
        int nb = cols / BlockSize, off = 0;
        for (int b = 0; b < nb; b++, off += BlockBytes)
        {
            var w = row.Slice(b * BlockSize, BlockSize);
            for (int m = 0; m < 32; m++)
                dst[off + m] = Encode(w, m, 32, 5);
            for (int m = 0; m < 16; m++)
                dst[off + 32 + m] = Encode(w[160..], m, 16, 5);
            for (int j = 0; j < 4; j++)
                dst[off + 48 + j] = Encode(w[240..], j, 4, 4);
            TernaryPacking.WriteScale(dst.Slice(off + 52, 2), w, d);
        }
        int tail = cols - nb * BlockSize;
        if (tail > 0)
        {
            var w = row[(nb * BlockSize)..];
            int g = TernaryDot.Tq1TailGroups(tail);
            for (int j = 0; j < g; j++)
                dst[off + j] = Encode(w, j, g, 5);
        }
    }

    /// <summary>
    /// One byte: the <paramref name="digits"/> codes of w[first + n*stride] (missing positions = zero code 1),
    /// most significant first, shifted to five trits, then scaled by ceil(* 256 / 243).
    /// </summary>
    private static byte Encode(ReadOnlySpan<sbyte> w, int first, int stride, int digits)
    {
        int v = 0;
        for (int n = 0; n < digits; n++)
        {
            int i = first + n * stride;
            v = v * 3 + (i < w.Length ? TernaryPacking.Code(w[i]) : 1);
        }
        for (int n = digits; n < 5; n++) v *= 3;
        return (byte)((v * 256 + 242) / 243);
    }

    /// <summary>The ternary values of one packed row; <paramref name="row"/>.Length is the row length.</summary>
    public static void Unpack(ReadOnlySpan<byte> src, Span<sbyte> row)
    {
        int cols = row.Length;
        if (src.Length < RowBytes(cols)) throw new ArgumentException($"src has {src.Length} bytes, {cols} weights need {RowBytes(cols)}");
        int nb = cols / BlockSize, off = 0;
        for (int b = 0; b < nb; b++, off += BlockBytes)
        {
            var w = row.Slice(b * BlockSize, BlockSize);
            for (int m = 0; m < 32; m++)
                Decode(src[off + m], w, m, 32, 5);
            for (int m = 0; m < 16; m++)
                Decode(src[off + 32 + m], w[160..], m, 16, 5);
            for (int j = 0; j < 4; j++)
                Decode(src[off + 48 + j], w[240..], j, 4, 4);
        }
        int tail = cols - nb * BlockSize;
        if (tail > 0)
        {
            var w = row[(nb * BlockSize)..];
            int g = TernaryDot.Tq1TailGroups(tail);
            for (int j = 0; j < g; j++)
                Decode(src[off + j], w, j, g, 5);
        }
    }

    private static void Decode(byte q, Span<sbyte> w, int first, int stride, int digits)
    {
        for (int n = 0; n < digits; n++)
        {
            int i = first + n * stride;
            if (i < w.Length) w[i] = (sbyte)(TernaryDot.Trit(q, n) - 1);
        }
    }

    /// <summary>Number of blocks with an fp16 scale in a row: the full 256-blocks (a tail block has none).</summary>
    public static int BlockCount(int cols) => cols / BlockSize;

    /// <summary>The fp16 scale d of block <paramref name="block"/> of a packed row.</summary>
    public static Half BlockScale(ReadOnlySpan<byte> src, int cols, int block)
    {
        if ((uint)block >= (uint)BlockCount(cols)) throw new ArgumentOutOfRangeException(nameof(block));
        int nb = cols / BlockSize;
        int at = block * BlockBytes + 52;
        return BinaryPrimitives.ReadHalfLittleEndian(src[at..]);
    }
}
