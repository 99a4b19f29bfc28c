// Shared by tests/BitMoe.KernelCheck (the console checker that CI runs under qemu for NEON) and the xunit
// tests (tests/BitMoe.Tests, included there with <Compile Include>), so both run the very same comparisons.
using BitMoe.Kernels;
using BitMoe.Quant;

namespace BitMoe.KernelCheck;

/// <summary>Counts comparisons and keeps the descriptions of those that failed.</summary>
internal sealed class CheckLog
{
    private readonly List<string> _failures = [];

    public int Passed { get; private set; }
    public int Failed => _failures.Count;
    public IReadOnlyList<string> Failures => _failures;

    public void Check(bool ok, string what)
    {
        if (ok) Passed++;
        else _failures.Add(what);
    }

    /// <summary>Equal spans, or a failure that names the first differing index and both values.</summary>
    public void Equal<T>(ReadOnlySpan<T> expected, ReadOnlySpan<T> actual, string what) where T : IEquatable<T>
    {
        if (expected.SequenceEqual(actual)) { Passed++; return; }
        if (expected.Length != actual.Length) { _failures.Add($"{what}: length {actual.Length} != {expected.Length}"); return; }
        int i = 0;
        while (expected[i].Equals(actual[i])) i++;
        _failures.Add($"{what}: first difference at [{i}]: got {actual[i]}, expected {expected[i]}");
    }

    public void Merge(CheckLog other)
    {
        Passed += other.Passed;
        _failures.AddRange(other._failures);
    }

    /// <summary>A summary for an assertion message: the count and the first few failures.</summary>
    public override string ToString()
        => $"{Passed} passed, {Failed} failed" + (Failed == 0 ? "" : ":\n  " + string.Join("\n  ", _failures.Take(20)));
}

/// <summary>Random inputs of the kernel checks.</summary>
internal static class TestData
{
    /// <summary>Row lengths of the file-layout (tq2_0 / tq1_0) checks.</summary>
    public static readonly int[] LayoutLengths =
        [1, 2, 3, 4, 5, 6, 31, 32, 33, 48, 63, 64, 65, 96, 127, 128, 160, 192, 240, 255, 256, 257, 260, 320, 384, 511, 512, 768, 1000, 1536, 2048, 4096, 4097];

    /// <summary>Row lengths of the kernel checks: every 8/16/24/32/48/64-byte remainder, tails, model widths.</summary>
    public static readonly int[] Cols = [1, 5, 31, 32, 33, 40, 48, 64, 72, 96, 136, 192, 200, 224, 255, 256, 320, 384, 1000, 1536, 2080, 4128];

    public static readonly int[] Rows = [1, 3, 17, 64];

    /// <summary>Lengths of the <see cref="Int8Dot"/> check (vector widths 16/32/64 and their remainders).</summary>
    public static readonly int[] DotLengths = [1, 15, 16, 17, 31, 32, 63, 64, 100, 1537];

    public static sbyte[] RandomTernary(Random rng, int n)
    {
        var w = new sbyte[n];
        for (int i = 0; i < n; i++) w[i] = (sbyte)(rng.Next(3) - 1);
        return w;
    }

    /// <summary>Random int8 values, always with -128 first and 127 last (the extremes).</summary>
    public static sbyte[] RandomInt8(Random rng, int n)
    {
        var x = new sbyte[n];
        for (int i = 0; i < n; i++) x[i] = (sbyte)rng.Next(-128, 128);
        if (n > 0) x[0] = -128;
        if (n > 1) x[n - 1] = 127;
        return x;
    }

    /// <summary>A [rows, cols] random ternary matrix in the kernel layout, and its values.</summary>
    public static (byte[] W, sbyte[] Ternary) RandomMatrix(Random rng, int rows, int cols)
    {
        var t = RandomTernary(rng, rows * cols);
        return (TqRepack.FromTernary(t, rows, cols), t);
    }
}

/// <summary>
/// The bit-for-bit comparisons of the integer kernels against their scalar references. Every method
/// records into a <see cref="CheckLog"/> instead of throwing, so the console checker can count and the
/// xunit tests can assert on the log.
/// </summary>
internal static class KernelChecks
{
    /// <summary>The scalar kernel-layout gemv equals a plain int8 dot of the unpacked weights.</summary>
    public static void ScalarGemvIsExact(CheckLog log)
    {
        var rng = new Random(1);
        foreach (int cols in TestData.Cols)
            foreach (int rows in TestData.Rows)
            {
                var (w, t) = TestData.RandomMatrix(rng, rows, cols);
                var x = TestData.RandomInt8(rng, cols);
                var expected = new int[rows];
                for (int r = 0; r < rows; r++) expected[r] = Int8Dot.Scalar(t.AsSpan(r * cols, cols), x);
                var y = new int[rows];
                TernaryGemv.Compute(KernelIsa.Scalar, w, cols, new TernaryActivations(x, cols), y, 0, rows);
                log.Equal<int>(expected, y, $"scalar gemv vs int8 dot: rows {rows} cols {cols}");
            }
    }

    /// <summary>
    /// <see cref="TernaryGemv"/> on <paramref name="isa"/> equals the scalar kernel on every shape (random
    /// ternary weights, int8 activations with -128 and 127), a sub-range of rows writes only those rows, and
    /// the saturation corners (all +-1 weights against all -128 or all 127) give +-cols * 128/127.
    /// </summary>
    public static void GemvMatchesScalar(KernelIsa isa, CheckLog log)
    {
        var rng = new Random(2 + (int)isa);
        var a = new TernaryActivations();
        foreach (int cols in TestData.Cols)
            foreach (int rows in TestData.Rows)
            {
                var (w, _) = TestData.RandomMatrix(rng, rows, cols);
                var x = TestData.RandomInt8(rng, cols);
                a.Prepare(x, cols);
                var expected = new int[rows];
                var y = new int[rows];
                TernaryGemv.Compute(KernelIsa.Scalar, w, cols, a, expected, 0, rows);
                TernaryGemv.Compute(isa, w, cols, a, y, 0, rows);
                log.Equal<int>(expected, y, $"{isa} gemv: rows {rows} cols {cols}");
                if (rows > 2)
                {
                    var part = new int[rows];
                    TernaryGemv.Compute(isa, w, cols, a, part, 1, rows - 1);
                    log.Check(part[0] == 0 && part[rows - 1] == 0, $"{isa} gemv: rows [1, {rows - 1}) cols {cols} wrote outside its rows");
                    log.Equal<int>(expected.AsSpan(1, rows - 2), part.AsSpan(1, rows - 2), $"{isa} gemv: rows [1, {rows - 1}) cols {cols} (index = row - 1)");
                }
            }
        foreach (int cols in new[] { 256, 1000, 1536, 4096 })
            foreach (sbyte wv in new sbyte[] { -1, 1 })
                foreach (sbyte xv in new sbyte[] { -128, 127 })
                {
                    var w = TqRepack.FromTernary(Enumerable.Repeat(wv, 2 * cols).ToArray(), 2, cols);
                    a.Prepare(Enumerable.Repeat(xv, cols).ToArray(), cols);
                    var y = new int[2];
                    TernaryGemv.Compute(isa, w, cols, a, y, 0, 2);
                    log.Equal<int>([wv * xv * cols, wv * xv * cols], y, $"{isa} gemv corner: w = {wv}, x = {xv}, cols {cols}");
                }
    }

    /// <summary>
    /// <see cref="TernaryGemm"/> on <paramref name="isa"/>: every token (1 to 9: full 4-token tiles and
    /// leftovers) equals the scalar gemv of that token; rows outside [start, end) stay untouched.
    /// </summary>
    public static void GemmMatchesScalar(KernelIsa isa, CheckLog log)
    {
        var rng = new Random(20 + (int)isa);
        var a = new TernaryActivations();
        var single = new TernaryActivations();
        foreach (int tokens in new[] { 1, 3, 4, 5, 9 })
            foreach (int cols in new[] { 1, 40, 48, 64, 96, 192, 255, 256, 320, 1000, 1536, 4128 })
                foreach (int rows in new[] { 1, 3, 17, 64 })
                {
                    if (cols == 4128 && rows == 64) continue; // keep it fast
                    var (w, _) = TestData.RandomMatrix(rng, rows, cols);
                    var x = new sbyte[tokens * cols];
                    for (int t = 0; t < tokens; t++) TestData.RandomInt8(rng, cols).CopyTo(x, t * cols);
                    a.Prepare(x, cols, tokens);
                    var y = new int[tokens * rows];
                    Array.Fill(y, int.MinValue);
                    int start = rows > 2 ? 1 : 0, end = rows > 2 ? rows - 1 : rows;
                    TernaryGemm.Compute(isa, w, rows, cols, a, y, start, end);
                    var expected = new int[tokens * rows];
                    Array.Fill(expected, int.MinValue);
                    var e = new int[rows];
                    for (int t = 0; t < tokens; t++)
                    {
                        single.Prepare(x.AsSpan(t * cols, cols), cols);
                        TernaryGemv.Compute(KernelIsa.Scalar, w, cols, single, e, 0, rows);
                        e.AsSpan(start, end - start).CopyTo(expected.AsSpan(t * rows + start));
                    }
                    log.Equal<int>(expected, y, $"{isa} gemm: tokens {tokens} rows {rows} [{start}, {end}) cols {cols} (index = token * {rows} + row)");
                }
    }

    /// <summary><see cref="Int8Dot.Dot"/> (System.Numerics.Vector: SSE/AVX or AdvSimd, whatever the JIT picks) equals the scalar loop.</summary>
    public static void Int8DotMatchesScalar(int n, CheckLog log)
    {
        var r = new Random(n);
        var a = new sbyte[n];
        var b = new sbyte[n];
        for (int i = 0; i < n; i++) { a[i] = (sbyte)r.Next(-128, 128); b[i] = (sbyte)r.Next(-128, 128); }
        a[0] = -128; b[0] = -128; // the int16 overflow corner
        log.Check(Int8Dot.Scalar(a, b) == Int8Dot.Dot(a, b), $"Int8Dot.Dot: n {n}: {Int8Dot.Dot(a, b)} != {Int8Dot.Scalar(a, b)}");
        if (n >= 64)
        {
            Array.Fill(a, (sbyte)-128);
            Array.Fill(b, (sbyte)-128);
            log.Check(Int8Dot.Dot(a, b) == 16384 * n, $"Int8Dot.Dot: n {n}, all -128: {Int8Dot.Dot(a, b)} != {16384 * n}");
        }
    }

    public static void Tq2RoundTrip(int cols, CheckLog log)
    {
        var rng = new Random(cols);
        for (int rep = 0; rep < 4; rep++)
        {
            var w = TestData.RandomTernary(rng, cols);
            var packed = new byte[Tq2Layout.RowBytes(cols)];
            Tq2Layout.Pack(w, 0.25f, packed);
            var back = new sbyte[cols];
            Tq2Layout.Unpack(packed, back);
            log.Equal<sbyte>(w, back, $"tq2_0 pack/unpack: cols {cols}");
        }
    }

    public static void Tq1RoundTrip(int cols, CheckLog log)
    {
        var rng = new Random(cols + 7);
        for (int rep = 0; rep < 4; rep++)
        {
            var w = TestData.RandomTernary(rng, cols);
            var packed = new byte[Tq1Layout.RowBytes(cols)];
            Tq1Layout.Pack(w, 0.25f, packed);
            var back = new sbyte[cols];
            Tq1Layout.Unpack(packed, back);
            log.Equal<sbyte>(w, back, $"tq1_0 pack/unpack: cols {cols}");
        }
    }

    /// <summary>Kernel layout: PackRow then UnpackRow is the identity.</summary>
    public static void KernelLayoutRoundTrip(CheckLog log)
    {
        var rng = new Random(4);
        foreach (int cols in TestData.Cols)
        {
            var t = TestData.RandomTernary(rng, cols);
            var packed = new byte[TernaryGemv.RowStride(cols)];
            TernaryGemv.PackRow(t, packed);
            var back = new sbyte[cols];
            TernaryGemv.UnpackRow(packed, back);
            log.Equal<sbyte>(t, back, $"kernel layout pack/unpack: cols {cols}");
        }
    }

    /// <summary>The repacked tq2_0 / tq1_0 file rows give the same dots as the file-layout scalar kernels.</summary>
    public static void RepackFromFileLayouts(CheckLog log)
    {
        var rng = new Random(3);
        foreach (int cols in new[] { 48, 192, 257, 1000 })
        {
            const int rows = 5;
            var t = TestData.RandomTernary(rng, rows * cols);
            var x = TestData.RandomInt8(rng, cols);
            int s2 = Tq2Layout.RowBytes(cols), s1 = Tq1Layout.RowBytes(cols);
            var f2 = new byte[rows * s2];
            var f1 = new byte[rows * s1];
            for (int r = 0; r < rows; r++)
            {
                Tq2Layout.Pack(t.AsSpan(r * cols, cols), 0.5f, f2.AsSpan(r * s2, s2));
                Tq1Layout.Pack(t.AsSpan(r * cols, cols), 0.5f, f1.AsSpan(r * s1, s1));
            }
            var expected = new int[rows];
            for (int r = 0; r < rows; r++) expected[r] = Int8Dot.Scalar(t.AsSpan(r * cols, cols), x);
            var fromFile = new int[rows];
            TernaryGemv.Tq2Scalar(f2, cols, x, fromFile, 0, rows);
            log.Equal<int>(expected, fromFile, $"tq2_0 file-layout gemv: cols {cols}");
            TernaryGemv.Tq1Scalar(f1, cols, x, fromFile, 0, rows);
            log.Equal<int>(expected, fromFile, $"tq1_0 file-layout gemv: cols {cols}");
            // the dispatching form (Isa.Current: the best ISA here unless BITMOE_ISA says otherwise)
            var y = new int[rows];
            TernaryGemv.Compute(TqRepack.FromTq2(f2, rows, cols), cols, x, y, 0, rows);
            log.Equal<int>(expected, y, $"repacked tq2_0 on {Isa.Current}: cols {cols}");
            TernaryGemv.Compute(TqRepack.FromTq1(f1, rows, cols), cols, x, y, 0, rows);
            log.Equal<int>(expected, y, $"repacked tq1_0 on {Isa.Current}: cols {cols}");
        }
    }
}
