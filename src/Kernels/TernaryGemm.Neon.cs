using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace BitMoe.Kernels;

public static unsafe partial class TernaryGemm
{
    /// <summary>
    /// Four tokens per row: codes extracted once per 16 bytes (ushr/and), then 4 sdot per token into
    /// that token's accumulator. The 8-byte tail runs per token with the 64-bit sdot.
    /// </summary>
    internal static void Rows4Neon(byte* w, int stride, sbyte* xs, int* sums, int* y, int ldy, int start, int end)
    {
        long tb = 4L * stride;
        sbyte* p0 = xs, p1 = xs + tb, p2 = xs + 2 * tb, p3 = xs + 3 * tb;
        var mask = Vector128.Create((byte)3);
        for (int r = start; r < end; r++)
        {
            byte* row = w + (long)r * stride;
            Vector128<int> a0 = default, a1 = default, a2 = default, a3 = default;
            int j = 0;
            for (; j + 16 <= stride; j += 16)
            {
                var v = AdvSimd.LoadVector128(row + j);
                var c0 = AdvSimd.And(v, mask).AsSByte();
                var c1 = AdvSimd.And(AdvSimd.ShiftRightLogical(v, 2), mask).AsSByte();
                var c2 = AdvSimd.And(AdvSimd.ShiftRightLogical(v, 4), mask).AsSByte();
                var c3 = AdvSimd.ShiftRightLogical(v, 6).AsSByte();
                a0 = Sdot4(a0, c0, c1, c2, c3, p0 + j, stride);
                a1 = Sdot4(a1, c0, c1, c2, c3, p1 + j, stride);
                a2 = Sdot4(a2, c0, c1, c2, c3, p2 + j, stride);
                a3 = Sdot4(a3, c0, c1, c2, c3, p3 + j, stride);
            }
            y[r] = FinishNeon(a0, row, p0, j, stride) - sums[0];
            y[ldy + r] = FinishNeon(a1, row, p1, j, stride) - sums[1];
            y[2 * ldy + r] = FinishNeon(a2, row, p2, j, stride) - sums[2];
            y[3 * ldy + r] = FinishNeon(a3, row, p3, j, stride) - sums[3];
        }
    }

    private static Vector128<int> Sdot4(Vector128<int> acc, Vector128<sbyte> c0, Vector128<sbyte> c1, Vector128<sbyte> c2, Vector128<sbyte> c3, sbyte* x, int stride)
    {
        acc = Dp.DotProduct(acc, c0, AdvSimd.LoadVector128(x));
        acc = Dp.DotProduct(acc, c1, AdvSimd.LoadVector128(x + stride));
        acc = Dp.DotProduct(acc, c2, AdvSimd.LoadVector128(x + 2 * stride));
        return Dp.DotProduct(acc, c3, AdvSimd.LoadVector128(x + 3 * stride));
    }

    private static int FinishNeon(Vector128<int> acc, byte* row, sbyte* xt, int j, int stride)
    {
        int total = AdvSimd.Arm64.AddAcross(acc).ToScalar();
        if (j < stride)
        {
            var mask = Vector64.Create((byte)3);
            var v = AdvSimd.LoadVector64(row + j);
            var a = Vector64<int>.Zero;
            a = Dp.DotProduct(a, AdvSimd.And(v, mask).AsSByte(), AdvSimd.LoadVector64(xt + j));
            a = Dp.DotProduct(a, AdvSimd.And(AdvSimd.ShiftRightLogical(v, 2), mask).AsSByte(), AdvSimd.LoadVector64(xt + stride + j));
            a = Dp.DotProduct(a, AdvSimd.And(AdvSimd.ShiftRightLogical(v, 4), mask).AsSByte(), AdvSimd.LoadVector64(xt + 2 * stride + j));
            a = Dp.DotProduct(a, AdvSimd.ShiftRightLogical(v, 6).AsSByte(), AdvSimd.LoadVector64(xt + 3 * stride + j));
            total += a.GetElement(0) + a.GetElement(1);
        }
        return total;
    }
}
