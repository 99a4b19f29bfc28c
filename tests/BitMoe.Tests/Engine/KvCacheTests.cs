using BitMoe.Engine;
using BitMoe.Engine.Layers;

namespace BitMoe.Tests.Engine;

public class KvCacheTests
{
    /// <summary>
    /// Logits at position t from one incremental pass through the cache equal the logits of a fresh
    /// pass over tokens [0, t] (the whole prefix recomputed from an empty cache).
    /// </summary>
    [Theory]
    [InlineData("mhmoe_h2_top2_bitnet", ExecutionMode.FakeQuant)]
    [InlineData("mixed_headdim_mqa_headonly_f32", ExecutionMode.Fp)]
    [InlineData("smoe_top1_tied_f16", ExecutionMode.Fp)]
    public void IncrementalDecodingEqualsRecomputation(string fixture, ExecutionMode mode)
    {
        var tokens = Reference.Load(fixture).Tokens[..24];
        using var model = ModelLoader.Load(Fixtures.Dir(fixture), mode, tokens.Length);
        var t = model.Transformer;
        var incremental = new List<float[]>();
        foreach (int tok in tokens) incremental.Add(t.Forward(tok).ToArray());

        foreach (int end in new[] { 1, 2, 7, 16, 24 })
        {
            t.Cache.Clear();
            float[] last = [];
            for (int i = 0; i < end; i++) last = t.Forward(tokens[i]).ToArray();
            Assert.Equal(incremental[end - 1], last);
        }
    }

    [Fact]
    public void FullCacheIsAnErrorNotAnOverrun()
    {
        using var model = ModelLoader.Load(Fixtures.Dir("dense_f32"), ExecutionMode.Fp, 4);
        for (int i = 0; i < 4; i++) model.Transformer.Forward(i);
        var e = Assert.Throws<BitMoe.Quant.BitMoeException>(() => model.Transformer.Forward(5));
        Assert.Contains("context is full", e.Message);
    }
}
