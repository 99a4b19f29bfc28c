using System.Numerics;
using System.Runtime.InteropServices;

namespace BitMoe.Kernels;

/// <summary>
/// Exact int8 x int8 dot product. The fake-quant path uses it on ternary weights stored one per
/// byte: integer-valued operands make the float formula of the spec and the integer sum identical.
/// </summary>
public static class Int8Dot
{
    public static int Scalar(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b)
    {
        int s = 0;
        for (int i = 0; i < a.Length; i++) s += a[i] * b[i];
        return s;
    }

    public static int Dot(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b)
    {
        if (a.Length != b.Length) throw new ArgumentException("length mismatch");
        int n = a.Length, i = 0;
        int sum = 0;
        if (Vector.IsHardwareAccelerated && n >= Vector<sbyte>.Count)
        {
            var acc = Vector<int>.Zero;
            var va = MemoryMarshal.Cast<sbyte, Vector<sbyte>>(a);
            var vb = MemoryMarshal.Cast<sbyte, Vector<sbyte>>(b);
            for (int k = 0; k < va.Length; k++)
            {
                Vector.Widen(va[k], out var a0, out var a1);
                Vector.Widen(vb[k], out var b0, out var b1);
                // each int16 product is at most 128*128 and fits; the sum of two might not, so widen first
                Vector.Widen(a0 * b0, out var p0, out var p1);
                Vector.Widen(a1 * b1, out var q0, out var q1);
                acc += (p0 + p1) + (q0 + q1);
            }
            sum = Vector.Sum(acc);
            i = va.Length * Vector<sbyte>.Count;
        }
        for (; i < n; i++) sum += a[i] * b[i];
        return sum;
    }
}
