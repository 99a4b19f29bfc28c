using BitMoe.Kernels;

namespace BitMoe.Tests.Kernels;

public class Int8DotTests
{
    [Theory]
    [InlineData(1)] [InlineData(31)] [InlineData(32)] [InlineData(63)] [InlineData(64)] [InlineData(100)] [InlineData(1537)]
    public void VectorPathEqualsScalar(int n)
    {
        var r = new Random(n);
        var a = new sbyte[n]; var b = new sbyte[n];
        for (int i = 0; i < n; i++) { a[i] = (sbyte)r.Next(-128, 128); b[i] = (sbyte)r.Next(-128, 128); }
        a[0] = -128; b[0] = -128; // the int16 overflow corner
        Assert.Equal(Int8Dot.Scalar(a, b), Int8Dot.Dot(a, b));
    }
}
