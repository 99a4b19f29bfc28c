using BitMoe.Kernels;

namespace BitMoe.Quant;

/// <summary>
/// Load-time conversion of ternary matrices into the kernels' in-memory layout
/// (<see cref="TernaryGemv.RowStride"/> bytes per row; see docs/ternary-layouts.md). The block scales of the
/// file layouts are not carried: the kernels return integer dots and the caller applies the tensor's scale.
/// </summary>
public static class TqRepack
{
    /// <summary>From one sbyte per weight ([rows, cols] row-major, values in {-1, 0, 1}).</summary>
    public static byte[] FromTernary(ReadOnlySpan<sbyte> w, int rows, int cols)
    {
        var dst = new byte[(long)rows * TernaryGemv.RowStride(cols)];
        FromTernary(w, rows, cols, dst);
        return dst;
    }

    /// <summary>The same into <paramref name="dst"/> (rows * <see cref="TernaryGemv.RowStride"/>(cols) bytes).</summary>
    public static void FromTernary(ReadOnlySpan<sbyte> w, int rows, int cols, Span<byte> dst)
    {
        CheckShape(w.Length, rows, cols, cols, "ternary values");
        int stride = TernaryGemv.RowStride(cols);
        if (dst.Length < (long)rows * stride) throw new ArgumentException($"dst has {dst.Length} bytes, a [{rows}, {cols}] matrix needs {(long)rows * stride}");
        for (int r = 0; r < rows; r++) TernaryGemv.PackRow(w.Slice(r * cols, cols), dst.Slice(r * stride, stride));
    }

    /// <summary>From tq2_0 rows (<see cref="Tq2Layout.RowBytes"/> bytes each).</summary>
    public static byte[] FromTq2(ReadOnlySpan<byte> packed, int rows, int cols)
        => FromFile(packed, rows, cols, Tq2Layout.RowBytes(cols), static (src, row) => Tq2Layout.Unpack(src, row), "tq2_0");

    /// <summary>From tq1_0 rows (<see cref="Tq1Layout.RowBytes"/> bytes each).</summary>
    public static byte[] FromTq1(ReadOnlySpan<byte> packed, int rows, int cols)
        => FromFile(packed, rows, cols, Tq1Layout.RowBytes(cols), static (src, row) => Tq1Layout.Unpack(src, row), "tq1_0");

    private delegate void Unpacker(ReadOnlySpan<byte> src, Span<sbyte> row);

    private static byte[] FromFile(ReadOnlySpan<byte> packed, int rows, int cols, int rowBytes, Unpacker unpack, string what)
    {
        CheckShape(packed.Length, rows, cols, rowBytes, what);
        int stride = TernaryGemv.RowStride(cols);
        var dst = new byte[(long)rows * stride];
        var row = new sbyte[cols];
        for (int r = 0; r < rows; r++)
        {
            unpack(packed.Slice(r * rowBytes, rowBytes), row);
            TernaryGemv.PackRow(row, dst.AsSpan(r * stride, stride));
        }
        return dst;
    }

    private static void CheckShape(long length, int rows, int cols, int rowBytes, string what)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        if (length < (long)rows * rowBytes)
            throw new ArgumentException($"{what}: {length} bytes, a [{rows}, {cols}] matrix needs {(long)rows * rowBytes}");
    }
}
