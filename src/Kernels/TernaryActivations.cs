using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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
public sealed unsafe class TernaryActivations
{
    // pinned, and used from a 64-byte boundary (_offset) so that the kernels' vector loads never straddle cache lines
    private sbyte[] _streams = GC.AllocateArray<sbyte>(64, pinned: true);
    private int _offset;
    private int[] _sums = [];

    /// <summary>Weights per row this was prepared for.</summary>
    public int Cols { get; private set; }

    /// <summary>Length of one stream in bytes = bytes of one packed row = <see cref="TernaryGemv.RowStride"/>(Cols).</summary>
    public int Stride { get; private set; }

    /// <summary>Number of tokens (activation vectors).</summary>
    public int Count { get; private set; }

    /// <summary>The four streams of every token: token t, stream n, position j at [(4t + n) * Stride + j].</summary>
    public ReadOnlySpan<sbyte> Streams => _streams.AsSpan(_offset, 4 * Stride * Count);

    /// <summary>sum_i x_i of every token.</summary>
    public ReadOnlySpan<int> Sums => _sums.AsSpan(0, Count);

    /// <summary>The first byte of token 0's stream 0 (64-byte aligned, pinned).</summary>
    internal ref sbyte StreamStart => ref _streams[_offset];
    internal int[] SumArray => _sums;

    public TernaryActivations() { }

    public TernaryActivations(ReadOnlySpan<sbyte> x, int cols, int count = 1) => Prepare(x, cols, count);

    /// <summary>
    /// Rearranges <paramref name="count"/> activation vectors of <paramref name="cols"/> values each
    /// (row-major in <paramref name="x"/>: token t at x[t*cols .. (t+1)*cols)). Reuses its buffers.
    /// </summary>
    public void Prepare(ReadOnlySpan<sbyte> x, int cols, int count = 1)
    {
        if (x.Length < (long)cols * count) throw new ArgumentException($"x has {x.Length} values, {count} tokens of {cols} need {(long)cols * count}");
        Reset(cols, count);
        for (int t = 0; t < count; t++) PrepareToken(t, x.Slice(t * cols, cols));
    }

    /// <summary>
    /// Sizes the buffers for <paramref name="count"/> tokens of <paramref name="cols"/> values; then
    /// <see cref="PrepareToken"/> fills each token (threads may fill different tokens at once).
    /// </summary>
    public void Reset(int cols, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        int stride = TernaryGemv.RowStride(cols);
        int need = 4 * stride * count;
        if (_streams.Length - _offset < need)
        {
            _streams = GC.AllocateArray<sbyte>(need + 64, pinned: true);
            _offset = (int)((64 - ((nint)Unsafe.AsPointer(ref _streams[0]) & 63)) & 63);
        }
        if (_sums.Length < count) _sums = new int[Math.Max(count, 1)];
        Cols = cols;
        Stride = stride;
        Count = count;
    }

    /// <summary>Lays out token <paramref name="t"/> (its <see cref="Cols"/> values in <paramref name="xt"/>).</summary>
    public void PrepareToken(int t, ReadOnlySpan<sbyte> xt)
    {
        int cols = Cols, stride = Stride;
        if ((uint)t >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(t), $"token {t} of {Count}");
        if (xt.Length < cols) throw new ArgumentException($"token {t} has {xt.Length} values, expected {cols}");
        var s = _streams.AsSpan(_offset + 4 * stride * t, 4 * stride);
        s.Clear();
        int i = 0, sum = 0;
        if (Avx512Vbmi.IsSupported) i = SplitAvx512(xt[..cols], s, stride, out sum);
        for (; i < cols; i++)
        {
            s[(i & 3) * stride + (i >> 2)] = xt[i];
            sum += xt[i];
        }
        _sums[t] = sum;
    }

    // out[16n + k] = in[4k + n]: 64 activations to 16 of each stream
    private static readonly Vector512<byte> SplitIndex = Vector512.Create(
        (byte)0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60,
        1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 53, 57, 61,
        2, 6, 10, 14, 18, 22, 26, 30, 34, 38, 42, 46, 50, 54, 58, 62,
        3, 7, 11, 15, 19, 23, 27, 31, 35, 39, 43, 47, 51, 55, 59, 63);

    /// <summary>
    /// The streams of whole 64-value blocks with one byte permutation each (vpermb), and their sum (vpsadbw on the
    /// values offset by 128). Returns how many values it did; the caller finishes the rest.
    /// </summary>
    private static unsafe int SplitAvx512(ReadOnlySpan<sbyte> x, Span<sbyte> streams, int stride, out int sum)
    {
        int n = x.Length / 64 * 64;
        var total = Vector512<ulong>.Zero;
        var bias = Vector512.Create((byte)0x80);
        fixed (sbyte* px = x, ps = streams)
        {
            for (int i = 0; i < n; i += 64)
            {
                var v = Vector512.Load((byte*)px + i);
                var p = Avx512Vbmi.PermuteVar64x8(v, SplitIndex);
                int j = i >> 2;
                p.GetLower().GetLower().Store((byte*)ps + j);
                p.GetLower().GetUpper().Store((byte*)ps + stride + j);
                p.GetUpper().GetLower().Store((byte*)ps + 2 * stride + j);
                p.GetUpper().GetUpper().Store((byte*)ps + 3 * stride + j);
                total += Avx512BW.SumAbsoluteDifferences(v ^ bias, Vector512<byte>.Zero).AsUInt64();
            }
        }
        sum = (int)((long)Vector512.Sum(total) - 128L * n);
        return n;
    }
}
