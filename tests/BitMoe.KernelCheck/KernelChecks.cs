// Shared by tests/BitMoe.KernelCheck (the console checker that CI runs under qemu for NEON) and the xunit
// tests (tests/BitMoe.Tests, included there with <Compile Include>), so both run the very same comparisons.
using System.Runtime.Intrinsics;
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

    /// <summary>
    /// Lengths of the float kernel checks (<see cref="FloatDot"/>): below, at and around every vector width
    /// (4/8/16 floats) and 4-vector block (16/32/64), tails of each, and model widths.
    /// </summary>
    public static readonly int[] FloatLengths =
        [1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 47, 48, 63, 64, 65, 79, 80, 100, 127, 128, 129, 255, 256, 1000, 1536, 1537, 4095, 4096];

    /// <summary>A random finite half (any bit pattern whose exponent field is not all ones: subnormals, ±0, ±65504 included).</summary>
    public static Half RandomFiniteHalf(Random rng)
    {
        while (true)
        {
            var h = (ushort)rng.Next(0x10000);
            if ((h & 0x7C00) != 0x7C00) return BitConverter.UInt16BitsToHalf(h);
        }
    }

    /// <summary>
    /// A random bfloat16 (its bits) with the exponent within 2^±40 of 1 - so a dot of a few thousand of them with
    /// values of magnitude at most 1 stays far from overflow - or, one time in 16, a zero or subnormal.
    /// </summary>
    public static ushort RandomBf16(Random rng)
    {
        int sign = rng.Next(2) << 15, mantissa = rng.Next(0x80);
        int exponent = rng.Next(16) == 0 ? 0 : 127 + rng.Next(-40, 41);
        return (ushort)(sign | exponent << 7 | mantissa);
    }

    /// <summary>Uniform in [-1, 1).</summary>
    public static float RandomUnit(Random rng) => (float)(rng.NextDouble() * 2 - 1);

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

/// <summary>
/// The float kernels, <see cref="FloatDot"/> and <see cref="StridedRows"/>, on the vector width this process runs
/// (the widest of Vector512 / Vector256 / Vector128 that the JIT accelerates; CI runs the checker again with
/// AVX-512 and then AVX2 switched off, so one x86 machine checks all three widths). Float sums are not
/// associative, so most comparisons are bit for bit only where the kernels promise the same operations in the
/// same order; against the plain left-to-right reference, <see cref="FloatDot.Scalar"/>, they use a tolerance.
/// </summary>
internal static unsafe class FloatChecks
{
    /// <summary>The widest accelerated vector, as the float kernels pick their path.</summary>
    public static string VectorPath =>
        Vector512.IsHardwareAccelerated ? "Vector512" :
        Vector256.IsHardwareAccelerated ? "Vector256" :
        Vector128.IsHardwareAccelerated ? "Vector128" : "scalar";

    /// <summary>
    /// The lengths of the widening check, each with the positions that see every bit pattern: scalar only (1, 7 on
    /// 256/512-bit), one 128-bit vector plus tail (7), one 512-bit vector (16), one block of four (64: a lane of
    /// each accumulator), the single vectors and tail after a block (100), and a model width (1536).
    /// </summary>
    public static readonly (int N, int[] Positions)[] Widening =
        [(1, [0]), (7, [0, 3, 6]), (16, [0, 9, 15]), (64, [0, 21, 42, 63]), (100, [70, 90, 97, 99]), (1536, [0, 1535])];

    /// <summary>
    /// The F16 widening is exact for every finite half: a row of zeros holding the half h at position p, against
    /// x one-hot at p (x[p] = 1, every other x 0), sums to exactly (float)h - every other product is +0 and
    /// h * 1 + 0 is h. All 63,488 finite bit patterns (±0, the subnormals and ±65504 included) at the positions of
    /// <see cref="Widening"/>; and, so that every lane of every vector and of the tails is covered, every position
    /// of the rows up to 100 long with every 61st pattern, from a position-dependent start (a step below 1024, the
    /// run of patterns sharing one sign and exponent, reaches every exponent of both signs). The
    /// sign of a zero cannot come out of a sum that starts at +0 (-0 * 1 + +0 is +0 in round-to-nearest), so both
    /// zeros expect +0; every other pattern is compared bit for bit. One check per (length, position); a failure
    /// names the first wrong pattern and how many were wrong.
    /// </summary>
    public static void F16WideningIsExact(CheckLog log)
    {
        var patterns = new List<ushort>();
        for (int h = 0; h < 0x10000; h++)
            if ((h & 0x7C00) != 0x7C00) patterns.Add((ushort)h);
        WideningIsExact(log, "F16", patterns, h => (float)BitConverter.UInt16BitsToHalf(h),
            (w, x, n) => FloatDot.F16((Half*)w, x, n));
        // F16Scaled: the same one-hot x, scaled as TryScaleForF16 scales it (x[p] = 2^112)
        WideningIsExact(log, "F16 (input scaled)", patterns, h => (float)BitConverter.UInt16BitsToHalf(h),
            (w, x, n) => FloatDot.F16Scaled((Half*)w, x, n), FloatDot.F16InputScale);
    }

    /// <summary>The same for BF16 (widening is a 16-bit shift): all 65,282 bit patterns that are not NaN, ±inf included.</summary>
    public static void BF16WideningIsExact(CheckLog log)
    {
        var patterns = new List<ushort>();
        for (int h = 0; h < 0x10000; h++)
            if ((h & 0x7FFF) <= 0x7F80) patterns.Add((ushort)h);
        WideningIsExact(log, "BF16", patterns, h => BitConverter.UInt32BitsToSingle((uint)h << 16),
            (w, x, n) => FloatDot.BF16(w, x, n));
    }

    private delegate float Dot16(ushort* w, float* x, int n);

    private static void WideningIsExact(CheckLog log, string type, List<ushort> patterns, Func<ushort, float> widen, Dot16 dot, float one = 1)
    {
        var expected = patterns.Select(h => widen(h) is var f && f == 0 ? 0f : f).ToArray(); // -0 -> +0: see above
        foreach (var (n, full) in Widening)
        {
            var w = new ushort[n];
            var x = new float[n];
            fixed (ushort* pw = w)
            fixed (float* px = x)
                for (int p = 0; p < n; p++)
                {
                    bool all = full.Contains(p);
                    if (!all && n > 100) continue;
                    x[p] = one;
                    int wrong = 0, tried = 0;
                    string first = "";
                    for (int k = all ? 0 : p % 61; k < patterns.Count; k += all ? 1 : 61)
                    {
                        ushort h = patterns[k];
                        w[p] = h;
                        float got = dot(pw, px, n);
                        tried++;
                        if (BitConverter.SingleToUInt32Bits(got) != BitConverter.SingleToUInt32Bits(expected[k]) && wrong++ == 0)
                            first = $"0x{h:X4} gave {got:R} (0x{BitConverter.SingleToUInt32Bits(got):X8}), expected {expected[k]:R} (0x{BitConverter.SingleToUInt32Bits(expected[k]):X8})";
                    }
                    w[p] = 0;
                    x[p] = 0;
                    log.Check(wrong == 0, $"{type} widening on {VectorPath}: n {n}, position {p}: {wrong} of {tried} patterns wrong, first {first}");
                }
        }
    }

    /// <summary>
    /// FloatDot.F16 of a row equals FloatDot.F32 of the same row widened with (float)Half, bit for bit (one
    /// summation order for every storage type), and BF16 likewise: random rows (every finite half bit pattern;
    /// bfloat16 within 2^±40, zeros and subnormals), x in [-1, 1), every <see cref="TestData.FloatLengths"/>, rows
    /// starting 0, 1 and 3 elements into their buffer (unaligned loads).
    /// </summary>
    public static void HalvesEqualWidenedF32(CheckLog log)
    {
        var rng = new Random(31);
        foreach (int n in TestData.FloatLengths)
            foreach (int offset in new[] { 0, 1, 3 })
            {
                var h = new Half[n + offset];
                var b = new ushort[n + offset];
                var wh = new float[n];
                var wb = new float[n];
                var x = new float[n + offset];
                for (int i = 0; i < n; i++)
                {
                    h[offset + i] = TestData.RandomFiniteHalf(rng);
                    b[offset + i] = TestData.RandomBf16(rng);
                    wh[i] = (float)h[offset + i];
                    wb[i] = BitConverter.UInt32BitsToSingle((uint)b[offset + i] << 16);
                    x[offset + i] = TestData.RandomUnit(rng);
                }
                fixed (Half* ph = h) fixed (ushort* pb = b) fixed (float* pwh = wh, pwb = wb, px = x)
                {
                    float f16 = FloatDot.F16(ph + offset, px + offset, n), f32 = FloatDot.F32(pwh, px + offset, n);
                    log.Check(BitConverter.SingleToUInt32Bits(f16) == BitConverter.SingleToUInt32Bits(f32),
                        $"F16 = F32 of the widened row on {VectorPath}: n {n}, offset {offset}: {f16:R} != {f32:R}");
                    var xs = new float[n];
                    new ReadOnlySpan<float>(px + offset, n).CopyTo(xs);
                    log.Check(FloatDot.TryScaleForF16(xs), $"TryScaleForF16 refused x in [-1, 1): n {n}");
                    fixed (float* pxs = xs)
                    {
                        float scaled = FloatDot.F16Scaled(ph + offset, pxs, n);
                        log.Check(BitConverter.SingleToUInt32Bits(scaled) == BitConverter.SingleToUInt32Bits(f16),
                            $"F16Scaled = F16 on {VectorPath}: n {n}, offset {offset}: {scaled:R} != {f16:R}");
                    }
                    float bf16 = FloatDot.BF16(pb + offset, px + offset, n), bf32 = FloatDot.F32(pwb, px + offset, n);
                    log.Check(BitConverter.SingleToUInt32Bits(bf16) == BitConverter.SingleToUInt32Bits(bf32),
                        $"BF16 = F32 of the widened row on {VectorPath}: n {n}, offset {offset}: {bf16:R} != {bf32:R}");
                }
            }
    }

    /// <summary>
    /// <see cref="FloatDot.TryScaleForF16"/> scales only when every |x| is below 2^16 and none is NaN (x * 2^112
    /// must stay finite), and leaves a refused x untouched; an accepted x is scaled exactly.
    /// </summary>
    public static void ScaleForF16Limits(CheckLog log)
    {
        foreach (var (bad, name) in new[] { (65536f, "2^16"), (-65536f, "-2^16"), (float.PositiveInfinity, "+inf"), (float.NaN, "NaN") })
        {
            var x = new float[] { 0.5f, -3f, bad, 1f };
            var before = (float[])x.Clone();
            bool scaled = FloatDot.TryScaleForF16(x);
            log.Check(!scaled && x.AsSpan().SequenceEqual(before), $"TryScaleForF16 with {name}: scaled {scaled}, x [{string.Join(", ", x)}]");
        }
        var ok = new float[] { 65535.996f, -65535.996f, 1e-30f, 0 };
        bool accepted = FloatDot.TryScaleForF16(ok);
        log.Check(accepted && float.IsFinite(ok[0]) && ok[0] == 65535.996f * FloatDot.F16InputScale && ok[2] == 1e-30f * FloatDot.F16InputScale,
            $"TryScaleForF16 below 2^16: accepted {accepted}, x [{string.Join(", ", ok)}]");
    }

    /// <summary>
    /// FloatDot.F32 / F16 / BF16 against <see cref="FloatDot.Scalar"/> (left to right, no FMA): |a - b| at most
    /// 1e-5 * sum |w_i x_i| + 1e-30 (the sum in double). Random rows: floats in [-4, 4), finite halves in
    /// [-8, 8] (about a sixteenth of them subnormal or zero), bfloat16 within 2^±40; x in [-1, 1); every
    /// <see cref="TestData.FloatLengths"/>, three rows each.
    /// </summary>
    public static void DotsMatchScalar(CheckLog log)
    {
        var rng = new Random(32);
        foreach (int n in TestData.FloatLengths)
            for (int rep = 0; rep < 3; rep++)
            {
                var f = new float[n];
                var h = new Half[n];
                var b = new ushort[n];
                var x = new float[n];
                for (int i = 0; i < n; i++)
                {
                    f[i] = 4 * TestData.RandomUnit(rng);
                    h[i] = rng.Next(16) == 0 ? BitConverter.UInt16BitsToHalf((ushort)(rng.Next(2) << 15 | rng.Next(0x400))) : (Half)(8 * TestData.RandomUnit(rng));
                    b[i] = TestData.RandomBf16(rng);
                    x[i] = TestData.RandomUnit(rng);
                }
                fixed (float* pf = f, px = x) fixed (Half* ph = h) fixed (ushort* pb = b)
                {
                    Compare(log, "F32", FloatDot.F32(pf, px, n), pf, DType.F32, px, n);
                    Compare(log, "F16", FloatDot.F16(ph, px, n), ph, DType.F16, px, n);
                    Compare(log, "BF16", FloatDot.BF16(pb, px, n), pb, DType.BF16, px, n);
                }
            }

        static void Compare(CheckLog log, string type, float got, void* w, DType dtype, float* x, int n)
        {
            float expected = FloatDot.Scalar(w, dtype, x, n);
            double magnitude = 0;
            for (int i = 0; i < n; i++)
            {
                double wi = dtype switch
                {
                    DType.F32 => ((float*)w)[i],
                    DType.F16 => (double)((Half*)w)[i],
                    _ => BitConverter.UInt32BitsToSingle((uint)((ushort*)w)[i] << 16),
                };
                magnitude += Math.Abs(wi * x[i]);
            }
            double tolerance = 1e-5 * magnitude + 1e-30;
            log.Check(Math.Abs((double)got - expected) <= tolerance,
                $"{type} dot on {VectorPath} vs scalar: n {n}: {got:R} vs {expected:R}, difference {Math.Abs((double)got - expected):G3} > {tolerance:G3}");
        }
    }

    /// <summary>
    /// <see cref="FloatDot.IndexOfNonFiniteF16"/>: -1 on finite data (random finite patterns with ±65504, the
    /// smallest and largest subnormals and ±0 planted), and on rows of every length with +inf, -inf, a quiet NaN, a
    /// signalling NaN or 0xFFFF planted at the first, last and other positions (in the 16-half vector body and in
    /// the tail), the index of the first one; with two planted, the earlier.
    /// </summary>
    public static void IndexOfNonFiniteF16(CheckLog log)
    {
        var rng = new Random(33);
        ushort[] finiteEdges = [0x7BFF, 0xFBFF, 0x0001, 0x8001, 0x03FF, 0x83FF, 0x0400, 0x0000, 0x8000, 0x7BFE];
        ushort[] nonFinite = [0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFFFF, 0x7DFF];
        int[] lengths = [0, .. TestData.FloatLengths, 4097, 10_000];
        foreach (int n in lengths)
        {
            var w = new Half[n];
            for (int i = 0; i < n; i++)
                w[i] = i < finiteEdges.Length && rng.Next(2) == 0 ? BitConverter.UInt16BitsToHalf(finiteEdges[i]) : TestData.RandomFiniteHalf(rng);
            for (int i = 0; i < finiteEdges.Length && i < n; i++) w[n - 1 - i] = BitConverter.UInt16BitsToHalf(finiteEdges[i]);
            fixed (Half* pw = w)
            {
                long found = FloatDot.IndexOfNonFiniteF16(pw, n);
                log.Check(found == -1, $"IndexOfNonFiniteF16: finite row of {n}: returned {found}, expected -1");
                if (n == 0) continue;
                var positions = new[] { 0, 1, 7, 8, 15, 16, 17, 31, 32, n / 2, n - 17, n - 16, n - 15, n - 2, n - 1 }.Where(p => p >= 0 && p < n).Distinct().ToArray();
                foreach (int p in positions)
                {
                    var bits = nonFinite[rng.Next(nonFinite.Length)];
                    var saved = w[p];
                    w[p] = BitConverter.UInt16BitsToHalf(bits);
                    found = FloatDot.IndexOfNonFiniteF16(pw, n);
                    log.Check(found == p, $"IndexOfNonFiniteF16: n {n}, 0x{bits:X4} at {p}: returned {found}");
                    foreach (int q in positions.Where(q => q > p).Take(2))
                    {
                        var savedQ = w[q];
                        w[q] = BitConverter.UInt16BitsToHalf(nonFinite[rng.Next(nonFinite.Length)]);
                        found = FloatDot.IndexOfNonFiniteF16(pw, n);
                        log.Check(found == p, $"IndexOfNonFiniteF16: n {n}, non-finite at {p} and {q}: returned {found}, expected {p}");
                        w[q] = savedQ;
                    }
                    w[p] = saved;
                }
                // a row that only ever sees part of the buffer: the non-finite value just past n is not its business
                if (n > 1)
                {
                    var saved = w[n - 1];
                    w[n - 1] = BitConverter.UInt16BitsToHalf(0x7C00);
                    found = FloatDot.IndexOfNonFiniteF16(pw, n - 1);
                    log.Check(found == -1, $"IndexOfNonFiniteF16: n {n - 1} with +inf at [{n - 1}] (outside): returned {found}, expected -1");
                    w[n - 1] = saved;
                }
            }
        }
    }

    /// <summary>
    /// <see cref="StridedRows.WeightedSum"/> equals <see cref="StridedRows.WeightedSumScalar"/> bit for bit (each
    /// element one FMA chain in row order, on every path) and writes nothing past o[n); <see cref="StridedRows.Dots"/>
    /// equals FloatDot.F32 * scale bit for bit and writes nothing past y[count). Random rows in [-1, 1), weights in
    /// [0, 1) (softmax probabilities in attention), n in 1..130, count 1, 2, 7, 33, stride n, n + 1, n + 13 and
    /// 2n + 5, rows starting 0 or 1 floats into their buffer. Also the rows summed in two pieces, the second with
    /// accumulate (as decoding attention does, a block of positions at a time), equal the whole sum bit for bit, and
    /// both kernels give the same bits with the decode's prefetching of rows ahead. And the F16 forms
    /// (<see cref="HalfRowsMatch"/>).
    /// </summary>
    public static void StridedRowsMatch(CheckLog log)
    {
        var rng = new Random(34);
        foreach (int n in new[] { 1, 3, 4, 8, 15, 16, 17, 32, 63, 64, 65, 96, 128, 130 })
            foreach (int count in new[] { 1, 2, 7, 33 })
                foreach (int stride in new[] { n, n + 1, n + 13, 2 * n + 5 })
                    foreach (int offset in new[] { 0, 1 })
                    {
                        var rows = new float[offset + (long)(count - 1) * stride + n];
                        for (int i = 0; i < rows.Length; i++) rows[i] = TestData.RandomUnit(rng);
                        var weights = new float[count];
                        for (int t = 0; t < count; t++) weights[t] = (float)rng.NextDouble();
                        var x = new float[n];
                        for (int i = 0; i < n; i++) x[i] = TestData.RandomUnit(rng);
                        float scale = 1 / MathF.Sqrt(n);
                        var o = new float[n + 1];
                        var expected = new float[n + 1];
                        o[n] = expected[n] = -12345;
                        var y = new float[count + 1];
                        var dots = new float[count + 1];
                        y[count] = dots[count] = -12345;
                        // the same rows in two pieces, the second continuing the first's chains (accumulate)
                        var pieces = new float[n + 1];
                        pieces[n] = -12345;
                        // and with the decode's prefetching of rows ahead (reads past no row the run has)
                        var prefetched = new float[n + 1];
                        var prefetchedDots = new float[count + 1];
                        prefetched[n] = -12345;
                        prefetchedDots[count] = -12345;
                        int split = count / 2;
                        fixed (float* pr = rows, pw = weights, px = x, po = o, pe = expected, py = y, pd = dots, pp = pieces, pf = prefetched, pg = prefetchedDots)
                        {
                            float* r = pr + offset;
                            StridedRows.WeightedSum(r, stride, split, pw, n, pp);
                            StridedRows.WeightedSum(r + (long)split * stride, stride, count - split, pw + split, n, pp, accumulate: true);
                            StridedRows.WeightedSum(r, stride, count, pw, n, po);
                            StridedRows.WeightedSum(r, stride, count, pw, n, pf, prefetch: true);
                            StridedRows.WeightedSumScalar(r, stride, count, pw, pe, 0, n);
                            StridedRows.Dots(r, stride, count, px, n, scale, py);
                            StridedRows.Dots(r, stride, count, px, n, scale, pg, prefetch: true);
                            for (int t = 0; t < count; t++) pd[t] = FloatDot.F32(r + (long)t * stride, px, n) * scale;
                        }
                        string shape = $"n {n}, count {count}, stride {stride}, offset {offset} (index = column, last = the float after o[n))";
                        HalfRowsMatch(log, rows, offset, stride, count, weights, x, n, scale, shape);
                        EqualBits(log, expected, o, $"StridedRows.WeightedSum on {VectorPath}: {shape}");
                        EqualBits(log, expected, pieces, $"StridedRows.WeightedSum in two pieces (accumulate) on {VectorPath}: {shape}");
                        EqualBits(log, dots, y, $"StridedRows.Dots on {VectorPath}: {shape.Replace("column, last = the float after o[n)", "row, last = the float after y[count)")}");
                        EqualBits(log, expected, prefetched, $"StridedRows.WeightedSum with prefetch on {VectorPath}: {shape}");
                        EqualBits(log, dots, prefetchedDots, $"StridedRows.Dots with prefetch on {VectorPath}: {shape.Replace("column, last = the float after o[n)", "row, last = the float after y[count)")}");
                    }
    }

    /// <summary>
    /// The F16 forms (an F16 KV cache) on the same rows rounded to halves: each equals the F32 form on the halves
    /// widened to F32, bit for bit, with and without the prefetch and in two pieces; the F16 scalar reference too.
    /// </summary>
    private static void HalfRowsMatch(CheckLog log, float[] rows, int offset, int stride, int count, float[] weights, float[] x, int n, float scale, string shape)
    {
        var halves = new Half[rows.Length];
        var widened = new float[rows.Length];
        for (int i = 0; i < rows.Length; i++) widened[i] = (float)(halves[i] = (Half)rows[i]);
        float[] Filled(int length) { var a = new float[length + 1]; a[length] = -12345; return a; }
        float[] sum = Filled(n), sumF16 = Filled(n), sumF16Prefetch = Filled(n), pieces = Filled(n), scalar = Filled(n);
        float[] dots = Filled(count), dotsF16 = Filled(count), dotsF16Prefetch = Filled(count);
        int split = count / 2;
        fixed (Half* ph = halves) fixed (float* pw = widened, pwt = weights, px = x, ps = sum, ph16 = sumF16, php = sumF16Prefetch, pp = pieces,
                   psc = scalar, pd = dots, pd16 = dotsF16, pdp = dotsF16Prefetch)
        {
            Half* h = ph + offset;
            float* w = pw + offset;
            StridedRows.WeightedSum(w, stride, count, pwt, n, ps);
            StridedRows.WeightedSum(h, stride, count, pwt, n, ph16);
            StridedRows.WeightedSum(h, stride, count, pwt, n, php, prefetch: true);
            StridedRows.WeightedSum(h, stride, split, pwt, n, pp);
            StridedRows.WeightedSum(h + (long)split * stride, stride, count - split, pwt + split, n, pp, accumulate: true);
            StridedRows.WeightedSumScalar(h, stride, count, pwt, psc, 0, n);
            StridedRows.Dots(w, stride, count, px, n, scale, pd);
            StridedRows.Dots(h, stride, count, px, n, scale, pd16);
            StridedRows.Dots(h, stride, count, px, n, scale, pdp, prefetch: true);
        }
        string dotShape = shape.Replace("column, last = the float after o[n)", "row, last = the float after y[count)");
        EqualBits(log, sum, sumF16, $"StridedRows.WeightedSum of F16 rows = F32 of the widened rows on {VectorPath}: {shape}");
        EqualBits(log, sum, sumF16Prefetch, $"StridedRows.WeightedSum of F16 rows with prefetch on {VectorPath}: {shape}");
        EqualBits(log, sum, pieces, $"StridedRows.WeightedSum of F16 rows in two pieces on {VectorPath}: {shape}");
        EqualBits(log, sum, scalar, $"StridedRows.WeightedSumScalar of F16 rows: {shape}");
        EqualBits(log, dots, dotsF16, $"StridedRows.Dots of F16 rows = F32 of the widened rows on {VectorPath}: {dotShape}");
        EqualBits(log, dots, dotsF16Prefetch, $"StridedRows.Dots of F16 rows with prefetch on {VectorPath}: {dotShape}");
    }

    /// <summary>Equal bits (so -0 differs from +0 and NaNs compare by payload), or a failure naming the first differing index and both values.</summary>
    private static void EqualBits(CheckLog log, float[] expected, float[] actual, string what)
    {
        int i = 0;
        while (i < expected.Length && BitConverter.SingleToUInt32Bits(expected[i]) == BitConverter.SingleToUInt32Bits(actual[i])) i++;
        log.Check(i == expected.Length, i == expected.Length ? what : $"{what}: first difference at [{i}]: got {actual[i]:R} (0x{BitConverter.SingleToUInt32Bits(actual[i]):X8}), " +
                                                                    $"expected {expected[i]:R} (0x{BitConverter.SingleToUInt32Bits(expected[i]):X8})");
    }
}
