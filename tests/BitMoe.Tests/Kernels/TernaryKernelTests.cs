using BitMoe.Kernels;
using BitMoe.Quant;
using BitMoe.Tests.Quant;

namespace BitMoe.Tests.Kernels;

public class TernaryKernelTests
{
    private static readonly int[] Cols = [1, 5, 31, 32, 33, 40, 48, 64, 72, 96, 136, 192, 200, 224, 255, 256, 320, 384, 1000, 1536, 2080, 4128];
    private static readonly int[] Rows = [1, 3, 17, 64];

    private static (byte[] W, sbyte[] Ternary) RandomMatrix(Random rng, int rows, int cols)
    {
        var t = TernaryLayoutTests.RandomTernary(rng, rows * cols);
        return (TqRepack.FromTernary(t, rows, cols), t);
    }

    private static int[] Expected(sbyte[] t, int rows, int cols, ReadOnlySpan<sbyte> x)
    {
        var y = new int[rows];
        for (int r = 0; r < rows; r++) y[r] = Int8Dot.Scalar(t.AsSpan(r * cols, cols), x[..cols]);
        return y;
    }

    [Fact]
    public void ScalarKernelLayoutIsExact()
    {
        var rng = new Random(1);
        foreach (int cols in Cols)
            foreach (int rows in Rows)
            {
                var (w, t) = RandomMatrix(rng, rows, cols);
                var x = TernaryLayoutTests.RandomInt8(rng, cols);
                var y = new int[rows];
                TernaryGemv.Compute(KernelIsa.Scalar, w, cols, new TernaryActivations(x, cols), y, 0, rows);
                Assert.Equal(Expected(t, rows, cols, x), y);
            }
    }

    /// <summary>Every shape, random ternary weights and int8 activations (with -128 and 127), plus the extremes.</summary>
    private static void MatchesScalar(KernelIsa isa)
    {
        var rng = new Random(2 + (int)isa);
        var a = new TernaryActivations();
        foreach (int cols in Cols)
            foreach (int rows in Rows)
            {
                var (w, _) = RandomMatrix(rng, rows, cols);
                var x = TernaryLayoutTests.RandomInt8(rng, cols);
                a.Prepare(x, cols);
                var expected = new int[rows];
                var y = new int[rows];
                TernaryGemv.Compute(KernelIsa.Scalar, w, cols, a, expected, 0, rows);
                TernaryGemv.Compute(isa, w, cols, a, y, 0, rows);
                Assert.True(expected.AsSpan().SequenceEqual(y), $"{isa}: rows {rows} cols {cols}");
                // a sub-range of rows writes only those rows
                if (rows > 2)
                {
                    var part = new int[rows];
                    TernaryGemv.Compute(isa, w, cols, a, part, 1, rows - 1);
                    Assert.Equal(0, part[0]);
                    Assert.Equal(0, part[rows - 1]);
                    Assert.True(expected.AsSpan(1, rows - 2).SequenceEqual(part.AsSpan(1, rows - 2)), $"{isa}: rows [1, {rows - 1}) cols {cols}");
                }
            }
        // saturation corners: all +1 or all -1 weights against all -128 or all 127
        foreach (int cols in new[] { 256, 1000, 1536, 4096 })
            foreach (sbyte wv in new sbyte[] { -1, 1 })
                foreach (sbyte xv in new sbyte[] { -128, 127 })
                {
                    var t = Enumerable.Repeat(wv, 2 * cols).ToArray();
                    var w = TqRepack.FromTernary(t, 2, cols);
                    var x = Enumerable.Repeat(xv, cols).ToArray();
                    a.Prepare(x, cols);
                    var y = new int[2];
                    TernaryGemv.Compute(isa, w, cols, a, y, 0, 2);
                    Assert.Equal(new[] { wv * xv * cols, wv * xv * cols }, y);
                }
    }

    [IsaFact(KernelIsa.Avx2)] public void Avx2MatchesScalar() => MatchesScalar(KernelIsa.Avx2);
    [IsaFact(KernelIsa.AvxVnni)] public void AvxVnniMatchesScalar() => MatchesScalar(KernelIsa.AvxVnni);
    [IsaFact(KernelIsa.Avx512)] public void Avx512MatchesScalar() => MatchesScalar(KernelIsa.Avx512);
    [IsaFact(KernelIsa.Neon)] public void NeonMatchesScalar() => MatchesScalar(KernelIsa.Neon);
    [Fact] public void ScalarMatchesScalarOnExtremes() => MatchesScalar(KernelIsa.Scalar);

    /// <summary>The batched kernel: every token equals the scalar gemv of that token; rows outside [start, end) untouched.</summary>
    private static void GemmMatchesScalar(KernelIsa isa)
    {
        var rng = new Random(20 + (int)isa);
        var a = new TernaryActivations();
        var single = new TernaryActivations();
        foreach (int tokens in new[] { 1, 3, 4, 5, 9 })
            foreach (int cols in new[] { 1, 40, 48, 96, 192, 255, 320, 1000, 1536, 4128 })
                foreach (int rows in new[] { 1, 17, 64 })
                {
                    if (cols == 4128 && rows == 64) continue; // keep the test fast
                    var (w, _) = RandomMatrix(rng, rows, cols);
                    var x = new sbyte[tokens * cols];
                    for (int t = 0; t < tokens; t++) TernaryLayoutTests.RandomInt8(rng, cols).CopyTo(x, t * cols);
                    a.Prepare(x, cols, tokens);
                    var y = new int[tokens * rows];
                    Array.Fill(y, int.MinValue);
                    int start = rows > 2 ? 1 : 0, end = rows > 2 ? rows - 1 : rows;
                    TernaryGemm.Compute(isa, w, rows, cols, a, y, start, end);
                    for (int t = 0; t < tokens; t++)
                    {
                        single.Prepare(x.AsSpan(t * cols, cols), cols);
                        var e = new int[rows];
                        TernaryGemv.Compute(KernelIsa.Scalar, w, cols, single, e, 0, rows);
                        for (int r = 0; r < rows; r++)
                        {
                            int expected = r >= start && r < end ? e[r] : int.MinValue;
                            Assert.True(expected == y[t * rows + r], $"{isa}: tokens {tokens} rows {rows} cols {cols}: token {t} row {r}: {y[t * rows + r]} != {expected}");
                        }
                    }
                }
    }

    [Fact] public void GemmScalarMatchesGemv() => GemmMatchesScalar(KernelIsa.Scalar);
    [IsaFact(KernelIsa.Avx2)] public void GemmAvx2MatchesScalar() => GemmMatchesScalar(KernelIsa.Avx2);
    [IsaFact(KernelIsa.AvxVnni)] public void GemmAvxVnniMatchesScalar() => GemmMatchesScalar(KernelIsa.AvxVnni);
    [IsaFact(KernelIsa.Avx512)] public void GemmAvx512MatchesScalar() => GemmMatchesScalar(KernelIsa.Avx512);
    [IsaFact(KernelIsa.Neon)] public void GemmNeonMatchesScalar() => GemmMatchesScalar(KernelIsa.Neon);

    [Fact]
    public void RepackFromFileLayoutsGivesTheSameDots()
    {
        var rng = new Random(3);
        foreach (int cols in new[] { 48, 192, 257, 1000 })
        {
            const int rows = 5;
            var t = TernaryLayoutTests.RandomTernary(rng, rows * cols);
            var x = TernaryLayoutTests.RandomInt8(rng, cols);
            int s2 = Tq2Layout.RowBytes(cols), s1 = Tq1Layout.RowBytes(cols);
            var f2 = new byte[rows * s2];
            var f1 = new byte[rows * s1];
            for (int r = 0; r < rows; r++)
            {
                Tq2Layout.Pack(t.AsSpan(r * cols, cols), 0.5f, f2.AsSpan(r * s2, s2));
                Tq1Layout.Pack(t.AsSpan(r * cols, cols), 0.5f, f1.AsSpan(r * s1, s1));
            }
            var fromFile = new int[rows];
            TernaryGemv.Tq2Scalar(f2, cols, x, fromFile, 0, rows);
            Assert.Equal(Expected(t, rows, cols, x), fromFile);
            var y = new int[rows];
            TernaryGemv.Compute(TqRepack.FromTq2(f2, rows, cols), cols, x, y, 0, rows);
            Assert.Equal(fromFile, y);
            TernaryGemv.Compute(TqRepack.FromTq1(f1, rows, cols), cols, x, y, 0, rows);
            Assert.Equal(fromFile, y);
        }
    }

    [Fact]
    public void KernelLayoutRowRoundTrips()
    {
        var rng = new Random(4);
        foreach (int cols in Cols)
        {
            var t = TernaryLayoutTests.RandomTernary(rng, cols);
            var packed = new byte[TernaryGemv.RowStride(cols)];
            TernaryGemv.PackRow(t, packed);
            var back = new sbyte[cols];
            TernaryGemv.UnpackRow(packed, back);
            Assert.Equal(t, back);
        }
        Assert.Equal(8, TernaryGemv.RowStride(1));
        Assert.Equal(16, TernaryGemv.RowStride(48));
        Assert.Equal(48, TernaryGemv.RowStride(192));
        Assert.Equal(256, TernaryGemv.RowStride(1000)); // 1000 -> 1024 weights
    }

    [Fact]
    public void ForcingAnUnsupportedIsaIsAClearError()
    {
        var missing = Enum.GetValues<KernelIsa>().Where(i => !Isa.IsSupported(i)).ToArray();
        Assert.NotEmpty(missing); // no CPU has both NEON and AVX2
        foreach (var isa in missing)
        {
            var e = Assert.Throws<NotSupportedException>(() => Isa.Current = isa);
            Assert.Contains(isa.ToString(), e.Message);
            Assert.Contains("not support", e.Message);
            var a = new TernaryActivations(new sbyte[32], 32);
            Assert.Throws<NotSupportedException>(() => TernaryGemv.Compute(isa, new byte[8], 32, a, new int[1], 0, 1));
        }
        Assert.Equal(KernelIsa.Avx512, Isa.Parse("AVX512", "test"));
        Assert.Null(Isa.Parse("auto", "test"));
        Assert.Null(Isa.Parse("", "test"));
        var bad = Assert.Throws<NotSupportedException>(() => Isa.Parse("sse9", "BITMOE_ISA"));
        Assert.Contains("BITMOE_ISA", bad.Message);
        Assert.Contains(Isa.Best, Isa.Supported);
        Assert.True(Isa.IsSupported(KernelIsa.Scalar));
    }

    [Fact]
    public void ArgumentsAreChecked()
    {
        var a = new TernaryActivations(new sbyte[64], 64);
        Assert.Throws<ArgumentException>(() => TernaryGemv.Compute(KernelIsa.Scalar, new byte[16], 64, a, new int[2], 0, 2)); // 2 rows need 32 bytes
        Assert.Throws<ArgumentException>(() => TernaryGemv.Compute(KernelIsa.Scalar, new byte[32], 32, a, new int[2], 0, 2)); // prepared for 64
        Assert.Throws<ArgumentException>(() => TernaryGemv.Compute(KernelIsa.Scalar, new byte[32], 64, a, new int[1], 0, 2)); // y too short
    }
}
