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
        fixed (byte* w = weights)
            for (int r0 = start; r0 < end; r0 += block)
                Block(isa, w, stride, rows, x, y, r0, Math.Min(end, r0 + block));
    }

    /// <summary>
    /// The same for a matrix in <see cref="Base3Layout"/>: each block of rows is rewritten in the 2-bit kernel layout
    /// (<see cref="Base3Layout.ToKernelLayout"/>) into a per-thread buffer, then computed as above, so the results are the
    /// same bit for bit. The rewrite costs a fraction of a token's work on the block, and a batch has many tokens.
    /// </summary>
    public static void ComputeBase3(KernelIsa isa, ReadOnlySpan<byte> weights, int rows, int cols, TernaryActivations x, Span<int> y, int start, int end)
    {
        int stride3 = Base3Layout.RowStride(cols), stride = TernaryGemv.RowStride(cols);
        if (x.Cols != cols) throw new ArgumentException($"activations were prepared for {x.Cols} columns, the matrix has {cols}");
        if (end > rows) throw new ArgumentOutOfRangeException(nameof(end), $"row range [{start}, {end}) is outside {rows} rows");
        TernaryGemv.CheckRows(weights.Length, stride3, int.MaxValue, start, end);
        if ((long)x.Count * rows > y.Length) throw new ArgumentException($"y has {y.Length} entries, {x.Count} tokens x {rows} rows need {(long)x.Count * rows}");
        if (start == end || x.Count == 0) return;
        Isa.Require(isa);
        int block = Math.Max(1, RowBlockBytes / Math.Max(stride, 1));
        var buffer = _blockBuffer ??= GC.AllocateArray<byte>(RowBlockBytes + 64 * 1024, pinned: true);
        if (buffer.Length < (long)block * stride) buffer = _blockBuffer = GC.AllocateArray<byte>(block * stride, pinned: true);
        fixed (byte* w = weights)
        fixed (byte* b = buffer)
            for (int r0 = start; r0 < end; r0 += block)
            {
                int r1 = Math.Min(end, r0 + block);
                Base3Layout.ToKernelLayout(w, cols, r0, r1, b);
                Block(isa, b - (long)r0 * stride, stride, rows, x, y, r0, r1); // row r of the block at b + (r - r0) * stride
            }
    }

    [ThreadStatic] private static byte[]? _blockBuffer;

    /// <summary>Rows [r0, r1) (row r at w + r * stride) for every token: tiles of four tokens, then the rest one by one.</summary>
    private static void Block(KernelIsa isa, byte* w, int stride, int rows, TernaryActivations x, Span<int> y, int r0, int r1)
    {
        int count = x.Count;
        long tokenBytes = 4L * stride;
        fixed (sbyte* xs = &x.StreamStart)
        fixed (int* sums = x.SumArray)
        fixed (int* py = y)
        {
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
