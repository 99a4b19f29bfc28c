using BitMoe.Kernels;
using BitMoe.Quant;

namespace BitMoe.Engine.Weights;

/// <summary>A ternary matrix in the kernels' layout, in native memory owned by the model's <see cref="HugePageArena"/> (kept alive here).</summary>
internal sealed unsafe class PackedMatrix(HugePageArena arena, byte* data, int length)
{
    private readonly HugePageArena _arena = arena;

    public int Length { get; } = length;
    public ReadOnlySpan<byte> Span => new(data, Length);

    public static PackedMatrix From(HugePageArena arena, TernaryTensor stored)
    {
        var m = Allocate(arena, stored.KernelLayoutBytes, stored.Name);
        stored.ToKernelLayout(new Span<byte>(m.Data, m.Length));
        return m;
    }

    public static PackedMatrix From(HugePageArena arena, ReadOnlySpan<sbyte> values, int rows, int cols)
    {
        var m = Allocate(arena, (long)rows * TernaryGemv.RowStride(cols), "a ternary matrix");
        TqRepack.FromTernary(values, rows, cols, new Span<byte>(m.Data, m.Length));
        return m;
    }

    private byte* Data => data;

    private static PackedMatrix Allocate(HugePageArena arena, long bytes, string what)
    {
        if (bytes > int.MaxValue) throw new BitMoeException($"{what}: {bytes} bytes in the kernel layout; at most {int.MaxValue} per matrix");
        return new PackedMatrix(arena, arena.Allocate(bytes), (int)bytes);
    }
}
