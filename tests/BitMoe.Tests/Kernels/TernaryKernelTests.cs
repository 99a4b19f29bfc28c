using BitMoe.KernelCheck;
using BitMoe.Kernels;

namespace BitMoe.Tests.Kernels;

/// <summary>
/// The comparisons themselves live in tests/BitMoe.KernelCheck/KernelChecks.cs, shared with the console
/// checker that CI also runs for linux-arm64 under qemu (tools/ci/neon-check.sh), where the NEON facts below
/// are skipped on x86.
/// </summary>
public class TernaryKernelTests
{
    private static void AssertPassed(Action<CheckLog> check)
    {
        var log = new CheckLog();
        check(log);
        Assert.True(log.Failed == 0, log.ToString());
        Assert.True(log.Passed > 0, "no comparison ran");
    }

    [Fact] public void ScalarKernelLayoutIsExact() => AssertPassed(KernelChecks.ScalarGemvIsExact);

    [IsaFact(KernelIsa.Avx2)] public void Avx2MatchesScalar() => AssertPassed(log => KernelChecks.GemvMatchesScalar(KernelIsa.Avx2, log));
    [IsaFact(KernelIsa.AvxVnni)] public void AvxVnniMatchesScalar() => AssertPassed(log => KernelChecks.GemvMatchesScalar(KernelIsa.AvxVnni, log));
    [IsaFact(KernelIsa.Avx512)] public void Avx512MatchesScalar() => AssertPassed(log => KernelChecks.GemvMatchesScalar(KernelIsa.Avx512, log));
    [IsaFact(KernelIsa.Neon)] public void NeonMatchesScalar() => AssertPassed(log => KernelChecks.GemvMatchesScalar(KernelIsa.Neon, log));
    [Fact] public void ScalarMatchesScalarOnExtremes() => AssertPassed(log => KernelChecks.GemvMatchesScalar(KernelIsa.Scalar, log));

    [Fact] public void GemmScalarMatchesGemv() => AssertPassed(log => KernelChecks.GemmMatchesScalar(KernelIsa.Scalar, log));
    [IsaFact(KernelIsa.Avx2)] public void GemmAvx2MatchesScalar() => AssertPassed(log => KernelChecks.GemmMatchesScalar(KernelIsa.Avx2, log));
    [IsaFact(KernelIsa.AvxVnni)] public void GemmAvxVnniMatchesScalar() => AssertPassed(log => KernelChecks.GemmMatchesScalar(KernelIsa.AvxVnni, log));
    [IsaFact(KernelIsa.Avx512)] public void GemmAvx512MatchesScalar() => AssertPassed(log => KernelChecks.GemmMatchesScalar(KernelIsa.Avx512, log));
    [IsaFact(KernelIsa.Neon)] public void GemmNeonMatchesScalar() => AssertPassed(log => KernelChecks.GemmMatchesScalar(KernelIsa.Neon, log));

    [Fact] public void RepackFromFileLayoutsGivesTheSameDots() => AssertPassed(KernelChecks.RepackFromFileLayouts);

    [Fact]
    public void KernelLayoutRowRoundTrips()
    {
        AssertPassed(KernelChecks.KernelLayoutRoundTrip);
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
