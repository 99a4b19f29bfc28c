using BitMoe.Kernels;
using BitMoe.Quant;

namespace BitMoe.Engine.Weights;

/// <summary>
/// A [rows, cols] ternary matrix packed in a file layout (tq2_0 or tq1_0 rows) inside a memory map,
/// with its float32 tensor scale s_w. <see cref="RowOrder"/>, when set, says which stored row holds
/// each logical row (llama.cpp permutes the rows of q_proj and k_proj).
/// </summary>
public sealed unsafe class TernaryTensor
{
    public required string Name { get; init; }
    public required string File { get; init; }
    public required TernaryFormat Format { get; init; }
    public required int Rows { get; init; }
    public required int Cols { get; init; }
    public required byte* Data { get; init; }
    /// <summary>s_w: the quantized weight is Wq / s_w.</summary>
    public required float Scale { get; init; }
    public int[]? RowOrder { get; init; }

    public int RowBytes => TernaryGguf.RowBytes(Format, Cols);

    private ReadOnlySpan<byte> StoredRow(int row) =>
        new(Data + (long)(RowOrder?[row] ?? row) * RowBytes, RowBytes);

    /// <summary>One sbyte per weight, for the fake-quant path.</summary>
    public sbyte[] ToValues()
    {
        var values = new sbyte[(long)Rows * Cols];
        for (int r = 0; r < Rows; r++) TernaryGguf.UnpackRow(Format, StoredRow(r), values.AsSpan(r * Cols, Cols));
        return values;
    }

    /// <summary>Bytes of the kernels' in-memory layout: Rows * <see cref="TernaryGemv.RowStride"/>(Cols).</summary>
    public long KernelLayoutBytes => (long)Rows * TernaryGemv.RowStride(Cols);

    /// <summary>The kernels' in-memory layout (<see cref="TernaryGemv.RowStride"/> bytes per row) written into <paramref name="dst"/> (<see cref="KernelLayoutBytes"/> bytes).</summary>
    public void ToKernelLayout(Span<byte> dst)
    {
        int stride = TernaryGemv.RowStride(Cols);
        if (dst.Length < KernelLayoutBytes) throw new ArgumentException($"dst has {dst.Length} bytes, '{Name}' needs {KernelLayoutBytes}");
        var row = new sbyte[Cols];
        for (int r = 0; r < Rows; r++)
        {
            TernaryGguf.UnpackRow(Format, StoredRow(r), row);
            TernaryGemv.PackRow(row, dst.Slice(r * stride, stride));
        }
    }
}
