using System.Runtime.CompilerServices;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace BitMoe.Kernels;

/// <summary>
/// y[r] = dot(W[r, :], x) for row-major F32 / F16 / BF16 weights that live in a memory map.
/// F32 rows go to TensorPrimitives.Dot; F16/BF16 rows to <see cref="FloatDot"/>, which widens them in registers,
/// so the file is never copied.
/// </summary>
public static unsafe class FloatGemv
{
    [ThreadStatic] private static float[]? _rowScratch;

    public static void Compute(void* weights, DType type, int rows, int cols, ReadOnlySpan<float> x, Span<float> y)
    {
        if (x.Length < cols || y.Length < rows) throw new ArgumentException("x or y too short for the matrix");
        ComputeRows(weights, type, cols, x, y, 0, rows);
    }

    /// <summary>Rows [start, end) only: the unit of work a thread takes.</summary>
    public static void ComputeRows(void* weights, DType type, int cols, ReadOnlySpan<float> x, Span<float> y, int start, int end)
    {
        x = x[..cols];
        switch (type)
        {
            case DType.F32:
                for (int r = start; r < end; r++)
                    y[r] = TensorPrimitives.Dot(new ReadOnlySpan<float>((float*)weights + (long)r * cols, cols), x);
                break;
            case DType.F16:
            {
                float* px = AlignedCopy(x);
                if (FloatDot.TryScaleForF16(new Span<float>(px, cols)))
                    for (int r = start; r < end; r++)
                        y[r] = FloatDot.F16Scaled((Half*)weights + (long)r * cols, px, cols);
                else
                    for (int r = start; r < end; r++)
                        y[r] = FloatDot.F16((Half*)weights + (long)r * cols, px, cols);
                break;
            }
            case DType.BF16:
            {
                float* px = AlignedCopy(x);
                for (int r = start; r < end; r++)
                    y[r] = FloatDot.BF16((ushort*)weights + (long)r * cols, px, cols);
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(type));
        }
    }

    /// <summary>Bytes of weight rows widened at a time by <see cref="ComputeRowsBatch"/> (kept in L1 while the vectors sweep them).</summary>
    public const int RowBlockBytes = 16 * 1024;

    /// <summary>
    /// Rows [start, end) of a [rows, cols] matrix times <paramref name="count"/> vectors: x is [count, cols], y is
    /// [count, rows] (vector t's result at y[t * rows + r]). The weights are read (and widened) once per batch, in
    /// blocks of rows that every vector sweeps; each dot is the one <see cref="ComputeRows"/> computes, so the
    /// results equal <paramref name="count"/> single-vector calls bit for bit.
    /// </summary>
    public static void ComputeRowsBatch(void* weights, DType type, int rows, int cols, ReadOnlySpan<float> x, int count, Span<float> y,
        int start, int end)
    {
        if (x.Length < (long)count * cols || y.Length < (long)count * rows || start < 0 || end > rows)
            throw new ArgumentException("x, y or the row range do not fit the matrix");
        int block = Math.Max(1, RowBlockBytes / Math.Max(1, cols * sizeof(float)));
        var widened = type == DType.F32 ? default : Scratch(block * cols);
        for (int r0 = start; r0 < end; r0 += block)
        {
            int n = Math.Min(block, end - r0);
            ReadOnlySpan<float> w;
            if (type == DType.F32) w = new ReadOnlySpan<float>((float*)weights + (long)r0 * cols, n * cols);
            else
            {
                ToSingle(weights, type, (long)r0 * cols, widened[..(n * cols)]);
                w = widened[..(n * cols)];
            }
            for (int t = 0; t < count; t++)
            {
                var xt = x.Slice(t * cols, cols);
                var yt = y.Slice(t * rows + r0, n);
                if (type == DType.F32)
                    for (int i = 0; i < n; i++) yt[i] = TensorPrimitives.Dot(w.Slice(i * cols, cols), xt);
                else
                    // the widened halves take FloatDot's order, which the single-vector path uses on the halves themselves
                    fixed (float* pw = w, px = xt)
                        for (int i = 0; i < n; i++) yt[i] = FloatDot.F32(pw + (long)i * cols, px, cols);
            }
        }
    }

    /// <summary>Widens one row (or any run of elements) to float32.</summary>
    public static void ToSingle(void* src, DType type, long offset, Span<float> dst)
    {
        switch (type)
        {
            case DType.F32: new ReadOnlySpan<float>((float*)src + offset, dst.Length).CopyTo(dst); break;
            case DType.F16: TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>((Half*)src + offset, dst.Length), dst); break;
            case DType.BF16: Bf16.ToSingle(new ReadOnlySpan<ushort>((ushort*)src + offset, dst.Length), dst); break;
            default: throw new ArgumentOutOfRangeException(nameof(type));
        }
    }

    [ThreadStatic] private static float[]? _alignedArray;

    /// <summary>
    /// x copied into per-thread pinned memory at a 64-byte boundary: a 64-byte load of x then never straddles two cache
    /// lines (measured: the F16 lm_head of the bitnet-large shape 4% faster). Both half types use it.
    /// </summary>
    private static float* AlignedCopy(ReadOnlySpan<float> x)
    {
        var a = _alignedArray;
        if (a == null || a.Length < x.Length + 16) _alignedArray = a = GC.AllocateArray<float>(Math.Max(x.Length, 1024) + 16, pinned: true);
        float* p = (float*)Unsafe.AsPointer(ref a[0]);
        p += (16 - (int)((nint)p / sizeof(float) & 15)) & 15;
        x.CopyTo(new Span<float>(p, x.Length));
        return p;
    }

    private static Span<float> Scratch(int cols)
    {
        var s = _rowScratch;
        if (s == null || s.Length < cols) _rowScratch = s = new float[Math.Max(cols, 1024)];
        return s.AsSpan(0, cols);
    }
}

/// <summary>bfloat16 is the upper half of a float32: widening is a 16-bit shift.</summary>
public static class Bf16
{
    public static void ToSingle(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        var bits = MemoryMarshal.Cast<float, uint>(dst);
        for (int i = 0; i < src.Length; i++) bits[i] = (uint)src[i] << 16;
    }

    /// <summary>Round to nearest even, as torch's float32 -> bfloat16 conversion does.</summary>
    public static ushort FromSingle(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if (float.IsNaN(f)) return (ushort)((u >> 16) | 0x40);
        uint rounding = 0x7FFF + ((u >> 16) & 1);
        return (ushort)((u + rounding) >> 16);
    }
}
