using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BitMoe.Kernels;

public static unsafe partial class TernaryGemm
{
    /// <summary>
    /// Four tokens per row: codes extracted once per 32 bytes (3 shifts + 4 masks, unscaled, so one
    /// accumulator per token suffices), then 4 vpdpbusd per token. Tails per token (TailVnni).
    /// </summary>
    internal static void Rows4AvxVnni(byte* w, int stride, sbyte* xs, int* sums, int* y, int ldy, int start, int end)
    {
        long tb = 4L * stride;
        sbyte* p0 = xs, p1 = xs + tb, p2 = xs + 2 * tb, p3 = xs + 3 * tb;
        var mask = Vector256.Create((byte)3);
        for (int r = start; r < end; r++)
        {
            byte* row = w + (long)r * stride;
            // two accumulators per token (streams 0-1 and 2-3) halve the vpdpbusd dependency chain per step
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
            Vector256<int> b0 = default, b1 = default, b2 = default, b3 = default;
            int j = 0;
            for (; j + 32 <= stride; j += 32)
            {
                var v = Avx.LoadVector256(row + j);
                var c0 = Avx2.And(v, mask);
                var c1 = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 2).AsByte(), mask);
                var c2 = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte(), mask);
                var c3 = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 6).AsByte(), mask);
                Vnni4(ref a0, ref b0, c0, c1, c2, c3, p0 + j, stride);
                Vnni4(ref a1, ref b1, c0, c1, c2, c3, p1 + j, stride);
                Vnni4(ref a2, ref b2, c0, c1, c2, c3, p2 + j, stride);
                Vnni4(ref a3, ref b3, c0, c1, c2, c3, p3 + j, stride);
            }
            a0 = Avx2.Add(a0, b0); a1 = Avx2.Add(a1, b1); a2 = Avx2.Add(a2, b2); a3 = Avx2.Add(a3, b3);
            y[r] = FinishVnni(a0, row, p0, j, stride) - sums[0];
            y[ldy + r] = FinishVnni(a1, row, p1, j, stride) - sums[1];
            y[2 * ldy + r] = FinishVnni(a2, row, p2, j, stride) - sums[2];
            y[3 * ldy + r] = FinishVnni(a3, row, p3, j, stride) - sums[3];
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void Vnni4(ref Vector256<int> a, ref Vector256<int> b, Vector256<byte> c0, Vector256<byte> c1, Vector256<byte> c2, Vector256<byte> c3, sbyte* x, int stride)
    {
        a = AvxVnni.MultiplyWideningAndAdd(a, c0, Avx.LoadVector256(x));
        b = AvxVnni.MultiplyWideningAndAdd(b, c2, Avx.LoadVector256(x + 2 * stride));
        a = AvxVnni.MultiplyWideningAndAdd(a, c1, Avx.LoadVector256(x + stride));
        b = AvxVnni.MultiplyWideningAndAdd(b, c3, Avx.LoadVector256(x + 3 * stride));
    }

    private static int FinishVnni(Vector256<int> acc, byte* row, sbyte* xt, int j, int stride)
    {
        var acc128 = Sse2.Add(acc.GetLower(), acc.GetUpper());
        if (j < stride) acc128 = Sse2.Add(acc128, TernaryGemv.TailVnni(row, xt, xt + stride, xt + 2 * stride, xt + 3 * stride, j, stride));
        return Vector128.Sum(acc128);
    }
}
