using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace BitMoe.Kernels;

public static unsafe partial class TernaryGemv
{
    /// <summary>
    /// 16 code bytes (64 weights) per step: ushr by 0/2/4/6 and mask -> four code vectors, sdot each
    /// (codes 0..2 are valid signed bytes) into int32 lanes. An 8-byte tail uses the 64-bit sdot.
    /// </summary>
    internal static void RowsNeon(byte* w, int stride, sbyte* xs, int sum, int* y, int start, int end)
    {
        sbyte* x0 = xs, x1 = xs + stride, x2 = xs + 2 * stride, x3 = xs + 3 * stride;
        var mask = Vector128.Create((byte)3);
        var mask64 = Vector64.Create((byte)3);
        for (int r = start; r < end; r++)
        {
            byte* row = w + (long)r * stride;
            var accA = Vector128<int>.Zero;
            var accB = Vector128<int>.Zero;
            int j = 0;
            for (; j + 16 <= stride; j += 16)
            {
                var v = AdvSimd.LoadVector128(row + j);
                var c0 = AdvSimd.And(v, mask).AsSByte();
                var c1 = AdvSimd.And(AdvSimd.ShiftRightLogical(v, 2), mask).AsSByte();
                var c2 = AdvSimd.And(AdvSimd.ShiftRightLogical(v, 4), mask).AsSByte();
                var c3 = AdvSimd.ShiftRightLogical(v, 6).AsSByte();
                accA = Dp.DotProduct(accA, c0, AdvSimd.LoadVector128(x0 + j));
                accB = Dp.DotProduct(accB, c1, AdvSimd.LoadVector128(x1 + j));
                accA = Dp.DotProduct(accA, c2, AdvSimd.LoadVector128(x2 + j));
                accB = Dp.DotProduct(accB, c3, AdvSimd.LoadVector128(x3 + j));
            }
            int total = AdvSimd.Arm64.AddAcross(AdvSimd.Add(accA, accB)).ToScalar();
            if (j < stride)
            {
                var v = AdvSimd.LoadVector64(row + j);
                var acc64 = Vector64<int>.Zero;
                acc64 = Dp.DotProduct(acc64, AdvSimd.And(v, mask64).AsSByte(), AdvSimd.LoadVector64(x0 + j));
                acc64 = Dp.DotProduct(acc64, AdvSimd.And(AdvSimd.ShiftRightLogical(v, 2), mask64).AsSByte(), AdvSimd.LoadVector64(x1 + j));
                acc64 = Dp.DotProduct(acc64, AdvSimd.And(AdvSimd.ShiftRightLogical(v, 4), mask64).AsSByte(), AdvSimd.LoadVector64(x2 + j));
                acc64 = Dp.DotProduct(acc64, AdvSimd.ShiftRightLogical(v, 6).AsSByte(), AdvSimd.LoadVector64(x3 + j));
                total += acc64.GetElement(0) + acc64.GetElement(1);
            }
            y[r] = total - sum;
        }
    }
}
