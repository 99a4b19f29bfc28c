using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BitMoe.Kernels;

/// <summary>
/// Products of one vector with a run of rows that sit <c>stride</c> floats apart (one head's slice of
/// every cached key or value): the two loops of attention. Row t starts at rows + t * stride.
/// </summary>
public static unsafe class StridedRows
{
    /// <summary>y[t] = scale * dot(rows[t][0..n), x) for t &lt; count (each dot as <see cref="FloatDot.F32"/> sums it).</summary>
    public static void Dots(float* rows, int stride, int count, float* x, int n, float scale, float* y, bool prefetch = false)
        => Dots<F32Loader, float>((byte*)rows, stride, count, x, n, scale, y, prefetch);

    /// <summary>
    /// The same over F16 rows (an F16 KV cache): each row widened in registers, so the result equals
    /// <see cref="Dots(float*, int, int, float*, int, float, float*, bool)"/> on the rows widened to F32, bit for bit.
    /// The rows must be finite (the cache clamps what it stores).
    /// </summary>
    public static void Dots(Half* rows, int stride, int count, float* x, int n, float scale, float* y, bool prefetch = false)
        => Dots<F16Loader, ushort>((byte*)rows, stride, count, x, n, scale, y, prefetch);

    private static void Dots<TLoad, TElement>(byte* rows, int stride, int count, float* x, int n, float scale, float* y, bool prefetch)
        where TLoad : struct, ILoader
        where TElement : unmanaged
    {
        // the paths FloatDot.F32 itself would take for this n, with its per-call set-up hoisted out of the row loop
        if (Vector512.IsHardwareAccelerated)
        {
            if (n is 64 or 96 or 128)
            {
                DotsHeadDim512<TLoad, TElement>(rows, stride, count, x, n, scale, y, prefetch);
                return;
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            if (n >= 32 && n % 32 == 0)
            {
                DotsBlocks256<TLoad, TElement>(rows, stride, count, x, n, scale, y);
                return;
            }
        }
        else if (Vector128.IsHardwareAccelerated && n >= 16 && n % 16 == 0)
        {
            DotsBlocks128<TLoad, TElement>(rows, stride, count, x, n, scale, y);
            return;
        }
        long rowBytes = (long)stride * sizeof(TElement);
        for (int t = 0; t < count; t++) y[t] = FloatDot.Dot<TLoad, TElement>(rows + t * rowBytes, x, n) * scale;
    }

    /// <summary>Rows ahead of the one read that <see cref="PrefetchAhead"/> asks for.</summary>
    private const int PrefetchRows = 8;

    /// <summary>Rows at the start of a run that prefetch; further on the hardware prefetcher is ahead.</summary>
    private const int PrefetchSpan = 128;

    /// <summary>
    /// With <c>prefetch</c> (decoding: one token reads each head's cached keys, then its values, as runs of a few
    /// KiB at a short context), the first <see cref="PrefetchSpan"/> rows of a run each ask for the row
    /// <see cref="PrefetchRows"/> ahead, which the hardware prefetcher reaches late on such short runs. Timed per
    /// attention call, alternating at random (docs/performance.md, change 21): bitnet-large tg128 0.81-0.85 of the
    /// time, mixtral-small 0.94-0.95; prefetching every row of a long run made a depth of 1024 7-27% slower, these
    /// 128 rows leave it at 0.98-1.01. Only the 512-bit paths (where it was measured) prefetch.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchAhead(byte* row, int t, int count, long rowBytes, int bytes)
    {
        if (!Sse.IsSupported || t >= PrefetchSpan || t + PrefetchRows >= count) return;
        byte* p = row + PrefetchRows * rowBytes;
        for (int b = 0; b < bytes; b += 64) Sse.Prefetch0(p + b);
    }

    /// <summary>
    /// <see cref="Dots"/> on 256-bit vectors for n a multiple of 32: FloatDot.F32's block loop only (four accumulators,
    /// from zero, over blocks of four vectors; no single vectors, no scalar tail), then Sum((a0 + a1) + (a2 + a3)).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotsBlocks256<TLoad, TElement>(byte* rows, int stride, int count, float* x, int n, float scale, float* y)
        where TLoad : struct, ILoader
        where TElement : unmanaged
    {
        int size = sizeof(TElement);
        long rowBytes = (long)stride * size;
        byte* r = rows;
        for (int t = 0; t < count; t++, r += rowBytes)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int i = 0; i < n; i += 32)
            {
                a0 = Vector256.FusedMultiplyAdd(TLoad.Load256(r + i * size), Vector256.Load(x + i), a0);
                a1 = Vector256.FusedMultiplyAdd(TLoad.Load256(r + (i + 8) * size), Vector256.Load(x + i + 8), a1);
                a2 = Vector256.FusedMultiplyAdd(TLoad.Load256(r + (i + 16) * size), Vector256.Load(x + i + 16), a2);
                a3 = Vector256.FusedMultiplyAdd(TLoad.Load256(r + (i + 24) * size), Vector256.Load(x + i + 24), a3);
            }
            y[t] = Vector256.Sum((a0 + a1) + (a2 + a3)) * scale;
        }
    }

    /// <summary><see cref="DotsBlocks256"/> on 128-bit vectors (NEON, SSE-only x86), for n a multiple of 16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotsBlocks128<TLoad, TElement>(byte* rows, int stride, int count, float* x, int n, float scale, float* y)
        where TLoad : struct, ILoader
        where TElement : unmanaged
    {
        int size = sizeof(TElement);
        long rowBytes = (long)stride * size;
        byte* r = rows;
        for (int t = 0; t < count; t++, r += rowBytes)
        {
            Vector128<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int i = 0; i < n; i += 16)
            {
                a0 = Vector128.FusedMultiplyAdd(TLoad.Load128(r + i * size), Vector128.Load(x + i), a0);
                a1 = Vector128.FusedMultiplyAdd(TLoad.Load128(r + (i + 4) * size), Vector128.Load(x + i + 4), a1);
                a2 = Vector128.FusedMultiplyAdd(TLoad.Load128(r + (i + 8) * size), Vector128.Load(x + i + 8), a2);
                a3 = Vector128.FusedMultiplyAdd(TLoad.Load128(r + (i + 12) * size), Vector128.Load(x + i + 12), a3);
            }
            y[t] = Vector128.Sum((a0 + a1) + (a2 + a3)) * scale;
        }
    }

    /// <summary>
    /// <see cref="Dots"/> for the common head sizes 64, 96 and 128 on 512-bit vectors: x stays in registers for every
    /// row instead of being reloaded by a call per row (attention scores are short dots, and at a long context there
    /// are many). Each row takes exactly <see cref="FloatDot.F32"/>'s operations in its order - accumulators a0..a3
    /// over the first 64 columns (from zero), then the next 64 into a0..a3 again (128) or the next two vectors into a0 (96),
    /// then Sum((a0 + a1) + (a2 + a3)) - so the results are the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotsHeadDim512<TLoad, TElement>(byte* rows, int stride, int count, float* x, int n, float scale, float* y, bool prefetch)
        where TLoad : struct, ILoader
        where TElement : unmanaged
    {
        int size = sizeof(TElement);
        long rowBytes = (long)stride * size;
        var x0 = Vector512.Load(x); var x1 = Vector512.Load(x + 16); var x2 = Vector512.Load(x + 32); var x3 = Vector512.Load(x + 48);
        Vector512<float> x4 = default, x5 = default, x6 = default, x7 = default;
        if (n >= 96) { x4 = Vector512.Load(x + 64); x5 = Vector512.Load(x + 80); }
        if (n == 128) { x6 = Vector512.Load(x + 96); x7 = Vector512.Load(x + 112); }
        var zero = Vector512<float>.Zero;
        byte* r = rows;
        for (int t = 0; t < count; t++, r += rowBytes)
        {
            if (prefetch) PrefetchAhead(r, t, count, rowBytes, n * size);
            var a0 = Vector512.FusedMultiplyAdd(TLoad.Load512(r), x0, zero);
            var a1 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 16 * size), x1, zero);
            var a2 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 32 * size), x2, zero);
            var a3 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 48 * size), x3, zero);
            if (n == 96)
            {
                a0 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 64 * size), x4, a0);
                a0 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 80 * size), x5, a0);
            }
            else if (n == 128)
            {
                a0 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 64 * size), x4, a0);
                a1 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 80 * size), x5, a1);
                a2 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 96 * size), x6, a2);
                a3 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 112 * size), x7, a3);
            }
            y[t] = Vector512.Sum((a0 + a1) + (a2 + a3)) * scale;
        }
    }

    /// <summary>
    /// o[i] = sum_t weights[t] * rows[t][i] for i &lt; n. Every element is one chain of fused multiply-adds in
    /// t order, whatever the vector width, so all paths give the same bits as <see cref="WeightedSumScalar"/>.
    /// The accumulators stay in registers across the rows (a block of up to 128 columns at a time). With
    /// <paramref name="accumulate"/> the chains start from o instead of zero, so a run of rows may be done in pieces.
    /// </summary>
    public static void WeightedSum(float* rows, int stride, int count, float* weights, int n, float* o, bool accumulate = false, bool prefetch = false)
        => WeightedSum<F32Loader, float>((byte*)rows, stride, count, weights, n, o, accumulate, prefetch);

    /// <summary>
    /// The same over F16 rows (an F16 KV cache), each widened in registers: equal to the F32 form on the rows widened
    /// to F32, bit for bit, and so to <see cref="WeightedSumScalar(Half*, int, int, float*, float*, int, int, bool)"/>.
    /// </summary>
    public static void WeightedSum(Half* rows, int stride, int count, float* weights, int n, float* o, bool accumulate = false, bool prefetch = false)
        => WeightedSum<F16Loader, ushort>((byte*)rows, stride, count, weights, n, o, accumulate, prefetch);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightedSum<TLoad, TElement>(byte* rows, int stride, int count, float* weights, int n, float* o, bool accumulate, bool prefetch)
        where TLoad : struct, ILoader
        where TElement : unmanaged
    {
        int size = sizeof(TElement);
        long rowBytes = (long)stride * size;
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            // head_dim 128 and 96 in one pass over the rows (8 or 6 accumulators), the rest 64 columns at a time
            for (; i + 128 <= n; i += 128)
            {
                Vector512<float> a0 = accumulate ? Vector512.Load(o + i) : default,
                    a1 = accumulate ? Vector512.Load(o + i + 16) : default,
                    a2 = accumulate ? Vector512.Load(o + i + 32) : default,
                    a3 = accumulate ? Vector512.Load(o + i + 48) : default,
                    a4 = accumulate ? Vector512.Load(o + i + 64) : default,
                    a5 = accumulate ? Vector512.Load(o + i + 80) : default,
                    a6 = accumulate ? Vector512.Load(o + i + 96) : default,
                    a7 = accumulate ? Vector512.Load(o + i + 112) : default;
                byte* r = rows + i * size;
                for (int t = 0; t < count; t++, r += rowBytes)
                {
                    if (prefetch) PrefetchAhead(r, t, count, rowBytes, 128 * size);
                    var p = Vector512.Create(weights[t]);
                    a0 = Vector512.FusedMultiplyAdd(TLoad.Load512(r), p, a0);
                    a1 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 16 * size), p, a1);
                    a2 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 32 * size), p, a2);
                    a3 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 48 * size), p, a3);
                    a4 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 64 * size), p, a4);
                    a5 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 80 * size), p, a5);
                    a6 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 96 * size), p, a6);
                    a7 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 112 * size), p, a7);
                }
                a0.Store(o + i); a1.Store(o + i + 16); a2.Store(o + i + 32); a3.Store(o + i + 48);
                a4.Store(o + i + 64); a5.Store(o + i + 80); a6.Store(o + i + 96); a7.Store(o + i + 112);
            }
            if (i + 96 <= n)
            {
                Vector512<float> a0 = accumulate ? Vector512.Load(o + i) : default,
                    a1 = accumulate ? Vector512.Load(o + i + 16) : default,
                    a2 = accumulate ? Vector512.Load(o + i + 32) : default,
                    a3 = accumulate ? Vector512.Load(o + i + 48) : default,
                    a4 = accumulate ? Vector512.Load(o + i + 64) : default,
                    a5 = accumulate ? Vector512.Load(o + i + 80) : default;
                byte* r = rows + i * size;
                for (int t = 0; t < count; t++, r += rowBytes)
                {
                    if (prefetch) PrefetchAhead(r, t, count, rowBytes, 96 * size);
                    var p = Vector512.Create(weights[t]);
                    a0 = Vector512.FusedMultiplyAdd(TLoad.Load512(r), p, a0);
                    a1 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 16 * size), p, a1);
                    a2 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 32 * size), p, a2);
                    a3 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 48 * size), p, a3);
                    a4 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 64 * size), p, a4);
                    a5 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 80 * size), p, a5);
                }
                a0.Store(o + i); a1.Store(o + i + 16); a2.Store(o + i + 32); a3.Store(o + i + 48);
                a4.Store(o + i + 64); a5.Store(o + i + 80);
                i += 96;
            }
            for (; i + 64 <= n; i += 64)
            {
                Vector512<float> a0 = accumulate ? Vector512.Load(o + i) : default,
                    a1 = accumulate ? Vector512.Load(o + i + 16) : default,
                    a2 = accumulate ? Vector512.Load(o + i + 32) : default,
                    a3 = accumulate ? Vector512.Load(o + i + 48) : default;
                byte* r = rows + i * size;
                for (int t = 0; t < count; t++, r += rowBytes)
                {
                    if (prefetch) PrefetchAhead(r, t, count, rowBytes, 64 * size);
                    var p = Vector512.Create(weights[t]);
                    a0 = Vector512.FusedMultiplyAdd(TLoad.Load512(r), p, a0);
                    a1 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 16 * size), p, a1);
                    a2 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 32 * size), p, a2);
                    a3 = Vector512.FusedMultiplyAdd(TLoad.Load512(r + 48 * size), p, a3);
                }
                a0.Store(o + i); a1.Store(o + i + 16); a2.Store(o + i + 32); a3.Store(o + i + 48);
            }
            for (; i + 16 <= n; i += 16)
            {
                Vector512<float> a0 = accumulate ? Vector512.Load(o + i) : default;
                byte* r = rows + i * size;
                for (int t = 0; t < count; t++, r += rowBytes) a0 = Vector512.FusedMultiplyAdd(TLoad.Load512(r), Vector512.Create(weights[t]), a0);
                a0.Store(o + i);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 32 <= n; i += 32)
            {
                Vector256<float> a0 = accumulate ? Vector256.Load(o + i) : default,
                    a1 = accumulate ? Vector256.Load(o + i + 8) : default,
                    a2 = accumulate ? Vector256.Load(o + i + 16) : default,
                    a3 = accumulate ? Vector256.Load(o + i + 24) : default;
                byte* r = rows + i * size;
                for (int t = 0; t < count; t++, r += rowBytes)
                {
                    var p = Vector256.Create(weights[t]);
                    a0 = Vector256.FusedMultiplyAdd(TLoad.Load256(r), p, a0);
                    a1 = Vector256.FusedMultiplyAdd(TLoad.Load256(r + 8 * size), p, a1);
                    a2 = Vector256.FusedMultiplyAdd(TLoad.Load256(r + 16 * size), p, a2);
                    a3 = Vector256.FusedMultiplyAdd(TLoad.Load256(r + 24 * size), p, a3);
                }
                a0.Store(o + i); a1.Store(o + i + 8); a2.Store(o + i + 16); a3.Store(o + i + 24);
            }
            for (; i + 8 <= n; i += 8)
            {
                Vector256<float> a0 = accumulate ? Vector256.Load(o + i) : default;
                byte* r = rows + i * size;
                for (int t = 0; t < count; t++, r += rowBytes) a0 = Vector256.FusedMultiplyAdd(TLoad.Load256(r), Vector256.Create(weights[t]), a0);
                a0.Store(o + i);
            }
        }
        if (Vector128.IsHardwareAccelerated)
        {
            for (; i + 16 <= n; i += 16)
            {
                Vector128<float> a0 = accumulate ? Vector128.Load(o + i) : default,
                    a1 = accumulate ? Vector128.Load(o + i + 4) : default,
                    a2 = accumulate ? Vector128.Load(o + i + 8) : default,
                    a3 = accumulate ? Vector128.Load(o + i + 12) : default;
                byte* r = rows + i * size;
                for (int t = 0; t < count; t++, r += rowBytes)
                {
                    var p = Vector128.Create(weights[t]);
                    a0 = Vector128.FusedMultiplyAdd(TLoad.Load128(r), p, a0);
                    a1 = Vector128.FusedMultiplyAdd(TLoad.Load128(r + 4 * size), p, a1);
                    a2 = Vector128.FusedMultiplyAdd(TLoad.Load128(r + 8 * size), p, a2);
                    a3 = Vector128.FusedMultiplyAdd(TLoad.Load128(r + 12 * size), p, a3);
                }
                a0.Store(o + i); a1.Store(o + i + 4); a2.Store(o + i + 8); a3.Store(o + i + 12);
            }
            for (; i + 4 <= n; i += 4)
            {
                Vector128<float> a0 = accumulate ? Vector128.Load(o + i) : default;
                byte* r = rows + i * size;
                for (int t = 0; t < count; t++, r += rowBytes) a0 = Vector128.FusedMultiplyAdd(TLoad.Load128(r), Vector128.Create(weights[t]), a0);
                a0.Store(o + i);
            }
        }
        WeightedSumScalar<TLoad, TElement>(rows, stride, count, weights, o, i, n, accumulate);
    }

    /// <summary>The reference for columns [from, n): one fused multiply-add chain per element, rows in order.</summary>
    public static void WeightedSumScalar(float* rows, int stride, int count, float* weights, float* o, int from, int n, bool accumulate = false)
        => WeightedSumScalar<F32Loader, float>((byte*)rows, stride, count, weights, o, from, n, accumulate);

    /// <summary>The reference over F16 rows: each element widened, then <see cref="WeightedSumScalar(float*, int, int, float*, float*, int, int, bool)"/>'s chains.</summary>
    public static void WeightedSumScalar(Half* rows, int stride, int count, float* weights, float* o, int from, int n, bool accumulate = false)
        => WeightedSumScalar<F16Loader, ushort>((byte*)rows, stride, count, weights, o, from, n, accumulate);

    /// <summary>Both references and the vector paths' tail: each element widened one at a time (<see cref="ILoader.Load1"/>).</summary>
    private static void WeightedSumScalar<TLoad, TElement>(byte* rows, int stride, int count, float* weights, float* o, int from, int n, bool accumulate)
        where TLoad : struct, ILoader
        where TElement : unmanaged
    {
        int size = sizeof(TElement);
        long rowBytes = (long)stride * size;
        for (int i = from; i < n; i++)
        {
            float s = accumulate ? o[i] : 0;
            for (int t = 0; t < count; t++) s = MathF.FusedMultiplyAdd(TLoad.Load1(rows + t * rowBytes + (long)i * size), weights[t], s);
            o[i] = s;
        }
    }
}
