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

    /// <summary>
    /// An F16 cache stores each key and value rounded to the nearest half (ties to even), clamped to the finite range
    /// (a key past 65504 would be infinite, its score NaN), head after head in its own run; an F32 cache stores the floats.
    /// </summary>
    [Fact]
    public unsafe void F16CacheStoresRoundedClampedHalves()
    {
        using var arena = new BitMoe.Kernels.HugePageArena();
        const int heads = 2, headDim = 4;
        var f16 = new KvCache(layers: 2, capacity: 3, heads, headDim, arena, BitMoe.Kernels.DType.F16);
        var f32 = new KvCache(layers: 2, capacity: 3, heads, headDim, arena);
        Assert.Equal(2 * heads * headDim * 2, f16.BytesPerPosition);
        Assert.Equal(2 * heads * headDim * 4, f32.BytesPerPosition);
        float[] key = [1f, 1.00048828125f, 1.000732421875f, -1e6f, 65519f, 65520f, float.Epsilon, -0.1f];
        float[] value = [.. key.Select(k => -k)];
        foreach (var cache in new[] { f16, f32 })
        {
            cache.Write(1, 2, key, value);
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < headDim; i++)
                {
                    float k = key[h * headDim + i], v = value[h * headDim + i];
                    int at = 2 * headDim + i; // position 2 of the head's run
                    if (cache == f32)
                    {
                        Assert.Equal(k, ((float*)cache.Keys(1, h))[at]);
                        Assert.Equal(v, ((float*)cache.Values(1, h))[at]);
                        continue;
                    }
                    Assert.Equal((Half)Math.Clamp(k, -65504f, 65504f), ((Half*)cache.Keys(1, h))[at]);
                    Assert.Equal((Half)Math.Clamp(v, -65504f, 65504f), ((Half*)cache.Values(1, h))[at]);
                }
        }
        // the rounding the test relies on: ties to even, and 65519 (below the midpoint to infinity) stays finite
        Assert.Equal((Half)1f, ((Half*)f16.Keys(1, 0))[2 * headDim + 1]);
        Assert.Equal((Half)1.0009765625f, ((Half*)f16.Keys(1, 0))[2 * headDim + 2]);
        Assert.Equal(Half.MinValue, ((Half*)f16.Keys(1, 0))[2 * headDim + 3]);
        Assert.Equal(Half.MaxValue, ((Half*)f16.Keys(1, 1))[2 * headDim + 0]);
        Assert.Equal(Half.MaxValue, ((Half*)f16.Keys(1, 1))[2 * headDim + 1]);
        Assert.Throws<BitMoe.Quant.BitMoeException>(() => new KvCache(1, 1, 1, 4, arena, BitMoe.Kernels.DType.BF16));
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
