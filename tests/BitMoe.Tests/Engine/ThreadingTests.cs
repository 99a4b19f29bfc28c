using BitMoe.Engine;
using BitMoe.Engine.Layers;

namespace BitMoe.Tests.Engine;

public class ThreadingTests
{
    /// <summary>Threads split rows, never a row's sum: the logits are identical for any thread count.</summary>
    [Theory]
    [InlineData("mhmoe_h2_top2_bitnet", ExecutionMode.FakeQuant)]
    [InlineData("bitnet_2b4t_style_bf16", ExecutionMode.Fp)]
    public void LogitsDoNotDependOnThreadCount(string fixture, ExecutionMode mode)
    {
        var tokens = Reference.Load(fixture).Tokens[..16];
        float[][] Run(int threads)
        {
            using var m = ModelLoader.Load(Fixtures.Dir(fixture), mode, tokens.Length, threads);
            return tokens.Select(t => m.Transformer.Forward(t).ToArray()).ToArray();
        }
        var one = Run(1);
        long saved = BitLinear.ParallelThreshold;
        BitLinear.ParallelThreshold = 0; // split even the fixtures' tiny matrices
        float[][] three;
        try { three = Run(3); }
        finally { BitLinear.ParallelThreshold = saved; }
        for (int i = 0; i < tokens.Length; i++) Assert.Equal(one[i], three[i]);
    }
}
