namespace BitMoe.Kernels;

/// <summary>
/// int8 activations rearranged once per token for the packed ternary kernels (<see cref="TernaryGemv"/>,
/// <see cref="TernaryGemm"/>). Byte j of a packed row holds weights 4j..4j+3 at bits 0, 2, 4, 6, so after
/// shifting a vector of code bytes by 2n and masking, its lanes need activations x[4j + n]: stream n holds
/// exactly those, x[4j + n] at position j, zero past the row. Four contiguous streams per token let every ISA
/// load activations with plain vector loads. Also keeps sum(x), which undoes the +1 of the unsigned codes:
/// sum_i (c_i - 1) x_i = sum_i c_i x_i - sum_i x_i.
/// Prepare once per token (O(cols)); any number of threads may then read it while splitting rows.
/// </summary>
public sealed class TernaryActivations
{
    private sbyte[] _streams = [];
    private int[] _sums = [];

    /// <summary>Weights per row this was prepared for.</summary>
    public int Cols { get; private set; }

    /// <summary>Length of one stream in bytes = bytes of one packed row = <see cref="TernaryGemv.RowStride"/>(Cols).</summary>
    public int Stride { get; private set; }

    /// <summary>Number of tokens (activation vectors).</summary>
    public int Count { get; private set; }

    /// <summary>The four streams of every token: token t, stream n, position j at [(4t + n) * Stride + j].</summary>
    public ReadOnlySpan<sbyte> Streams => _streams.AsSpan(0, 4 * Stride * Count);

    /// <summary>sum_i x_i of every token.</summary>
    public ReadOnlySpan<int> Sums => _sums.AsSpan(0, Count);

    internal sbyte[] StreamArray => _streams;
    internal int[] SumArray => _sums;

    public TernaryActivations() { }

    public TernaryActivations(ReadOnlySpan<sbyte> x, int cols, int count = 1) => Prepare(x, cols, count);

    /// <summary>
    /// Rearranges <paramref name="count"/> activation vectors of <paramref name="cols"/> values each
    /// (row-major in <paramref name="x"/>: token t at x[t*cols .. (t+1)*cols)). Reuses its buffers.
    /// </summary>
    public void Prepare(ReadOnlySpan<sbyte> x, int cols, int count = 1)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (x.Length < (long)cols * count) throw new ArgumentException($"x has {x.Length} values, {count} tokens of {cols} need {(long)cols * count}");
        int stride = TernaryGemv.RowStride(cols);
        int need = 4 * stride * count;
        if (_streams.Length < need) _streams = new sbyte[need];
        if (_sums.Length < count) _sums = new int[Math.Max(count, 1)];
        Cols = cols;
        Stride = stride;
        Count = count;
        for (int t = 0; t < count; t++)
        {
            var xt = x.Slice(t * cols, cols);
            var s = _streams.AsSpan(4 * stride * t, 4 * stride);
            s.Clear();
            int sum = 0;
            for (int i = 0; i < cols; i++)
            {
                s[(i & 3) * stride + (i >> 2)] = xt[i];
                sum += xt[i];
            }
            _sums[t] = sum;
        }
    }
}
