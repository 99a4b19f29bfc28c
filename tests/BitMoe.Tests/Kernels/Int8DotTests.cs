using BitMoe.KernelCheck;

namespace BitMoe.Tests.Kernels;

public class Int8DotTests
{
    public static TheoryData<int> Lengths()
    {
        var d = new TheoryData<int>();
        foreach (var n in TestData.DotLengths) d.Add(n);
        return d;
    }

    [Theory, MemberData(nameof(Lengths))]
    public void VectorPathEqualsScalar(int n)
    {
        var log = new CheckLog();
        KernelChecks.Int8DotMatchesScalar(n, log);
        Assert.True(log.Failed == 0, log.ToString());
    }
}
