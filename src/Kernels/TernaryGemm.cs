namespace BitMoe.Kernels;

/// <summary>
/// Batched form of <see cref="TernaryGemv"/>: packed ternary rows (kernel layout) x B int8 activation vectors
/// -> int32, y[t * rows + r] = sum_i w[r, i] * x_t[i], for rows [start, end) so threads can split the work.
/// The weights are read once per block of rows while every token sweeps them: rows are taken in blocks that
/// fit L1 (<see cref="RowBlockBytes"/>), tokens in tiles of <see cref="TokenTile"/> that share each code
/// extraction (one load + shifts/masks feeding four tokens' dot instructions); leftover tokens (B mod 4) run
/// the single-token row kernels on the same row block. Bit for bit equal to B calls of the scalar gemv.
/// </summary>
public static unsafe partial class TernaryGemm
{
    public const int TokenTile = 4;

    /// <summary>Bytes of packed weights per row block (kept in L1 while the tokens sweep it).</summary>
    public const int RowBlockBytes = 16 * 1024;

    public static void Compute(ReadOnlySpan<byte> weights, int rows, int cols, TernaryActivations x, Span<int> y, int start, int end)
        => Compute(Isa.CurrentGemm, weights, rows, cols, x, y, start, end);

    /// <summary>
    /// y[t * rows + r] for every token t of <paramref name="x"/> and rows [start, end) of a [rows, cols]
    /// kernel-layout matrix, on an explicit instruction set (an unsupported one throws).
    /// </summary>
    public static void Compute(KernelIsa isa, ReadOnlySpan<byte> weights, int rows, int cols, TernaryActivations x, Span<int> y, int start, int end)
    {
        int stride = TernaryGemv.RowStride(cols);
        if (x.Cols != cols) throw new ArgumentException($"activations were prepared for {x.Cols} columns, the matrix has {cols}");
        if (end > rows) throw new ArgumentOutOfRangeException(nameof(end), $"row range [{start}, {end}) is outside {rows} rows");
        TernaryGemv.CheckRows(weights.Length, stride, int.MaxValue, start, end);
        int count = x.Count;
        if ((long)count * rows > y.Length) throw new ArgumentException($"y has {y.Length} entries, {count} tokens x {rows} rows need {(long)count * rows}");
        if (start == end || count == 0) return;
        Isa.Require(isa);
        int block = Math.Max(1, RowBlockBytes / Math.Max(stride, 1));
        long tokenBytes = 4L * stride;
        fixed (byte* w = weights)
        fixed (sbyte* xs = &x.StreamStart)
        fixed (int* sums = x.SumArray)
        fixed (int* py = y)
        {
            for (int r0 = start; r0 < end; r0 += block)
            {
                int r1 = Math.Min(end, r0 + block);
                int t = 0;
                for (; t + TokenTile <= count; t += TokenTile)
                {
                    sbyte* xt = xs + t * tokenBytes;
                    int* yt = py + (long)t * rows;
                    switch (isa)
                    {
                        case KernelIsa.Scalar: Rows4Scalar(w, stride, xt, sums + t, yt, rows, r0, r1); break;
                        case KernelIsa.Avx2: Rows4Avx2(w, stride, xt, sums + t, yt, rows, r0, r1); break;
                        case KernelIsa.AvxVnni: Rows4AvxVnni(w, stride, xt, sums + t, yt, rows, r0, r1); break;
                        case KernelIsa.Avx512: Rows4Avx512(w, stride, xt, sums + t, yt, rows, r0, r1); break;
                        case KernelIsa.Neon: Rows4Neon(w, stride, xt, sums + t, yt, rows, r0, r1); break;
                        default: throw new ArgumentOutOfRangeException(nameof(isa));
                    }
                }
                for (; t < count; t++)
                {
                    sbyte* xt = xs + t * tokenBytes;
                    int* yt = py + (long)t * rows;
                    switch (isa)
                    {
                        case KernelIsa.Scalar: TernaryGemv.RowsScalar(w, stride, xt, sums[t], yt, r0, r1); break;
                        case KernelIsa.Avx2: TernaryGemv.RowsAvx2(w, stride, xt, sums[t], yt, r0, r1); break;
                        case KernelIsa.AvxVnni: TernaryGemv.RowsAvxVnni(w, stride, xt, sums[t], yt, r0, r1); break;
                        case KernelIsa.Avx512: TernaryGemv.RowsAvx512(w, stride, xt, sums[t], yt, r0, r1); break;
                        case KernelIsa.Neon: TernaryGemv.RowsNeon(w, stride, xt, sums[t], yt, r0, r1); break;
                        default: throw new ArgumentOutOfRangeException(nameof(isa));
                    }
                }
            }
        }
    }
}
