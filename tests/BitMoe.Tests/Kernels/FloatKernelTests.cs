using BitMoe.KernelCheck;

namespace BitMoe.Tests.Kernels;

/// <summary>
/// The float kernels (FloatDot, StridedRows). The comparisons live in tests/BitMoe.KernelCheck/KernelChecks.cs
/// (<see cref="FloatChecks"/>), shared with the console checker. These facts run on the vector width this test
/// process gets (the widest the JIT accelerates, plus the narrower paths the kernels take for short rows);
/// .ci/run runs the checker again with DOTNET_EnableAVX512=0 (256-bit) and DOTNET_EnableAVX2=0 (128-bit).
/// </summary>
public class FloatKernelTests
{
    private static void AssertPassed(Action<CheckLog> check)
    {
        var log = new CheckLog();
        check(log);
        Assert.True(log.Failed == 0, $"on {FloatChecks.VectorPath}: {log}");
        Assert.True(log.Passed > 0, "no comparison ran");
    }

    [Fact] public void F16WideningIsExactForEveryFiniteHalf() => AssertPassed(FloatChecks.F16WideningIsExact);
    [Fact] public void BF16WideningIsExactForEveryNonNaN() => AssertPassed(FloatChecks.BF16WideningIsExact);
    [Fact] public void HalfRowsEqualTheirWidenedF32Rows() => AssertPassed(FloatChecks.HalvesEqualWidenedF32);
    [Fact] public void ScaleForF16RefusesWhatWouldOverflow() => AssertPassed(FloatChecks.ScaleForF16Limits);
    [Fact] public void DotsMatchTheScalarReference() => AssertPassed(FloatChecks.DotsMatchScalar);
    [Fact] public void IndexOfNonFiniteF16FindsTheFirst() => AssertPassed(FloatChecks.IndexOfNonFiniteF16);
    [Fact] public void StridedRowsMatchTheirReferences() => AssertPassed(FloatChecks.StridedRowsMatch);
}
