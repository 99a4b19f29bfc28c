using System.Runtime.Intrinsics.X86;

namespace BitMoe.Kernels;

/// <summary>
/// Matrix-vector product on <see cref="Base3Layout"/> rows: y[r] = sum_i w[r, i] * x[i], exact (int32), as
/// <see cref="TernaryGemv"/> on the 2-bit layout. Decoding uses it where the CPU can unpack five weights a byte fast
/// (<see cref="IsPreferred"/>: AVX-512 VBMI's 128-entry byte lookup); elsewhere the engine keeps the 2-bit layout.
/// Two paths: the scalar reference and AVX-512 VBMI, equal bit for bit. Activations: the natural-order copy of
/// <see cref="TernaryActivations"/> (zero past the row), and its sum, which undoes the +1 of the unsigned codes.
/// </summary>
public static unsafe partial class Base3Gemv
{
    /// <summary>Whether <paramref name="isa"/> has a base-3 path here: scalar, and AVX-512 on a CPU with VBMI.</summary>
    public static bool IsSupported(KernelIsa isa) =>
        isa == KernelIsa.Scalar || (isa == KernelIsa.Avx512 && Avx512BW.IsSupported && Avx512Vbmi.IsSupported);

    /// <summary>Whether decoding on <paramref name="isa"/> should use this layout: its AVX-512 VBMI path (measured faster; docs/performance.md).</summary>
    public static bool IsPreferred(KernelIsa isa) => isa == KernelIsa.Avx512 && IsSupported(isa);

    /// <summary>y[r] for rows [start, end) of a base-3 matrix, token 0 of <paramref name="x"/>.</summary>
    public static void Compute(KernelIsa isa, ReadOnlySpan<byte> weights, int cols, TernaryActivations x, Span<int> y, int start, int end)
    {
        int stride = Base3Layout.RowStride(cols);
        if (x.Cols != cols || x.Count < 1) throw new ArgumentException($"activations were prepared for {x.Cols} columns, the matrix has {cols}");
        TernaryGemv.CheckRows(weights.Length, stride, y.Length, start, end);
        if (start == end) return;
        if (!IsSupported(isa)) throw new NotSupportedException($"the base-3 layout has no {isa} path on this CPU (it has scalar and AVX-512 VBMI)");
        fixed (byte* w = weights)
        fixed (sbyte* xs = &x.NaturalStart)
        fixed (int* py = y)
        {
            int sum = x.SumArray[0];
            if (isa == KernelIsa.Scalar) RowsScalar(w, cols, xs, sum, py, start, end);
            else RowsAvx512(w, cols, xs, sum, py, start, end);
        }
    }

    /// <summary>The layout read byte by byte, code by code: the reference the vector path must equal.</summary>
    internal static void RowsScalar(byte* w, int cols, sbyte* x, int sum, int* y, int start, int end)
    {
        int stride = Base3Layout.RowStride(cols), full = stride / 64 * 64;
        var codes = Base3Layout.Codes;
        for (int r = start; r < end; r++)
        {
            byte* row = w + (long)r * stride;
            int acc = 0;
            for (int p = 0; p < stride; p++)
            {
                int p0 = p < full ? p / 64 * 64 : full, len = p < full ? 64 : stride - full;
                int b = 5 * p0 + (p - p0), q = row[p], i = q & 127;
                for (int n = 0; n < 5; n++)
                {
                    int c = codes[n * 128 + i];
                    if (q >= 128) c = 2 - c;
                    acc += c * x[b + n * len];
                }
            }
            y[r] = acc - sum;
        }
    }
}
