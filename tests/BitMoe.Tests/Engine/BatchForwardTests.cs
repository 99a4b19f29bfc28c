using BitMoe.Engine;
using BitMoe.Engine.Evaluation;
using BitMoe.Engine.Generation;
using BitMoe.Engine.Layers;

namespace BitMoe.Tests.Engine;

/// <summary>
/// <see cref="Transformer.ForwardBatch"/> against <see cref="Transformer.Forward"/> token by token. Every token goes
/// through the same arithmetic in both (per-token activation scales, the same dot products, the MoE outputs summed
/// in the same order), so the logits are equal bit for bit in every mode, whatever the batch split.
/// </summary>
public class BatchForwardTests(Xunit.Abstractions.ITestOutputHelper output)
{
    public static TheoryData<string, ExecutionMode> FixturesAndModes()
    {
        var data = new TheoryData<string, ExecutionMode>();
        foreach (var name in Fixtures.CheckpointNames())
        {
            data.Add(name, ExecutionMode.Fp);
            if (Reference.Load(name).LogitsFakeQuant == null) continue;
            data.Add(name, ExecutionMode.FakeQuant);
            data.Add(name, ExecutionMode.Packed);
        }
        return data;
    }

    private static LoadedModel Load(string fixture, ExecutionMode mode, int context, int threads = 1, int maxBatch = Transformer.DefaultMaxBatch) =>
        ModelLoader.Load(Fixtures.Dir(fixture), mode, context, threads, maxBatch);

    private static float[][] TokenByToken(string fixture, ExecutionMode mode, int[] tokens)
    {
        using var m = Load(fixture, mode, tokens.Length);
        return tokens.Select(t => m.Transformer.Forward(t).ToArray()).ToArray();
    }

    /// <summary>
    /// Runs the tokens from the cache's next position on, in batches of the given sizes, and returns the logits of
    /// every position they cover (from all-position output; the returned last-token logits must agree).
    /// </summary>
    private static List<float[]> Batched(Transformer t, int[] tokens, params int[] splits)
    {
        int vocab = t.Config.VocabSize;
        var all = new List<float[]>();
        foreach (int n in splits)
        {
            int start = t.Cache.Length;
            var logits = new float[n * vocab];
            var last = t.ForwardBatch(tokens.AsSpan(start, n), logits).ToArray();
            Assert.Equal(logits[^vocab..], last);
            for (int i = 0; i < n; i++) all.Add(logits[(i * vocab)..((i + 1) * vocab)]);
            Assert.Equal(start + n, t.Cache.Length);
        }
        return all;
    }

    private void AssertIdentical(IReadOnlyList<float[]> expected, IReadOnlyList<float[]> actual, string what)
    {
        Assert.Equal(expected.Count, actual.Count);
        double maxRel = 0;
        for (int i = 0; i < expected.Count; i++)
        {
            double maxAbs = expected[i].Max(MathF.Abs);
            for (int v = 0; v < expected[i].Length; v++) maxRel = Math.Max(maxRel, Math.Abs(expected[i][v] - actual[i][v]) / maxAbs);
        }
        output.WriteLine($"{what}: max relative difference {maxRel:E3}");
        for (int i = 0; i < expected.Count; i++)
            Assert.True(expected[i].AsSpan().SequenceEqual(actual[i]), $"{what}: logits differ at position {i} (max relative difference {maxRel:E3})");
    }

    [Theory, MemberData(nameof(FixturesAndModes))]
    public void BatchedLogitsEqualTokenByToken(string fixture, ExecutionMode mode)
    {
        var tokens = Reference.Load(fixture).Tokens;
        var expected = TokenByToken(fixture, mode, tokens);
        using var m = Load(fixture, mode, tokens.Length);
        var t = m.Transformer;

        AssertIdentical(expected, Batched(t, tokens, tokens.Length), $"{fixture} {mode}, one batch of {tokens.Length}");

        t.Cache.Clear();
        AssertIdentical(expected, Batched(t, tokens, 7, 17, 24), $"{fixture} {mode}, batches 7+17+24");

        // a cache filled token by token, then batches on top of it, then decoding on keys and values a batch wrote
        t.Cache.Clear();
        var mixed = new List<float[]>();
        for (int i = 0; i < 5; i++) mixed.Add(t.Forward(tokens[i]).ToArray());
        mixed.AddRange(Batched(t, tokens, 1, 24));                  // positions 5..29
        mixed.Add(t.ForwardBatch(tokens.AsSpan(30, 10)).ToArray()); // positions 30..39, the last one's logits only
        for (int i = 40; i < tokens.Length; i++) mixed.Add(t.Forward(tokens[i]).ToArray());
        int[] positions = [.. Enumerable.Range(0, 30), .. Enumerable.Range(39, tokens.Length - 39)];
        AssertIdentical(positions.Select(i => expected[i]).ToList(), mixed,
            $"{fixture} {mode}, 5 decoded + batches 1+24 + 10 (last logits only) + decoding");
    }

    /// <summary>
    /// With an F16 KV cache a batch still equals the same tokens decoded one by one, bit for bit (both attend over the
    /// same stored halves), and any thread count gives the same logits; and the logits stay close to the F32 cache's:
    /// keys and values rounded to 11 significant bits move them by a fraction of their largest magnitude.
    /// </summary>
    [Theory]
    [InlineData("mhmoe_h2_top2_bitnet", ExecutionMode.Packed)]
    [InlineData("mhmoe_h4_top3_bias_bf16", ExecutionMode.Fp)]
    [InlineData("mixed_headdim_mqa_headonly_f32", ExecutionMode.Fp)]
    public void F16CacheBatchesEqualTokenByTokenAndStayCloseToF32(string fixture, ExecutionMode mode)
    {
        var tokens = Reference.Load(fixture).Tokens;
        LoadedModel LoadF16(int threads) =>
            ModelLoader.Load(Fixtures.Dir(fixture), mode, tokens.Length, threads, kvCacheType: BitMoe.Kernels.DType.F16);
        float[][] f16TokenByToken;
        using (var m = LoadF16(1))
        {
            Assert.Equal(BitMoe.Kernels.DType.F16, m.Transformer.Cache.ElementType);
            f16TokenByToken = tokens.Select(t => m.Transformer.Forward(t).ToArray()).ToArray();
            m.Transformer.Cache.Clear();
            AssertIdentical(f16TokenByToken, Batched(m.Transformer, tokens, 7, 17, 24), $"{fixture} {mode} f16 cache, batches 7+17+24");
        }
        using (var m = LoadF16(3))
            AssertIdentical(f16TokenByToken, Batched(m.Transformer, tokens, tokens.Length), $"{fixture} {mode} f16 cache, 3 threads");

        var f32 = TokenByToken(fixture, mode, tokens);
        double maxRel = 0;
        bool anyDifferent = false;
        for (int i = 0; i < tokens.Length; i++)
        {
            double maxAbs = f32[i].Max(MathF.Abs);
            for (int v = 0; v < f32[i].Length; v++)
            {
                maxRel = Math.Max(maxRel, Math.Abs(f32[i][v] - f16TokenByToken[i][v]) / maxAbs);
                anyDifferent |= f32[i][v] != f16TokenByToken[i][v];
            }
        }
        output.WriteLine($"{fixture} {mode}: f16 cache against f32, max relative difference {maxRel:E3}");
        Assert.True(anyDifferent, "the f16 cache gave the f32 cache's logits exactly: it was not used");
        Assert.True(maxRel < 1e-2, $"f16 cache logits differ from the f32 cache's by {maxRel:E3} of the largest logit");
    }

    [Theory, MemberData(nameof(FixturesAndModes))]
    public void LongInputsRunInChunksOfMaxBatch(string fixture, ExecutionMode mode)
    {
        var tokens = Reference.Load(fixture).Tokens;
        var expected = TokenByToken(fixture, mode, tokens);
        using var m = Load(fixture, mode, tokens.Length, maxBatch: 16);
        Assert.Equal(16, m.Transformer.MaxBatch);
        AssertIdentical(expected, Batched(m.Transformer, tokens, tokens.Length), $"{fixture} {mode}, 48 tokens in chunks of 16");

        m.Transformer.Cache.Clear();
        var last = m.Transformer.ForwardBatch(tokens).ToArray();
        AssertIdentical([expected[^1]], [last], $"{fixture} {mode}, last logits of 48 tokens in chunks of 16");
    }

    /// <summary>Threads split the rows of every matrix and the heads of attention, never a sum: any thread count gives the same logits.</summary>
    [Theory]
    [InlineData("mhmoe_h2_top2_bitnet", ExecutionMode.Packed)]
    [InlineData("mhmoe_h2_top2_bitnet", ExecutionMode.FakeQuant)]
    [InlineData("mhmoe_h4_top3_bias_bf16", ExecutionMode.Fp)]
    [InlineData("bitnet_2b4t_style_bf16", ExecutionMode.Fp)]
    [InlineData("finegrained_top3_bitnet", ExecutionMode.Packed)]
    public void BatchedLogitsDoNotDependOnThreadCount(string fixture, ExecutionMode mode)
    {
        var tokens = Reference.Load(fixture).Tokens;
        List<float[]> Run(int threads)
        {
            using var m = Load(fixture, mode, tokens.Length, threads);
            return Batched(m.Transformer, tokens, 7, 17, 24);
        }
        var one = Run(1);
        long saved = BitLinear.ParallelThreshold;
        BitLinear.ParallelThreshold = 0; // split even the fixtures' tiny matrices
        List<float[]> three;
        try { three = Run(3); }
        finally { BitLinear.ParallelThreshold = saved; }
        AssertIdentical(one, three, $"{fixture} {mode}, 3 threads vs 1");
        AssertIdentical(TokenByToken(fixture, mode, tokens), three, $"{fixture} {mode}, 3 threads batched vs token by token");
    }

    [Fact]
    public void ExpertHitsCountEverySubTokenChoice()
    {
        const string fixture = "mhmoe_h2_top2_bitnet"; // h = 2, top-2
        var tokens = Reference.Load(fixture).Tokens;
        using var single = Load(fixture, ExecutionMode.Fp, tokens.Length);
        foreach (int t in tokens) single.Transformer.Forward(t);
        using var batched = Load(fixture, ExecutionMode.Fp, tokens.Length);
        batched.Transformer.ForwardBatch(tokens);
        for (int l = 0; l < single.Transformer.Layers.Count; l++)
        {
            var hits = batched.Transformer.Layers[l].Moe!.ExpertHits;
            Assert.Equal(single.Transformer.Layers[l].Moe!.ExpertHits, hits);
            Assert.Equal(tokens.Length * 2 * 2, hits.Sum());
        }
        Assert.Equal(tokens.Length, batched.Transformer.TokensEvaluated);
    }

    [Fact]
    public void BadInputLeavesTheCacheAlone()
    {
        using var m = Load("dense_f32", ExecutionMode.Fp, 8);
        var t = m.Transformer;
        t.ForwardBatch([1, 2, 3]);
        Assert.Throws<BitMoe.Quant.BitMoeException>(() => t.ForwardBatch([4, 100000]));
        Assert.Equal(3, t.Cache.Length);
        var e = Assert.Throws<BitMoe.Quant.BitMoeException>(() => t.ForwardBatch([1, 2, 3, 4, 5, 6]));
        Assert.Contains("context is full", e.Message);
        Assert.Equal(3, t.Cache.Length);
        Assert.Throws<ArgumentException>(() => t.ForwardBatch([]));
        Assert.Throws<ArgumentException>(() => t.ForwardBatch([1, 2], new float[5]));
        Assert.Equal(3, t.Cache.Length);
    }

    [Fact]
    public void GeneratorFeedsThePromptAsABatch()
    {
        const string fixture = "mhmoe_h4_top3_bias_bf16";
        var tokens = Reference.Load(fixture).Tokens;
        var expected = TokenByToken(fixture, ExecutionMode.Fp, tokens);
        using var m = Load(fixture, ExecutionMode.Fp, tokens.Length, maxBatch: 20);
        var g = new Generator(m);
        Assert.True(expected[29].AsSpan().SequenceEqual(g.Feed(tokens[..30])));
        Assert.True(expected[^1].AsSpan().SequenceEqual(g.Feed(tokens[30..])));
        Assert.Equal(tokens, g.History);
        Assert.Equal(tokens.Length, m.Transformer.Cache.Length);
    }

    /// <summary>
    /// Perplexity evaluates chunks as batches; the NLL and the lockstep comparison are those of token-by-token
    /// decoding, and packed against fake-quant (the same function) shows no difference at all.
    /// </summary>
    [Theory]
    [InlineData("mhmoe_h2_top2_bitnet")]
    [InlineData("mhmoe_relu2_subnorm_sharded_f16")]
    public void PerplexityInBatchesEqualsTokenByToken(string fixture)
    {
        var reference = Reference.Load(fixture);
        var tokens = reference.Tokens;
        int ctx = reference.PplCtx;

        // token by token, as perplexity was computed before batching
        double expectedNll = 0;
        long expectedCount = 0;
        using (var m = Load(fixture, ExecutionMode.FakeQuant, ctx))
        {
            var lp = new double[reference.Vocab];
            foreach (var (start, len) in Perplexity.Chunks(tokens.Length, ctx))
            {
                m.Transformer.Cache.Clear();
                for (int i = 0; i < len - 1; i++)
                {
                    Perplexity.LogSoftmax(m.Transformer.Forward(tokens[start + i]), lp);
                    expectedNll += -lp[tokens[start + i + 1]];
                    expectedCount++;
                }
            }
        }

        // maxBatch 8 < ctx 20: every chunk runs in several batches
        using var fake = Load(fixture, ExecutionMode.FakeQuant, ctx, maxBatch: 8);
        using var packed = Load(fixture, ExecutionMode.Packed, ctx);
        var result = Perplexity.Evaluate([fake.Transformer, packed.Transformer], tokens, ctx);
        Assert.Equal(expectedCount, result.Runs[0].Count);
        Assert.Equal(Math.Exp(expectedNll / expectedCount), result.Runs[0].Perplexity, 12);
        Assert.Equal(result.Runs[0].Perplexity, result.Runs[1].Perplexity);
        var versus = result.VersusFirst[1]!;
        Assert.Equal(expectedCount, versus.Count);
        Assert.Equal(0, versus.MeanKl);
        Assert.Equal(1, versus.TopTokenAgreement);
    }
}
