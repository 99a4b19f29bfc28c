using System.Buffers.Binary;
using BitMoe.Kernels;

namespace BitMoe.Quant;

/// <summary>
/// llama.cpp's TQ2_0: per 256 weights <c>block_tq2_0 = { uint8 qs[64]; fp16 d }</c>, 66 bytes,
/// codes w + 1 in {0, 1, 2}, 2 bits each. Within each 128-weight half, byte m (0..31) holds weights
/// m, m+32, m+64, m+96 at bits 0, 2, 4, 6 - the bytes of <c>quantize_row_tq2_0_ref</c> exactly.
/// Rows whose length is not a multiple of 256 end in a short tail block (BitMoe's extension, see
/// docs/ternary-layouts.md): g = ceil(t/4) code bytes, byte j holding tail weights j, j+g, j+2g, j+3g at
/// bits 0, 2, 4, 6 (positions past the row hold the zero code 1), and no fp16 d: only llama.cpp reads block scales,
/// and it never sees a tail (rows that have one only occur in mhmoe files); BitMoe uses the float32 tensor scale.
/// Each row is padded on its own: row r starts at r * RowBytes(cols).
/// </summary>
public static class Tq2Layout
{
    public const int BlockSize = TernaryDot.BlockSize;
    public const int BlockBytes = TernaryDot.Tq2BlockBytes;

    public static int RowBytes(int cols) => TernaryDot.Tq2RowBytes(cols);

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
            var qs = dst.Slice(off, 64);
            for (int h = 0; h < 2; h++)
                for (int m = 0; m < 32; m++)
                {
                    int q = 0;
                    for (int n = 0; n < 4; n++) q |= TernaryPacking.Code(w[128 * h + 32 * n + m]) << (2 * n);
                    qs[32 * h + m] = (byte)q;
                }
            TernaryPacking.WriteScale(dst.Slice(off + 64, 2), w, d);
        }
        int tail = cols - nb * BlockSize;
        if (tail > 0)
        {
            var w = row[(nb * BlockSize)..];
            int g = TernaryDot.Tq2TailGroups(tail);
            for (int j = 0; j < g; j++)
            {
                int q = 0;
                for (int n = 0; n < 4; n++)
                {
                    int i = j + n * g;
                    q |= (i < tail ? TernaryPacking.Code(w[i]) : 1) << (2 * n);
                }
                dst[off + j] = (byte)q;
            }
        }
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
            for (int h = 0; h < 2; h++)
                for (int m = 0; m < 32; m++)
                {
                    int q = src[off + 32 * h + m];
                    for (int n = 0; n < 4; n++) w[128 * h + 32 * n + m] = (sbyte)(((q >> (2 * n)) & 3) - 1);
                }
        }
        int tail = cols - nb * BlockSize;
        if (tail > 0)
        {
            var w = row[(nb * BlockSize)..];
            int g = TernaryDot.Tq2TailGroups(tail);
            for (int j = 0; j < g; j++)
                for (int n = 0; n < 4; n++)
                {
                    int i = j + n * g;
                    if (i < tail) w[i] = (sbyte)(((src[off + j] >> (2 * n)) & 3) - 1);
                }
        }
    }

    /// <summary>Number of blocks with an fp16 scale in a row: the full 256-blocks (a tail block has none).</summary>
    public static int BlockCount(int cols) => cols / BlockSize;

    /// <summary>The fp16 scale d of block <paramref name="block"/> of a packed row.</summary>
    public static Half BlockScale(ReadOnlySpan<byte> src, int cols, int block)
    {
        if ((uint)block >= (uint)BlockCount(cols)) throw new ArgumentOutOfRangeException(nameof(block));
        int nb = cols / BlockSize;
        int at = block * BlockBytes + 64;
        return BinaryPrimitives.ReadHalfLittleEndian(src[at..]);
    }
}
