namespace BitMoe.Kernels;

/// <summary>
/// Scalar reference dot products straight on the file layouts tq2_0 and tq1_0 (llama.cpp's block
/// formats, with BitMoe's short tail block for rows whose length is not a multiple of 256; see
/// docs/ternary-layouts.md). They return sum_i w_i * x_i exactly, the block scales d ignored: a
/// BitNet tensor has one scale, applied once by the caller. Slow and obvious on purpose: they decode
/// the bytes independently of the packers in BitMoe.Quant, so a test of one checks the other.
/// </summary>
public static class TernaryDot
{
    /// <summary>Weights per full block (llama.cpp's QK_K).</summary>
    public const int BlockSize = 256;
    public const int Tq2BlockBytes = 66; // qs[64], fp16 d
    public const int Tq1BlockBytes = 54; // qs[48], qh[4], fp16 d

    /// <summary>Bytes of one tq2_0 row: 66 per full block, then ceil(tail/4) code bytes for the tail (which has no fp16 d).</summary>
    public static int Tq2RowBytes(int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        int tail = cols % BlockSize;
        return cols / BlockSize * Tq2BlockBytes + (tail == 0 ? 0 : Tq2TailGroups(tail));
    }

    /// <summary>Bytes of one tq1_0 row: 54 per full block, then ceil(tail/5) code bytes for the tail (which has no fp16 d).</summary>
    public static int Tq1RowBytes(int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        int tail = cols % BlockSize;
        return cols / BlockSize * Tq1BlockBytes + (tail == 0 ? 0 : Tq1TailGroups(tail));
    }

    /// <summary>Code bytes of a tq2 tail of <paramref name="tail"/> weights: byte j holds tail weights j + n*g, n = 0..3.</summary>
    public static int Tq2TailGroups(int tail) => (tail + 3) / 4;

    /// <summary>Code bytes of a tq1 tail of <paramref name="tail"/> weights: byte j holds tail weights j + n*g, n = 0..4.</summary>
    public static int Tq1TailGroups(int tail) => (tail + 4) / 5;

    /// <summary>
    /// Trit n (0 = most significant) of a byte stored as ceil(v * 256 / 243): multiplying by 3^n (mod 256)
    /// moves trit n to the top, and (q * 3) >> 8 reads the top trit, as llama.cpp's dequantizer does.
    /// </summary>
    public static int Trit(byte q, int n)
    {
        byte shifted = (byte)(q * Pow3[n]);
        return (shifted * 3) >> 8;
    }

    private static ReadOnlySpan<byte> Pow3 => [1, 3, 9, 27, 81, 243];

    public static int Tq2Scalar(ReadOnlySpan<byte> packedRow, ReadOnlySpan<sbyte> x, int cols)
    {
        Check(packedRow.Length, Tq2RowBytes(cols), x.Length, cols);
        int sum = 0, off = 0, nb = cols / BlockSize;
        for (int b = 0; b < nb; b++, off += Tq2BlockBytes)
        {
            var qs = packedRow.Slice(off, 64);
            var xb = x.Slice(b * BlockSize, BlockSize);
            // two 128-weight halves; byte m of a half holds weights m, m+32, m+64, m+96 at bits 0, 2, 4, 6
            for (int h = 0; h < 2; h++)
                for (int m = 0; m < 32; m++)
                {
                    int q = qs[32 * h + m];
                    for (int n = 0; n < 4; n++)
                        sum += (((q >> (2 * n)) & 3) - 1) * xb[128 * h + 32 * n + m];
                }
        }
        int tail = cols - nb * BlockSize;
        if (tail > 0)
        {
            int g = Tq2TailGroups(tail);
            var qs = packedRow.Slice(off, g);
            var xt = x.Slice(nb * BlockSize, tail);
            for (int j = 0; j < g; j++)
                for (int n = 0; n < 4; n++)
                {
                    int i = j + n * g;
                    if (i < tail) sum += (((qs[j] >> (2 * n)) & 3) - 1) * xt[i];
                }
        }
        return sum;
    }

    public static int Tq1Scalar(ReadOnlySpan<byte> packedRow, ReadOnlySpan<sbyte> x, int cols)
    {
        Check(packedRow.Length, Tq1RowBytes(cols), x.Length, cols);
        int sum = 0, off = 0, nb = cols / BlockSize;
        for (int b = 0; b < nb; b++, off += Tq1BlockBytes)
        {
            var blk = packedRow.Slice(off, Tq1BlockBytes);
            var xb = x.Slice(b * BlockSize, BlockSize);
            // qs[0..32): byte m holds weights m + 32n (n = 0..4), weights 0..159
            for (int m = 0; m < 32; m++)
                for (int n = 0; n < 5; n++)
                    sum += (Trit(blk[m], n) - 1) * xb[m + 32 * n];
            // qs[32..48): byte 32+m holds weights 160 + m + 16n (n = 0..4), weights 160..239
            for (int m = 0; m < 16; m++)
                for (int n = 0; n < 5; n++)
                    sum += (Trit(blk[32 + m], n) - 1) * xb[160 + m + 16 * n];
            // qh[0..4): byte j holds weights 240 + j + 4n (n = 0..3) in its top four trits
            for (int j = 0; j < 4; j++)
                for (int n = 0; n < 4; n++)
                    sum += (Trit(blk[48 + j], n) - 1) * xb[240 + j + 4 * n];
        }
        int tail = cols - nb * BlockSize;
        if (tail > 0)
        {
            int g = Tq1TailGroups(tail);
            var qs = packedRow.Slice(off, g);
            var xt = x.Slice(nb * BlockSize, tail);
            for (int j = 0; j < g; j++)
                for (int n = 0; n < 5; n++)
                {
                    int i = j + n * g;
                    if (i < tail) sum += (Trit(qs[j], n) - 1) * xt[i];
                }
        }
        return sum;
    }

    private static void Check(int rowLength, int rowBytes, int xLength, int cols)
    {
        if (rowLength < rowBytes) throw new ArgumentException($"packed row has {rowLength} bytes, {cols} weights need {rowBytes}");
        if (xLength < cols) throw new ArgumentException($"x has {xLength} values, the row has {cols} weights");
    }
}
