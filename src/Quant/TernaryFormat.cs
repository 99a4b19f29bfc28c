using BitMoe.Quant.Formats;

namespace BitMoe.Quant;

/// <summary>The two packed ternary file layouts (docs/ternary-layouts.md).</summary>
public enum TernaryFormat
{
    /// <summary>2 bits per weight, llama.cpp's block_tq2_0.</summary>
    Tq2,
    /// <summary>5 trits per byte, about 1.69 bits per weight, llama.cpp's block_tq1_0.</summary>
    Tq1,
}

/// <summary>
/// How ternary tensors appear in a GGUF file: llama.cpp's TQ2_0 / TQ1_0 types when every row is a
/// whole number of 256-weight blocks, and BitMoe's own type ids for rows with a short tail block
/// (llama.cpp cannot read those, and never sees them: such tensors only occur in mhmoe files).
/// </summary>
public static class TernaryGguf
{
    public const uint Tq2RowsTypeId = 1000;
    public const uint Tq1RowsTypeId = 1001;

    /// <summary>The default ggml type table plus BitMoe's row-padded ternary types.</summary>
    public static GgmlTypeTable Types { get; } = GgmlTypeTable.Default
        .With(Tq2RowsTypeId, "bitmoe_tq2_rows", dims => RowBytes(TernaryFormat.Tq2, checked((int)dims[0])) * Rows(dims))
        .With(Tq1RowsTypeId, "bitmoe_tq1_rows", dims => RowBytes(TernaryFormat.Tq1, checked((int)dims[0])) * Rows(dims));

    private static long Rows(long[] dims) => dims.Skip(1).Aggregate(1L, (a, b) => a * b);

    public static int RowBytes(TernaryFormat format, int cols) =>
        format == TernaryFormat.Tq2 ? Tq2Layout.RowBytes(cols) : Tq1Layout.RowBytes(cols);

    public static void PackRow(TernaryFormat format, ReadOnlySpan<sbyte> row, float d, Span<byte> dst)
    {
        if (format == TernaryFormat.Tq2) Tq2Layout.Pack(row, d, dst);
        else Tq1Layout.Pack(row, d, dst);
    }

    public static void UnpackRow(TernaryFormat format, ReadOnlySpan<byte> src, Span<sbyte> row)
    {
        if (format == TernaryFormat.Tq2) Tq2Layout.Unpack(src, row);
        else Tq1Layout.Unpack(src, row);
    }

    /// <summary>The GGUF type id for a tensor of rows of <paramref name="cols"/> weights.</summary>
    public static uint TypeId(TernaryFormat format, int cols) => cols % 256 == 0
        ? (uint)(format == TernaryFormat.Tq2 ? GgmlType.TQ2_0 : GgmlType.TQ1_0)
        : format == TernaryFormat.Tq2 ? Tq2RowsTypeId : Tq1RowsTypeId;

    public static bool TryFormat(uint typeId, out TernaryFormat format)
    {
        switch (typeId)
        {
            case (uint)GgmlType.TQ2_0 or Tq2RowsTypeId: format = TernaryFormat.Tq2; return true;
            case (uint)GgmlType.TQ1_0 or Tq1RowsTypeId: format = TernaryFormat.Tq1; return true;
            default: format = default; return false;
        }
    }

    public static TernaryFormat Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "tq2_0" or "tq2" => TernaryFormat.Tq2,
        "tq1_0" or "tq1" => TernaryFormat.Tq1,
        _ => throw new BitMoeException($"unknown ternary type '{text}' (expected tq2_0 or tq1_0)"),
    };

    public static string Name(TernaryFormat f) => f == TernaryFormat.Tq2 ? "tq2_0" : "tq1_0";
}
