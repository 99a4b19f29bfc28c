using System.Runtime.CompilerServices;

namespace BitMoe.Kernels;

/// <summary>
/// Packed ternary rows x int8 vector -> int32 per row: y[r] = sum_i w[r, i] * x[i], exact.
///
/// Two kinds of input:
/// - the file layouts tq2_0 / tq1_0 (<see cref="Tq2Scalar"/>, <see cref="Tq1Scalar"/>): scalar only, for
///   checking and for tensors used once;
/// - the kernel layout (<see cref="Compute(ReadOnlySpan{byte}, int, TernaryActivations, Span{int}, int, int)"/>),
///   which the Quant layer repacks into at load: per row, <see cref="RowStride"/>(cols) bytes, byte j holding
///   the codes c = w + 1 of weights 4j, 4j+1, 4j+2, 4j+3 at bits 0, 2, 4, 6; the row padded with the zero
///   code 1 to a multiple of 32 weights (8 bytes), rows back to back. One layout for every ISA: a vector of
///   code bytes shifted right by 2n and masked with 3 gives the codes of weights 4j + n, which meet the
///   activation stream n of <see cref="TernaryActivations"/> lane for lane. Codes are unsigned (0..2) because
///   maddubs/vpdpbusd multiply unsigned by signed bytes; sum(x) is subtracted once per row at the end.
///
/// Overflow: maddubs sums two products c*x with |c*x| &lt;= 2*128, so |pair| &lt;= 512 and the int16 saturation
/// at 32767 is never reached; the AVX2/AVX-512 paths add four such pairs (&lt;= 2048) in int16 before widening
/// with pmaddwd. int32 accumulation is exact up to cols &lt;= 2^31 / 256 = 8 388 608 weights per row.
/// The ISA comes from <see cref="Isa.Current"/> or an explicit argument; every path equals the scalar one
/// bit for bit (integer arithmetic, no rounding anywhere).
/// </summary>
public static unsafe partial class TernaryGemv
{
    /// <summary>Weights per padding unit of the kernel layout (8 bytes).</summary>
    public const int ColumnAlign = 32;

    /// <summary>Bytes of one row in the kernel layout: ceil(cols / 32) * 8.</summary>
    public static int RowStride(int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        return (cols + ColumnAlign - 1) / ColumnAlign * (ColumnAlign / 4);
    }

    /// <summary>Packs one row of ternary values (sbyte in {-1, 0, 1}) into the kernel layout.</summary>
    public static void PackRow(ReadOnlySpan<sbyte> w, Span<byte> dst)
    {
        int stride = RowStride(w.Length);
        if (dst.Length < stride) throw new ArgumentException($"dst has {dst.Length} bytes, a row of {w.Length} needs {stride}");
        for (int j = 0; j < stride; j++)
        {
            int q = 0;
            for (int n = 0; n < 4; n++)
            {
                int i = 4 * j + n;
                int c = i < w.Length ? w[i] + 1 : 1;
                if ((uint)c > 2u) throw new ArgumentException($"weight {w[i]} at {i} is not ternary (-1, 0 or 1)");
                q |= c << (2 * n);
            }
            dst[j] = (byte)q;
        }
    }

    /// <summary>The ternary values of one kernel-layout row; <paramref name="w"/>.Length is the row length.</summary>
    public static void UnpackRow(ReadOnlySpan<byte> src, Span<sbyte> w)
    {
        if (src.Length < RowStride(w.Length)) throw new ArgumentException("src too short for the row");
        for (int i = 0; i < w.Length; i++) w[i] = (sbyte)(((src[i >> 2] >> (2 * (i & 3))) & 3) - 1);
    }

    /// <summary>Rows [start, end) of a file-layout tq2_0 matrix (rows of <see cref="TernaryDot.Tq2RowBytes"/> bytes).</summary>
    public static void Tq2Scalar(ReadOnlySpan<byte> packed, int cols, ReadOnlySpan<sbyte> x, Span<int> y, int start, int end)
    {
        int rb = TernaryDot.Tq2RowBytes(cols);
        CheckRows(packed.Length, rb, y.Length, start, end);
        for (int r = start; r < end; r++) y[r] = TernaryDot.Tq2Scalar(packed.Slice(r * rb, rb), x, cols);
    }

    /// <summary>Rows [start, end) of a file-layout tq1_0 matrix (rows of <see cref="TernaryDot.Tq1RowBytes"/> bytes).</summary>
    public static void Tq1Scalar(ReadOnlySpan<byte> packed, int cols, ReadOnlySpan<sbyte> x, Span<int> y, int start, int end)
    {
        int rb = TernaryDot.Tq1RowBytes(cols);
        CheckRows(packed.Length, rb, y.Length, start, end);
        for (int r = start; r < end; r++) y[r] = TernaryDot.Tq1Scalar(packed.Slice(r * rb, rb), x, cols);
    }

    [ThreadStatic] private static TernaryActivations? _scratch;

    /// <summary>
    /// Convenience form: prepares <paramref name="x"/> into a per-thread buffer, then runs rows [start, end).
    /// Threads splitting one matrix should prepare a <see cref="TernaryActivations"/> once and share it.
    /// </summary>
    public static void Compute(ReadOnlySpan<byte> weights, int cols, ReadOnlySpan<sbyte> x, Span<int> y, int start, int end)
    {
        var a = _scratch ??= new TernaryActivations();
        a.Prepare(x, cols);
        Compute(Isa.Current, weights, cols, a, y, start, end);
    }

    /// <summary>y[r] = sum_i w[r, i] * x[i] for rows [start, end) of a kernel-layout matrix, token 0 of <paramref name="x"/>.</summary>
    public static void Compute(ReadOnlySpan<byte> weights, int cols, TernaryActivations x, Span<int> y, int start, int end)
        => Compute(Isa.Current, weights, cols, x, y, start, end);

    /// <summary>The same on an explicit instruction set (tests, benchmarks); an unsupported one throws.</summary>
    public static void Compute(KernelIsa isa, ReadOnlySpan<byte> weights, int cols, TernaryActivations x, Span<int> y, int start, int end)
    {
        int stride = RowStride(cols);
        if (x.Cols != cols || x.Count < 1) throw new ArgumentException($"activations were prepared for {x.Cols} columns, the matrix has {cols}");
        CheckRows(weights.Length, stride, y.Length, start, end);
        if (start == end) return;
        Isa.Require(isa);
        fixed (byte* w = weights)
        fixed (sbyte* xs = &x.StreamStart)
        fixed (int* py = y)
        {
            int sum = x.SumArray[0];
            switch (isa)
            {
                case KernelIsa.Scalar: RowsScalar(w, stride, xs, sum, py, start, end); break;
                case KernelIsa.Avx2: RowsAvx2(w, stride, xs, sum, py, start, end); break;
                case KernelIsa.AvxVnni: RowsAvxVnni(w, stride, xs, sum, py, start, end); break;
                case KernelIsa.Avx512: RowsAvx512(w, stride, xs, sum, py, start, end); break;
                case KernelIsa.Neon: RowsNeon(w, stride, xs, sum, py, start, end); break;
                default: throw new ArgumentOutOfRangeException(nameof(isa));
            }
        }
    }

    internal static void CheckRows(int length, int rowBytes, int yLength, int start, int end)
    {
        if (start < 0 || end < start) throw new ArgumentOutOfRangeException(nameof(start), $"bad row range [{start}, {end})");
        if ((long)end * rowBytes > length) throw new ArgumentException($"the matrix has {length} bytes, rows up to {end} of {rowBytes} bytes need {(long)end * rowBytes}");
        if (yLength < end) throw new ArgumentException($"y has {yLength} entries, rows up to {end} need {end}");
    }
}
