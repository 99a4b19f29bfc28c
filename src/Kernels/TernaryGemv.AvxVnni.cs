using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BitMoe.Kernels;

public static unsafe partial class TernaryGemv
{
    /// <summary>
    /// 32 code bytes per step, no shifts: lane group n is masked in place (v &amp; 3 &lt;&lt; 2n = 4^n * c_n, at most
    /// 128) and vpdpbusd'ed against stream n into its own int32 accumulator, which therefore holds 4^n times the
    /// true sum - an exact multiple of 4^n, divided out with one arithmetic shift per lane at the end. vpdpbusd
    /// has no int16 stage (no saturation); a lane of accumulator 3 stays below 2^31 for cols &lt; 2^19.
    /// Four accumulators also keep four independent dependency chains. Tails: the 128-bit form.
    /// </summary>
    internal static void RowsAvxVnni(byte* w, int stride, sbyte* xs, int sum, int* y, int start, int end)
    {
        sbyte* x0 = xs, x1 = xs + stride, x2 = xs + 2 * stride, x3 = xs + 3 * stride;
        var m0 = Vector256.Create((byte)0x03);
        var m1 = Vector256.Create((byte)0x0C);
        var m2 = Vector256.Create((byte)0x30);
        var m3 = Vector256.Create((byte)0xC0);
        for (int r = start; r < end; r++)
        {
            byte* row = w + (long)r * stride;
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
            Vector256<int> b0 = default, b1 = default, b2 = default, b3 = default;
            int j = 0;
            // two steps per iteration into two accumulator sets: vpdpbusd's latency (~5 cycles) exceeds its
            // throughput, so a single chain per accumulator would stall
            for (; j + 64 <= stride; j += 64)
            {
                var v = Avx.LoadVector256(row + j);
                var u = Avx.LoadVector256(row + j + 32);
                a0 = AvxVnni.MultiplyWideningAndAdd(a0, Avx2.And(v, m0), Avx.LoadVector256(x0 + j));
                a1 = AvxVnni.MultiplyWideningAndAdd(a1, Avx2.And(v, m1), Avx.LoadVector256(x1 + j));
                a2 = AvxVnni.MultiplyWideningAndAdd(a2, Avx2.And(v, m2), Avx.LoadVector256(x2 + j));
                a3 = AvxVnni.MultiplyWideningAndAdd(a3, Avx2.And(v, m3), Avx.LoadVector256(x3 + j));
                b0 = AvxVnni.MultiplyWideningAndAdd(b0, Avx2.And(u, m0), Avx.LoadVector256(x0 + j + 32));
                b1 = AvxVnni.MultiplyWideningAndAdd(b1, Avx2.And(u, m1), Avx.LoadVector256(x1 + j + 32));
                b2 = AvxVnni.MultiplyWideningAndAdd(b2, Avx2.And(u, m2), Avx.LoadVector256(x2 + j + 32));
                b3 = AvxVnni.MultiplyWideningAndAdd(b3, Avx2.And(u, m3), Avx.LoadVector256(x3 + j + 32));
            }
            if (j + 32 <= stride)
            {
                var v = Avx.LoadVector256(row + j);
                a0 = AvxVnni.MultiplyWideningAndAdd(a0, Avx2.And(v, m0), Avx.LoadVector256(x0 + j));
                a1 = AvxVnni.MultiplyWideningAndAdd(a1, Avx2.And(v, m1), Avx.LoadVector256(x1 + j));
                a2 = AvxVnni.MultiplyWideningAndAdd(a2, Avx2.And(v, m2), Avx.LoadVector256(x2 + j));
                a3 = AvxVnni.MultiplyWideningAndAdd(a3, Avx2.And(v, m3), Avx.LoadVector256(x3 + j));
                j += 32;
            }
            a0 = Avx2.Add(a0, b0); a1 = Avx2.Add(a1, b1); a2 = Avx2.Add(a2, b2); a3 = Avx2.Add(a3, b3);
            var acc = CombineScaled(a0, a1, a2, a3);
            var acc128 = Sse2.Add(acc.GetLower(), acc.GetUpper());
            if (j < stride) acc128 = Sse2.Add(acc128, TailVnni(row, x0, x1, x2, x3, j, stride));
            y[r] = Vector128.Sum(acc128) - sum;
        }
    }

    /// <summary>a0 + a1/4 + a2/16 + a3/64 per lane; each a_n is an exact multiple of 4^n.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> CombineScaled(Vector256<int> a0, Vector256<int> a1, Vector256<int> a2, Vector256<int> a3)
        => Avx2.Add(Avx2.Add(a0, Avx2.ShiftRightArithmetic(a1, 2)), Avx2.Add(Avx2.ShiftRightArithmetic(a2, 4), Avx2.ShiftRightArithmetic(a3, 6)));

    /// <summary>The last stride - j (&lt; 32, a multiple of 8) bytes of a row with 128-bit vpdpbusd.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<int> TailVnni(byte* row, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, int j, int stride)
    {
        var m0 = Vector128.Create((byte)0x03);
        var m1 = Vector128.Create((byte)0x0C);
        var m2 = Vector128.Create((byte)0x30);
        var m3 = Vector128.Create((byte)0xC0);
        Vector128<int> a0 = default, a1 = default, a2 = default, a3 = default;
        for (; j < stride; j += 8)
        {
            Vector128<byte> v;
            Vector128<sbyte> b0, b1, b2, b3;
            if (j + 16 <= stride)
            {
                v = Sse2.LoadVector128(row + j);
                b0 = Sse2.LoadVector128(x0 + j); b1 = Sse2.LoadVector128(x1 + j);
                b2 = Sse2.LoadVector128(x2 + j); b3 = Sse2.LoadVector128(x3 + j);
                j += 8;
            }
            else
            {
                v = Vector128.CreateScalar(*(ulong*)(row + j)).AsByte();
                b0 = Vector128.CreateScalar(*(ulong*)(x0 + j)).AsSByte(); b1 = Vector128.CreateScalar(*(ulong*)(x1 + j)).AsSByte();
                b2 = Vector128.CreateScalar(*(ulong*)(x2 + j)).AsSByte(); b3 = Vector128.CreateScalar(*(ulong*)(x3 + j)).AsSByte();
            }
            a0 = AvxVnni.MultiplyWideningAndAdd(a0, Sse2.And(v, m0), b0);
            a1 = AvxVnni.MultiplyWideningAndAdd(a1, Sse2.And(v, m1), b1);
            a2 = AvxVnni.MultiplyWideningAndAdd(a2, Sse2.And(v, m2), b2);
            a3 = AvxVnni.MultiplyWideningAndAdd(a3, Sse2.And(v, m3), b3);
        }
        return Sse2.Add(Sse2.Add(a0, Sse2.ShiftRightArithmetic(a1, 2)), Sse2.Add(Sse2.ShiftRightArithmetic(a2, 4), Sse2.ShiftRightArithmetic(a3, 6)));
    }
}
