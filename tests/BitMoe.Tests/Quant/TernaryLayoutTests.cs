using BitMoe.KernelCheck;
using BitMoe.Kernels;
using BitMoe.Quant;

namespace BitMoe.Tests.Quant;

public class TernaryLayoutTests
{
    public static TheoryData<int> LengthData()
    {
        var d = new TheoryData<int>();
        foreach (var n in TestData.LayoutLengths) d.Add(n);
        return d;
    }

    private static sbyte[] RandomTernary(Random rng, int n) => TestData.RandomTernary(rng, n);
    private static sbyte[] RandomInt8(Random rng, int n) => TestData.RandomInt8(rng, n);

    private static void AssertPassed(Action<CheckLog> check)
    {
        var log = new CheckLog();
        check(log);
        Assert.True(log.Failed == 0, log.ToString());
    }

    [Theory, MemberData(nameof(LengthData))]
    public void Tq2PackUnpackIsIdentity(int cols) => AssertPassed(log => KernelChecks.Tq2RoundTrip(cols, log));

    [Theory, MemberData(nameof(LengthData))]
    public void Tq1PackUnpackIsIdentity(int cols) => AssertPassed(log => KernelChecks.Tq1RoundTrip(cols, log));

    [Fact]
    public void Tq1EncodingReadsBackEveryFiveTritValue()
    {
        // all 3^5 digit combinations through one tail byte (5 weights -> g = 1, weights 0..4 in one byte)
        for (int v = 0; v < 243; v++)
        {
            var w = new sbyte[5];
            for (int n = 0, r = v; n < 5; n++, r /= 3) w[4 - n] = (sbyte)(r % 3 - 1);
            var packed = new byte[Tq1Layout.RowBytes(5)];
            Tq1Layout.Pack(w, 1f, packed);
            Assert.Equal((byte)((v * 256 + 242) / 243), packed[0]);
            var back = new sbyte[5];
            Tq1Layout.Unpack(packed, back);
            Assert.Equal(w, back);
        }
    }

    [Theory, MemberData(nameof(LengthData))]
    public void ScalarDotOnFileLayoutsIsExact(int cols)
    {
        var rng = new Random(cols + 13);
        var w = RandomTernary(rng, cols);
        var x = RandomInt8(rng, cols);
        long expected = 0;
        for (int i = 0; i < cols; i++) expected += w[i] * x[i];
        var p2 = new byte[Tq2Layout.RowBytes(cols)];
        Tq2Layout.Pack(w, 1f, p2);
        Assert.Equal(expected, TernaryDot.Tq2Scalar(p2, x, cols));
        var p1 = new byte[Tq1Layout.RowBytes(cols)];
        Tq1Layout.Pack(w, 1f, p1);
        Assert.Equal(expected, TernaryDot.Tq1Scalar(p1, x, cols));
    }

    [Fact]
    public void FileGemvOverRowsMatchesPerRowDots()
    {
        var rng = new Random(5);
        const int rows = 7, cols = 320;
        var w = RandomTernary(rng, rows * cols);
        var x = RandomInt8(rng, cols);
        int s2 = Tq2Layout.RowBytes(cols), s1 = Tq1Layout.RowBytes(cols);
        var p2 = new byte[rows * s2];
        var p1 = new byte[rows * s1];
        for (int r = 0; r < rows; r++)
        {
            Tq2Layout.Pack(w.AsSpan(r * cols, cols), 1f, p2.AsSpan(r * s2, s2));
            Tq1Layout.Pack(w.AsSpan(r * cols, cols), 1f, p1.AsSpan(r * s1, s1));
        }
        var y2 = new int[rows];
        var y1 = new int[rows];
        TernaryGemv.Tq2Scalar(p2, cols, x, y2, 2, rows);
        TernaryGemv.Tq1Scalar(p1, cols, x, y1, 2, rows);
        for (int r = 0; r < rows; r++)
        {
            int e = r < 2 ? 0 : Int8Dot.Scalar(w.AsSpan(r * cols, cols), x);
            Assert.Equal(e, y2[r]);
            Assert.Equal(e, y1[r]);
        }
    }

    /// <summary>The test vector of the byte-exact tests: w[i] = ((7i + i/5) mod 3) - 1, so its code c = w + 1 = (7i + i/5) mod 3.</summary>
    private static sbyte[] TestVector(int n)
    {
        var w = new sbyte[n];
        for (int i = 0; i < n; i++) w[i] = (sbyte)((i * 7 + i / 5) % 3 - 1);
        return w;
    }

    [Fact]
    public void Tq2BlockBytesEqualLlamaCppReference()
    {
        // quantize_row_tq2_0_ref on x = w * 0.5: d = max|x| = 0.5, codes lroundf(x/d) + 1 = w + 1.
        // qs[j + m] for j in {0, 32}, m in 0..31 holds x[4j + m + 32n] at bits 2n (n = 0..3), i.e.
        // byte m < 32 holds weights m, m+32, m+64, m+96 and byte 32 + m holds 128+m, 160+m, 192+m, 224+m.
        // Byte 0: codes c(0) = 0, c(32) = (224 + 6) % 3 = 2, c(64) = (448 + 12) % 3 = 1, c(96) = (672 + 19) % 3 = 1
        //         -> 0 | 2 << 2 | 1 << 4 | 1 << 6 = 0x58.
        // Byte 1: c(1) = 7 % 3 = 1, c(33) = (231 + 6) % 3 = 0, c(65) = (455 + 13) % 3 = 0, c(97) = (679 + 19) % 3 = 2
        //         -> 1 | 0 | 0 | 2 << 6 = 0x81.
        // Byte 32: c(128) = (896 + 25) % 3 = 0, c(160) = (1120 + 32) % 3 = 0, c(192) = (1344 + 38) % 3 = 2,
        //          c(224) = (1568 + 44) % 3 = 1 -> 0 | 0 | 2 << 4 | 1 << 6 = 0x60.
        // d = fp16(0.5) = 0x3800, little-endian 00 38. The vector repeats with period 15 in i, so the bytes
        // repeat with period 5 within each 32-byte half (32 = 2 mod 15 shifts the pattern by whole periods).
        byte[] expectedQs =
        [
            0x58, 0x81, 0x16, 0x60, 0x05, 0x58, 0x81, 0x16, 0x60, 0x05, 0x58, 0x81, 0x16, 0x60, 0x05, 0x58,
            0x81, 0x16, 0x60, 0x05, 0x58, 0x81, 0x16, 0x60, 0x05, 0x58, 0x81, 0x16, 0x60, 0x05, 0x58, 0x81,
            0x60, 0x05, 0x58, 0x81, 0x16, 0x60, 0x05, 0x58, 0x81, 0x16, 0x60, 0x05, 0x58, 0x81, 0x16, 0x60,
            0x05, 0x58, 0x81, 0x16, 0x60, 0x05, 0x58, 0x81, 0x16, 0x60, 0x05, 0x58, 0x81, 0x16, 0x60, 0x05,
        ];
        var packed = new byte[Tq2Layout.RowBytes(256)];
        Assert.Equal(66, packed.Length);
        Tq2Layout.Pack(TestVector(256), 0.5f, packed);
        Assert.Equal(expectedQs, packed[..64]);
        Assert.Equal(new byte[] { 0x00, 0x38 }, packed[64..]);
        Assert.Equal((Half)0.5f, Tq2Layout.BlockScale(packed, 256, 0));
    }

    [Fact]
    public void Tq1BlockBytesEqualLlamaCppReference()
    {
        // quantize_row_tq1_0_ref on x = w * 0.5 (d = 0.5, codes c = w + 1 = (7i + i/5) % 3):
        // qs[m], m < 32: q = c(m)*81 + c(m+32)*27 + c(m+64)*9 + c(m+96)*3 + c(m+128) (first weight most
        //   significant: q *= 3; q += c, five times), stored as ceil(q * 256 / 243) = (q*256 + 242) / 243.
        //   Byte 0: c(0), c(32), c(64), c(96), c(128) = 0, 2, 1, 1, 0 -> q = 54 + 9 + 3 = 66 -> ceil(16896/243) = 70 = 0x46.
        //   Byte 1: c(1), c(33), c(65), c(97), c(129) = 1, 0, 0, 2, (903 + 25) % 3 = 1 -> q = 81 + 6 + 1 = 88
        //           -> ceil(22528/243) = 93 = 0x5D.
        // qs[32 + m], m < 16: weights 160 + m + 16n.
        //   Byte 32: c(160), c(176), c(192), c(208), c(224) = 0, (1232 + 35) % 3 = 1, 2, (1456 + 41) % 3 = 0, 1
        //            -> q = 27 + 18 + 1 = 46 -> ceil(11776/243) = 49 = 0x31.
        // qh[j], j < 4: weights 240 + j + 4n (n = 0..3), q = ((c0*3 + c1)*3 + c2)*3 + c3, then q *= 3 (top trit first).
        //   qh[0]: c(240), c(244), c(248), c(252) = 0, 1, 0, 2 -> q = (9 + 2) * 3 = 33 -> ceil(8448/243) = 35 = 0x23.
        // d = fp16(0.5) = 0x3800, little-endian 00 38.
        byte[] expectedQs =
        [
            0x46, 0x5D, 0xD1, 0x18, 0x74, 0x46, 0x5D, 0xD1, 0x18, 0x74, 0x46, 0x5D, 0xD1, 0x18, 0x74, 0x46,
            0x5D, 0xD1, 0x18, 0x74, 0x46, 0x5D, 0xD1, 0x18, 0x74, 0x46, 0x5D, 0xD1, 0x18, 0x74, 0x46, 0x5D,
            0x31, 0x92, 0xB6, 0x22, 0x66, 0x31, 0x92, 0xB6, 0x22, 0x66, 0x31, 0x92, 0xB6, 0x22, 0x66, 0x31,
        ];
        byte[] expectedQh = [0x23, 0x5F, 0xCB, 0x43];
        var packed = new byte[Tq1Layout.RowBytes(256)];
        Assert.Equal(54, packed.Length);
        Tq1Layout.Pack(TestVector(256), 0.5f, packed);
        Assert.Equal(expectedQs, packed[..48]);
        Assert.Equal(expectedQh, packed[48..52]);
        Assert.Equal(new byte[] { 0x00, 0x38 }, packed[52..]);
    }

    [Fact]
    public void TailBlocksFollowTheDocumentedOrder()
    {
        // 256 + 6 weights: one full block, then a tail of t = 6.
        var w = TestVector(262);
        // tq2 tail: g = ceil(6/4) = 2 bytes; byte 0 = tail weights 0, 2, 4, (6: pad, code 1); byte 1 = 1, 3, (5, 7: pad).
        // tail codes c(256..261) = (1792+51)%3=1, (1799+51)%3=2, (1806+51)%3=0, (1813+51)%3=1, (1820+52)%3=0, (1827+52)%3=1
        // byte 0: c(256)=1, c(258)=0, c(260)=0, pad 1 -> 1 | 0 | 0 | 1 << 6 = 0x41
        // byte 1: c(257)=2, c(259)=1, pad 1, pad 1 -> 2 | 1 << 2 | 1 << 4 | 1 << 6 = 0x56
        var p2 = new byte[Tq2Layout.RowBytes(262)];
        Assert.Equal(66 + 2, p2.Length);
        Tq2Layout.Pack(w, 0.5f, p2);
        Assert.Equal(new byte[] { 0x41, 0x56 }, p2[66..]);
        Assert.Equal(1, Tq2Layout.BlockCount(262)); // the tail carries no fp16 d
        // tq1 tail: g = ceil(6/5) = 2 bytes; byte 0 = tail weights 0, 2, 4, (6, 8: pad); byte 1 = 1, 3, (5, 7, 9: pad)
        // byte 0: q = 1*81 + 0*27 + 0*9 + 1*3 + 1 = 85 -> ceil(21760/243) = 90 = 0x5A
        // byte 1: q = 2*81 + 1*27 + 1*9 + 1*3 + 1 = 202 -> ceil(51712/243) = 213 = 0xD5
        var p1 = new byte[Tq1Layout.RowBytes(262)];
        Assert.Equal(54 + 2, p1.Length);
        Tq1Layout.Pack(w, 0.5f, p1);
        Assert.Equal(new byte[] { 0x5A, 0xD5 }, p1[54..]);
        Assert.Equal(1, Tq1Layout.BlockCount(262));
    }

    [Fact]
    public void AllZeroBlockStoresZeroScaleLikeLlamaCpp()
    {
        var w = new sbyte[512];
        w[300] = 1;
        var p2 = new byte[Tq2Layout.RowBytes(512)];
        Tq2Layout.Pack(w, 0.5f, p2);
        Assert.Equal((Half)0f, Tq2Layout.BlockScale(p2, 512, 0));
        Assert.Equal((Half)0.5f, Tq2Layout.BlockScale(p2, 512, 1));
        var p1 = new byte[Tq1Layout.RowBytes(512)];
        Tq1Layout.Pack(w, 0.5f, p1);
        Assert.Equal((Half)0f, Tq1Layout.BlockScale(p1, 512, 0));
        Assert.Equal((Half)0.5f, Tq1Layout.BlockScale(p1, 512, 1));
    }

    [Fact]
    public void RejectsNonTernaryValuesAndBadScales()
    {
        var dst = new byte[64];
        Assert.Throws<ArgumentException>(() => Tq2Layout.Pack(new sbyte[] { 0, 2 }, 1f, dst));
        Assert.Throws<ArgumentException>(() => Tq1Layout.Pack(new sbyte[] { -2 }, 1f, dst));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tq2Layout.Pack(new sbyte[] { 1 }, -1f, dst));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tq1Layout.Pack(new sbyte[] { 1 }, float.NaN, dst));
        Assert.Throws<ArgumentException>(() => Tq2Layout.Pack(new sbyte[300], 1f, dst));
    }

    private static double Bits(int bytes, int cols) => bytes * 8.0 / cols;

    [Fact]
    public void SizesStayWithinBoundsForMultiplesOf256()
    {
        for (int cols = 256; cols <= 16384; cols += 256)
        {
            Assert.Equal(2.0625, Bits(Tq2Layout.RowBytes(cols), cols));
            Assert.Equal(1.6875, Bits(Tq1Layout.RowBytes(cols), cols));
            Assert.True(Bits(Tq2Layout.RowBytes(cols), cols) <= 2.07);
            Assert.True(Bits(Tq1Layout.RowBytes(cols), cols) <= 1.70);
        }
    }

    [Fact]
    public void SizesStayWithinBoundsForOtherLengths()
    {
        // every length from 64 on
        var lengths = Enumerable.Range(64, 4096);
        foreach (int cols in lengths)
        {
            Assert.True(Bits(Tq2Layout.RowBytes(cols), cols) <= 2.3, $"tq2 cols {cols}: {Bits(Tq2Layout.RowBytes(cols), cols)}");
            Assert.True(Bits(Tq1Layout.RowBytes(cols), cols) <= 1.9, $"tq1 cols {cols}: {Bits(Tq1Layout.RowBytes(cols), cols)}");
        }
        // the sizes the report quotes
        Assert.Equal(48, Tq2Layout.RowBytes(192));  // 2.000 bits/weight
        Assert.Equal(39, Tq1Layout.RowBytes(192));  // 1.625
        Assert.Equal(12, Tq2Layout.RowBytes(48));   // 2.000
        Assert.Equal(10, Tq1Layout.RowBytes(48));   // 1.667
        Assert.Equal(16, Tq2Layout.RowBytes(64));   // 2.000
        Assert.Equal(13, Tq1Layout.RowBytes(64));   // 1.625
        Assert.Equal(17, Tq2Layout.RowBytes(65));   // 2.092 (with an fp16 d in the tail it would be 19 bytes, 2.338)
        Assert.Equal(14, Tq1Layout.RowBytes(66));   // 1.697 (16 bytes, 1.939, with one)

        Assert.Equal(396, Tq2Layout.RowBytes(1536));
        Assert.Equal(324, Tq1Layout.RowBytes(1536));
    }
}
