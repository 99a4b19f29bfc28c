using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BitMoe.Kernels;

public static unsafe partial class TernaryGemv
{
    /// <summary>
    /// 64 code bytes (256 weights) per step: the AVX2 scheme on 512-bit registers (vpmaddubsw, int16 sum
    /// of four and of up to 8 steps, vpmaddwd with ones). A remaining 32 bytes take one 256-bit step, then 16/8-byte tails.
    /// </summary>
    internal static void RowsAvx512(byte* w, int stride, sbyte* xs, int sum, int* y, int start, int end)
    {
        sbyte* x0 = xs, x1 = xs + stride, x2 = xs + 2 * stride, x3 = xs + 3 * stride;
        var mask = Vector512.Create((byte)3);
        var ones = Vector512.Create((short)1);
        var mask256 = Vector256.Create((byte)3);
        var ones256 = Vector256.Create((short)1);
        for (int r = start; r < end; r++)
        {
            byte* row = w + (long)r * stride;
            var acc = Vector512<int>.Zero;
            int j = 0;
            while (j + 64 <= stride)
            {
                // up to 8 steps summed in int16 (|sum| <= 8 * 2048 = 16384) before one widening vpmaddwd
                int stop = Math.Min(stride - 63, j + 8 * 64);
                var s = Vector512<short>.Zero;
                for (; j < stop; j += 64)
                {
                    var v = Avx512F.LoadVector512(row + j);
                    var c0 = Avx512F.And(v, mask);
                    var c1 = Avx512F.And(Avx512BW.ShiftRightLogical(v.AsUInt16(), 2).AsByte(), mask);
                    var c2 = Avx512F.And(Avx512BW.ShiftRightLogical(v.AsUInt16(), 4).AsByte(), mask);
                    var c3 = Avx512F.And(Avx512BW.ShiftRightLogical(v.AsUInt16(), 6).AsByte(), mask);
                    var s01 = Avx512BW.Add(Avx512BW.MultiplyAddAdjacent(c0, Avx512F.LoadVector512(x0 + j)), Avx512BW.MultiplyAddAdjacent(c1, Avx512F.LoadVector512(x1 + j)));
                    var s23 = Avx512BW.Add(Avx512BW.MultiplyAddAdjacent(c2, Avx512F.LoadVector512(x2 + j)), Avx512BW.MultiplyAddAdjacent(c3, Avx512F.LoadVector512(x3 + j)));
                    s = Avx512BW.Add(s, Avx512BW.Add(s01, s23));
                }
                acc = Avx512F.Add(acc, Avx512BW.MultiplyAddAdjacent(s, ones));
            }
            var acc256 = Avx2.Add(acc.GetLower(), acc.GetUpper());
            if (j + 32 <= stride)
            {
                var v = Avx.LoadVector256(row + j);
                var c0 = Avx2.And(v, mask256);
                var c1 = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 2).AsByte(), mask256);
                var c2 = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte(), mask256);
                var c3 = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 6).AsByte(), mask256);
                var s01 = Avx2.Add(Avx2.MultiplyAddAdjacent(c0, Avx.LoadVector256(x0 + j)), Avx2.MultiplyAddAdjacent(c1, Avx.LoadVector256(x1 + j)));
                var s23 = Avx2.Add(Avx2.MultiplyAddAdjacent(c2, Avx.LoadVector256(x2 + j)), Avx2.MultiplyAddAdjacent(c3, Avx.LoadVector256(x3 + j)));
                acc256 = Avx2.Add(acc256, Avx2.MultiplyAddAdjacent(Avx2.Add(s01, s23), ones256));
                j += 32;
            }
            var acc128 = Sse2.Add(acc256.GetLower(), acc256.GetUpper());
            if (j < stride) acc128 = Sse2.Add(acc128, TailSsse3(row, x0, x1, x2, x3, j, stride));
            y[r] = Vector128.Sum(acc128) - sum;
        }
    }
}
