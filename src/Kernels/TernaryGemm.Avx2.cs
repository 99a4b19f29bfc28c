using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BitMoe.Kernels;

public static unsafe partial class TernaryGemm
{
    /// <summary>
    /// Four tokens per row: one load + 3 shifts + 4 masks per 32 code bytes, then per token 4 vpmaddubsw,
    /// int16 adds (&lt;= 2048) and one vpmaddwd into that token's int32 accumulator. Tails per token.
    /// </summary>
    internal static void Rows4Avx2(byte* w, int stride, sbyte* xs, int* sums, int* y, int ldy, int start, int end)
    {
        long tb = 4L * stride;
        sbyte* p0 = xs, p1 = xs + tb, p2 = xs + 2 * tb, p3 = xs + 3 * tb;
        var mask = Vector256.Create((byte)3);
        var ones = Vector256.Create((short)1);
        for (int r = start; r < end; r++)
        {
            byte* row = w + (long)r * stride;
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
            int j = 0;
            for (; j + 32 <= stride; j += 32)
            {
                var v = Avx.LoadVector256(row + j);
                var c0 = Avx2.And(v, mask);
                var c1 = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 2).AsByte(), mask);
                var c2 = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte(), mask);
                var c3 = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 6).AsByte(), mask);
                a0 = Avx2.Add(a0, Avx2.MultiplyAddAdjacent(Dot4(c0, c1, c2, c3, p0 + j, stride), ones));
                a1 = Avx2.Add(a1, Avx2.MultiplyAddAdjacent(Dot4(c0, c1, c2, c3, p1 + j, stride), ones));
                a2 = Avx2.Add(a2, Avx2.MultiplyAddAdjacent(Dot4(c0, c1, c2, c3, p2 + j, stride), ones));
                a3 = Avx2.Add(a3, Avx2.MultiplyAddAdjacent(Dot4(c0, c1, c2, c3, p3 + j, stride), ones));
            }
            y[r] = Finish(a0, row, p0, j, stride) - sums[0];
            y[ldy + r] = Finish(a1, row, p1, j, stride) - sums[1];
            y[2 * ldy + r] = Finish(a2, row, p2, j, stride) - sums[2];
            y[3 * ldy + r] = Finish(a3, row, p3, j, stride) - sums[3];
        }
    }

    /// <summary>The int16 sum of the four code vectors' vpmaddubsw against one token's four streams at x.</summary>
    private static Vector256<short> Dot4(Vector256<byte> c0, Vector256<byte> c1, Vector256<byte> c2, Vector256<byte> c3, sbyte* x, int stride)
        => Avx2.Add(Avx2.Add(Avx2.MultiplyAddAdjacent(c0, Avx.LoadVector256(x)), Avx2.MultiplyAddAdjacent(c1, Avx.LoadVector256(x + stride))),
                    Avx2.Add(Avx2.MultiplyAddAdjacent(c2, Avx.LoadVector256(x + 2 * stride)), Avx2.MultiplyAddAdjacent(c3, Avx.LoadVector256(x + 3 * stride))));

    /// <summary>Horizontal sum of a 256-bit accumulator plus the row's tail from byte j (128-bit maddubs).</summary>
    private static int Finish(Vector256<int> acc, byte* row, sbyte* xt, int j, int stride)
    {
        var acc128 = Sse2.Add(acc.GetLower(), acc.GetUpper());
        if (j < stride) acc128 = Sse2.Add(acc128, TernaryGemv.TailSsse3(row, xt, xt + stride, xt + 2 * stride, xt + 3 * stride, j, stride));
        return Vector128.Sum(acc128);
    }
}
