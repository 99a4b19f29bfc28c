using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BitMoe.Kernels;

public static unsafe partial class TernaryGemv
{
    /// <summary>
    /// 32 code bytes (128 weights) per step: shift by 0/2/4/6 and mask -> four u8 code vectors,
    /// vpmaddubsw each against its activation stream (s16, |pair| &lt;= 512), add the four in int16
    /// (&lt;= 2048) and up to 8 such steps (&lt;= 16384), then vpmaddwd with ones -> int32. Tails of 16 and 8 bytes use the 128-bit forms.
    /// </summary>
    internal static void RowsAvx2(byte* w, int stride, sbyte* xs, int sum, int* y, int start, int end)
    {
        sbyte* x0 = xs, x1 = xs + stride, x2 = xs + 2 * stride, x3 = xs + 3 * stride;
        var mask = Vector256.Create((byte)3);
        var ones = Vector256.Create((short)1);
        for (int r = start; r < end; r++)
        {
            byte* row = w + (long)r * stride;
            var acc = Vector256<int>.Zero;
            int j = 0;
            while (j + 32 <= stride)
            {
                // up to 8 steps summed in int16 (|sum| <= 8 * 2048 = 16384) before one widening vpmaddwd
                int stop = Math.Min(stride - 31, j + 8 * 32);
                var s = Vector256<short>.Zero;
                for (; j < stop; j += 32)
                {
                    var v = Avx.LoadVector256(row + j);
                    var c0 = Avx2.And(v, mask);
                    var c1 = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 2).AsByte(), mask);
                    var c2 = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte(), mask);
                    var c3 = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 6).AsByte(), mask);
                    var s01 = Avx2.Add(Avx2.MultiplyAddAdjacent(c0, Avx.LoadVector256(x0 + j)), Avx2.MultiplyAddAdjacent(c1, Avx.LoadVector256(x1 + j)));
                    var s23 = Avx2.Add(Avx2.MultiplyAddAdjacent(c2, Avx.LoadVector256(x2 + j)), Avx2.MultiplyAddAdjacent(c3, Avx.LoadVector256(x3 + j)));
                    s = Avx2.Add(s, Avx2.Add(s01, s23));
                }
                acc = Avx2.Add(acc, Avx2.MultiplyAddAdjacent(s, ones));
            }
            var acc128 = Sse2.Add(acc.GetLower(), acc.GetUpper());
            if (j < stride) acc128 = Sse2.Add(acc128, TailSsse3(row, x0, x1, x2, x3, j, stride));
            y[r] = Vector128.Sum(acc128) - sum;
        }
    }

    /// <summary>The last stride - j (&lt; 32, a multiple of 8) bytes of a row with 128-bit maddubs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<int> TailSsse3(byte* row, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, int j, int stride)
    {
        var mask = Vector128.Create((byte)3);
        var s = Vector128<short>.Zero;
        for (; j < stride; j += 8)
        {
            Vector128<byte> v;
            Vector128<sbyte> a0, a1, a2, a3;
            if (j + 16 <= stride)
            {
                v = Sse2.LoadVector128(row + j);
                a0 = Sse2.LoadVector128(x0 + j); a1 = Sse2.LoadVector128(x1 + j);
                a2 = Sse2.LoadVector128(x2 + j); a3 = Sse2.LoadVector128(x3 + j);
                j += 8;
            }
            else
            {
                v = Vector128.CreateScalar(*(ulong*)(row + j)).AsByte();
                a0 = Vector128.CreateScalar(*(ulong*)(x0 + j)).AsSByte(); a1 = Vector128.CreateScalar(*(ulong*)(x1 + j)).AsSByte();
                a2 = Vector128.CreateScalar(*(ulong*)(x2 + j)).AsSByte(); a3 = Vector128.CreateScalar(*(ulong*)(x3 + j)).AsSByte();
            }
            var c0 = Sse2.And(v, mask);
            var c1 = Sse2.And(Sse2.ShiftRightLogical(v.AsUInt16(), 2).AsByte(), mask);
            var c2 = Sse2.And(Sse2.ShiftRightLogical(v.AsUInt16(), 4).AsByte(), mask);
            var c3 = Sse2.And(Sse2.ShiftRightLogical(v.AsUInt16(), 6).AsByte(), mask);
            // at most 24 tail bytes: two steps of four pairs, |s| <= 2 * 2048, far from int16 saturation
            s = Sse2.Add(s, Sse2.Add(Sse2.Add(Ssse3.MultiplyAddAdjacent(c0, a0), Ssse3.MultiplyAddAdjacent(c1, a1)),
                                     Sse2.Add(Ssse3.MultiplyAddAdjacent(c2, a2), Ssse3.MultiplyAddAdjacent(c3, a3))));
        }
        return Sse2.MultiplyAddAdjacent(s, Vector128.Create((short)1));
    }
}
