using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BitMoe.Kernels;

public static unsafe partial class TernaryGemv
{
    /// <summary>
    /// 32 code bytes per step, four vpdpbusd (u8 codes x s8 activations, four products summed straight
    /// into int32: no int16 intermediate, no saturation). Tails of 16 and 8 bytes use the 128-bit form.
    /// </summary>
    internal static void RowsAvxVnni(byte* w, int stride, sbyte* xs, int sum, int* y, int start, int end)
    {
        sbyte* x0 = xs, x1 = xs + stride, x2 = xs + 2 * stride, x3 = xs + 3 * stride;
        var mask = Vector256.Create((byte)3);
        var mask128 = Vector128.Create((byte)3);
        for (int r = start; r < end; r++)
        {
            byte* row = w + (long)r * stride;
            var accA = Vector256<int>.Zero;
            var accB = Vector256<int>.Zero;
            int j = 0;
            for (; j + 32 <= stride; j += 32)
            {
                var v = Avx.LoadVector256(row + j);
                var c0 = Avx2.And(v, mask);
                var c1 = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 2).AsByte(), mask);
                var c2 = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte(), mask);
                var c3 = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 6).AsByte(), mask);
                accA = AvxVnni.MultiplyWideningAndAdd(accA, c0, Avx.LoadVector256(x0 + j));
                accB = AvxVnni.MultiplyWideningAndAdd(accB, c1, Avx.LoadVector256(x1 + j));
                accA = AvxVnni.MultiplyWideningAndAdd(accA, c2, Avx.LoadVector256(x2 + j));
                accB = AvxVnni.MultiplyWideningAndAdd(accB, c3, Avx.LoadVector256(x3 + j));
            }
            var acc = Avx2.Add(accA, accB);
            var acc128 = Sse2.Add(acc.GetLower(), acc.GetUpper());
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
                acc128 = AvxVnni.MultiplyWideningAndAdd(acc128, Sse2.And(v, mask128), a0);
                acc128 = AvxVnni.MultiplyWideningAndAdd(acc128, Sse2.And(Sse2.ShiftRightLogical(v.AsUInt16(), 2).AsByte(), mask128), a1);
                acc128 = AvxVnni.MultiplyWideningAndAdd(acc128, Sse2.And(Sse2.ShiftRightLogical(v.AsUInt16(), 4).AsByte(), mask128), a2);
                acc128 = AvxVnni.MultiplyWideningAndAdd(acc128, Sse2.And(Sse2.ShiftRightLogical(v.AsUInt16(), 6).AsByte(), mask128), a3);
            }
            y[r] = Vector128.Sum(acc128) - sum;
        }
    }
}
