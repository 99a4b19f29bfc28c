using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BitMoe.Kernels;

public static unsafe partial class TernaryGemm
{
    /// <summary>
    /// Four tokens per row on zmm: one load + 3 shifts + 4 masks per 64 code bytes, then per token 4
    /// vpmaddubsw summed in int16 over up to 8 steps (&lt;= 16384) before vpmaddwd. A remaining 32 bytes take
    /// one shared 256-bit step; the 8/16/24-byte tail runs per token (128-bit maddubs).
    /// </summary>
    internal static void Rows4Avx512(byte* w, int stride, sbyte* xs, int* sums, int* y, int ldy, int start, int end)
    {
        long tb = 4L * stride;
        sbyte* p0 = xs, p1 = xs + tb, p2 = xs + 2 * tb, p3 = xs + 3 * tb;
        var mask = Vector512.Create((byte)3);
        var ones = Vector512.Create((short)1);
        var mask256 = Vector256.Create((byte)3);
        var ones256 = Vector256.Create((short)1);
        for (int r = start; r < end; r++)
        {
            byte* row = w + (long)r * stride;
            Vector512<int> a0 = default, a1 = default, a2 = default, a3 = default;
            int j = 0;
            while (j + 64 <= stride)
            {
                int stop = Math.Min(stride - 63, j + 8 * 64);
                Vector512<short> s0 = default, s1 = default, s2 = default, s3 = default;
                for (; j < stop; j += 64)
                {
                    var v = Avx512F.LoadVector512(row + j);
                    var c0 = Avx512F.And(v, mask);
                    var c1 = Avx512F.And(Avx512BW.ShiftRightLogical(v.AsUInt16(), 2).AsByte(), mask);
                    var c2 = Avx512F.And(Avx512BW.ShiftRightLogical(v.AsUInt16(), 4).AsByte(), mask);
                    var c3 = Avx512F.And(Avx512BW.ShiftRightLogical(v.AsUInt16(), 6).AsByte(), mask);
                    s0 = Avx512BW.Add(s0, Dot4(c0, c1, c2, c3, p0 + j, stride));
                    s1 = Avx512BW.Add(s1, Dot4(c0, c1, c2, c3, p1 + j, stride));
                    s2 = Avx512BW.Add(s2, Dot4(c0, c1, c2, c3, p2 + j, stride));
                    s3 = Avx512BW.Add(s3, Dot4(c0, c1, c2, c3, p3 + j, stride));
                }
                a0 = Avx512F.Add(a0, Avx512BW.MultiplyAddAdjacent(s0, ones));
                a1 = Avx512F.Add(a1, Avx512BW.MultiplyAddAdjacent(s1, ones));
                a2 = Avx512F.Add(a2, Avx512BW.MultiplyAddAdjacent(s2, ones));
                a3 = Avx512F.Add(a3, Avx512BW.MultiplyAddAdjacent(s3, ones));
            }
            var b0 = Avx2.Add(a0.GetLower(), a0.GetUpper());
            var b1 = Avx2.Add(a1.GetLower(), a1.GetUpper());
            var b2 = Avx2.Add(a2.GetLower(), a2.GetUpper());
            var b3 = Avx2.Add(a3.GetLower(), a3.GetUpper());
            if (j + 32 <= stride)
            {
                // one 256-bit step, codes extracted once for the four tokens
                var v = Avx.LoadVector256(row + j);
                var c0 = Avx2.And(v, mask256);
                var c1 = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 2).AsByte(), mask256);
                var c2 = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte(), mask256);
                var c3 = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 6).AsByte(), mask256);
                b0 = Avx2.Add(b0, Avx2.MultiplyAddAdjacent(Dot4(c0, c1, c2, c3, p0 + j, stride), ones256));
                b1 = Avx2.Add(b1, Avx2.MultiplyAddAdjacent(Dot4(c0, c1, c2, c3, p1 + j, stride), ones256));
                b2 = Avx2.Add(b2, Avx2.MultiplyAddAdjacent(Dot4(c0, c1, c2, c3, p2 + j, stride), ones256));
                b3 = Avx2.Add(b3, Avx2.MultiplyAddAdjacent(Dot4(c0, c1, c2, c3, p3 + j, stride), ones256));
                j += 32;
            }
            y[r] = Finish(b0, row, p0, j, stride) - sums[0];
            y[ldy + r] = Finish(b1, row, p1, j, stride) - sums[1];
            y[2 * ldy + r] = Finish(b2, row, p2, j, stride) - sums[2];
            y[3 * ldy + r] = Finish(b3, row, p3, j, stride) - sums[3];
        }
    }

    private static Vector512<short> Dot4(Vector512<byte> c0, Vector512<byte> c1, Vector512<byte> c2, Vector512<byte> c3, sbyte* x, int stride)
        => Avx512BW.Add(Avx512BW.Add(Avx512BW.MultiplyAddAdjacent(c0, Avx512F.LoadVector512(x)), Avx512BW.MultiplyAddAdjacent(c1, Avx512F.LoadVector512(x + stride))),
                        Avx512BW.Add(Avx512BW.MultiplyAddAdjacent(c2, Avx512F.LoadVector512(x + 2 * stride)), Avx512BW.MultiplyAddAdjacent(c3, Avx512F.LoadVector512(x + 3 * stride))));
}
