using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BitMoe.Kernels;

/// <summary>
/// The dense decode layout: five ternary weights a byte (1.6 bits a weight, against 2 in <see cref="TernaryGemv"/>'s
/// kernel layout), so decoding streams a fifth fewer bytes. Built at load (docs/ternary-layouts.md).
///
/// A row is Q = ceil(cols / 80) granules of 16 bytes, taken as Q / 4 chunks of 64 bytes and then one chunk of the
/// 16 (Q mod 4) bytes left. In a chunk of L bytes that starts at weight b, byte l holds the weights b + L n + l,
/// n = 0..4: each of the five codes of a vector of bytes meets a run of the activations in their natural order.
/// Weights past the row are 0.
///
/// A byte: v = sum_n c_n 3^n with c_n = w_n + 1 in {0, 1, 2}, so v is 0..242, 121 when all five weights are 0,
/// and negating the five weights gives 242 - v. Stored is v when v &lt;= 121, else 128 + (242 - v): the low seven
/// bits pick one of 122 patterns (one 128-entry table lookup, vpermi2b), the top bit negates it (c becomes 2 - c).
/// </summary>
public static class Base3Layout
{
    /// <summary>Weights in a granule, the padding unit of a row (16 bytes).</summary>
    public const int GranuleWeights = 80;

    /// <summary>Bytes of one row: 16 ceil(cols / 80).</summary>
    public static int RowStride(int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        return (cols + GranuleWeights - 1) / GranuleWeights * 16;
    }

    /// <summary>Weights a row covers, padding included: 5 <see cref="RowStride"/>(cols).</summary>
    public static int PaddedCols(int cols) => 5 * RowStride(cols);

    /// <summary>The byte of five weights (each -1, 0 or 1).</summary>
    public static byte Encode(int w0, int w1, int w2, int w3, int w4)
    {
        int v = (w0 + 1) + 3 * (w1 + 1) + 9 * (w2 + 1) + 27 * (w3 + 1) + 81 * (w4 + 1);
        return (byte)(v <= 121 ? v : 128 + (242 - v));
    }

    /// <summary>Weight n (0..4) of a byte: -1, 0 or 1. Bytes no packer writes (low bits 122..127) read as zeros.</summary>
    public static int Weight(byte b, int n)
    {
        int c = Codes[n * 128 + (b & 127)];
        return (b & 128) != 0 ? 1 - c : c - 1;
    }

    /// <summary>codes[n * 128 + i]: code n (w + 1, 0..2) of pattern i; 1 (weight 0) past the 122 patterns.</summary>
    internal static ReadOnlySpan<byte> Codes => CodeTable;

    private static readonly byte[] CodeTable = BuildCodes();

    private static byte[] BuildCodes()
    {
        var t = new byte[5 * 128];
        for (int n = 0, p = 1; n < 5; n++, p *= 3)
            for (int i = 0; i < 128; i++)
                t[n * 128 + i] = (byte)(i < 122 ? i / p % 3 : 1);
        return t;
    }

    /// <summary>Packs one row of ternary values (sbyte in {-1, 0, 1}).</summary>
    public static void PackRow(ReadOnlySpan<sbyte> w, Span<byte> dst)
    {
        int cols = w.Length, stride = RowStride(cols);
        if (dst.Length < stride) throw new ArgumentException($"dst has {dst.Length} bytes, a row of {cols} needs {stride}");
        for (int i = 0; i < cols; i++)
            if ((uint)(w[i] + 1) > 2u) throw new ArgumentException($"weight {w[i]} at {i} is not ternary (-1, 0 or 1)");
        int full = stride / 64 * 64;
        for (int p = 0; p < stride; p++)
        {
            // chunk of L bytes from byte p0 = weight 5 p0; byte p holds weights 5 p0 + L n + (p - p0)
            int p0 = p < full ? p / 64 * 64 : full, len = p < full ? 64 : stride - full;
            int b = 5 * p0 + (p - p0);
            dst[p] = Encode(At(w, b), At(w, b + len), At(w, b + 2 * len), At(w, b + 3 * len), At(w, b + 4 * len));
        }
    }

    private static int At(ReadOnlySpan<sbyte> w, int i) => i < w.Length ? w[i] : 0;

    /// <summary>The ternary values of one row; <paramref name="w"/>.Length is the row length.</summary>
    public static void UnpackRow(ReadOnlySpan<byte> src, Span<sbyte> w)
    {
        int cols = w.Length, stride = RowStride(cols);
        if (src.Length < stride) throw new ArgumentException($"src has {src.Length} bytes, a row of {cols} needs {stride}");
        int full = stride / 64 * 64;
        for (int p = 0; p < stride; p++)
        {
            int p0 = p < full ? p / 64 * 64 : full, len = p < full ? 64 : stride - full;
            int b = 5 * p0 + (p - p0);
            for (int n = 0; n < 5; n++)
            {
                int i = b + n * len;
                if (i < cols) w[i] = (sbyte)Weight(src[p], n);
            }
        }
    }

    /// <summary>
    /// Rows [start, end) of a base-3 matrix rewritten in <see cref="TernaryGemv"/>'s kernel layout (the batch kernels' input),
    /// into <paramref name="dst"/> (row r - start at (r - start) * <see cref="TernaryGemv.RowStride"/>(cols)). Same weights.
    /// </summary>
    public static unsafe void ToKernelLayout(byte* src, int cols, int start, int end, byte* dst)
    {
        int stride = RowStride(cols), stride2 = TernaryGemv.RowStride(cols);
        if (Avx512Vbmi.IsSupported)
        {
            ToKernelLayoutAvx512(src, cols, start, end, dst);
            return;
        }
        var row = new sbyte[cols];
        for (int r = start; r < end; r++)
        {
            UnpackRow(new ReadOnlySpan<byte>(src + (long)r * stride, stride), row);
            TernaryGemv.PackRow(row, new Span<byte>(dst + (long)(r - start) * stride2, stride2));
        }
    }

    /// <summary>
    /// Each chunk decoded as <see cref="Base3Gemv"/> decodes it (five vectors of codes, weights in order), then four codes to a
    /// byte (c0 + 4 c1 + 16 c2 + 64 c3: vpmaddubsw by 1, 4; vpmaddwd by 1, 16; vpmovdb). The codes past a short chunk or past
    /// the row go to a scratch row, of which the row's bytes are copied.
    /// </summary>
    private static unsafe void ToKernelLayoutAvx512(byte* src, int cols, int start, int end, byte* dst)
    {
        int stride = RowStride(cols), stride2 = TernaryGemv.RowStride(cols), full = stride / 64 * 64;
        var tables = Base3Gemv.Tables.Load();
        var by4 = Vector512.Create((ushort)0x0401).AsSByte();
        var by16 = Vector512.Create(0x0010_0001).AsInt16();
        byte* scratch = stackalloc byte[Math.Max(5 * stride / 4 + 16, stride2)];
        for (int r = start; r < end; r++)
        {
            byte* row = src + (long)r * stride;
            int p = 0;
            for (; p < stride; p += 64)
            {
                int len = p < full ? 64 : stride - p;
                var v = len == 64 ? Vector512.Load(row + p) : Base3Gemv.LoadShort(row + p, len);
                // chunk from weight 5p: code vector n holds weights 5p + len n + l, i.e. bytes (5p + len n) / 4 of the 2-bit row
                for (int n = 0; n < 5; n++)
                {
                    var c = tables.Decode(v, n);
                    var quad = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(c, by4), by16);
                    Avx512F.ConvertToVector128Byte(quad.AsUInt32()).Store(scratch + (5 * p + len * n) / 4);
                }
            }
            // a 2-bit row can cover more weights than the base-3 one (80 -> 96): those are padding, code 1
            for (int j = 5 * stride / 4; j < stride2; j++) scratch[j] = 0x55;
            Buffer.MemoryCopy(scratch, dst + (long)(r - start) * stride2, stride2, stride2);
        }
    }
}
