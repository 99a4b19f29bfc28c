using BitMoe.Engine;
using BitMoe.Engine.Conversion;
using BitMoe.Engine.Evaluation;
using BitMoe.Engine.Layers;
using BitMoe.Engine.Tokenization;
using BitMoe.Kernels;
using BitMoe.Quant;
using BitMoe.Quant.Formats;

namespace BitMoe.Tests.Engine;

/// <summary>The byte counts behind the roofline, and the bandwidth probe; no timing is asserted.</summary>
public sealed class BenchmarkTests : IDisposable
{
    private const string Fixture = "mhmoe_h2_top2_bitnet";
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bitmoe-benchmark-" + Guid.NewGuid().ToString("N"));

    public BenchmarkTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void WeightBytesAreThePackedKernelLayoutAndTheFloatTensors()
    {
        string gguf = Path.Combine(_dir, "h2.gguf");
        Quantizer.Run(Fixtures.Dir(Fixture), gguf, new QuantizeOptions(OutputType.Tq2, "mhmoe"));
        long fixedBytes = 0, expertBytes = 0, embedding = 0;
        ModelConfig config;
        using (var f = GgufFile.Open(gguf, TernaryGguf.Types))
        {
            config = BitMoe.Engine.Gguf.GgufModelMetadata.ReadConfig(f, out _);
            foreach (var t in ModelTensors.Enumerate(config))
            {
                var stored = f.Tensors[t.Name];
                long bytes = t.Role switch
                {
                    TensorRole.Embedding => stored.ByteSize / config.VocabSize,
                    TensorRole.Linear when config.IsQuantized(t.Module) => TernaryGemv.RowStride((int)t.Shape[1]) * t.Shape[0],
                    TensorRole.Linear => stored.ByteSize,
                    _ => t.Elements * sizeof(float), // norms and biases are float32 in memory
                };
                if (t.Role == TensorRole.Embedding) embedding = stored.ByteSize;
                if (t.Expert >= 0) expertBytes += bytes; else fixedBytes += bytes;
            }
        }
        using var model = ModelLoader.Load(gguf, ExecutionMode.Packed, 16);
        var tf = model.Transformer;
        Assert.Equal(fixedBytes, tf.FixedWeightBytesPerToken);
        Assert.Equal(fixedBytes - tf.EmbeddingRowBytes + embedding + expertBytes, tf.TotalWeightBytes);
        var moe = tf.Layers.Select(l => l.Moe).OfType<MhMoeLayer>().First();
        long perExpert = expertBytes / (config.NumExperts * config.IsMoeLayer.Count(m => m));
        Assert.Equal(perExpert, moe.ExpertWeightBytes(0));
    }

    [Fact]
    public void DecodeTrafficCountsTheExpertsTheRouterPicked()
    {
        using var model = ModelLoader.Load(Fixtures.Dir(Fixture), ExecutionMode.Packed, 16);
        var tf = model.Transformer;
        var c = tf.Config;
        var traffic = Benchmark.MeasureTraffic(tf, 3, 6);
        int moeLayers = c.IsMoeLayer.Count(m => m);
        var moe = tf.Layers.Select(l => l.Moe).OfType<MhMoeLayer>().First();
        Assert.Equal(moeLayers, traffic.MoeLayers);
        Assert.Equal((double)moeLayers * c.MoeNumHeads * c.NumExpertsPerTok, traffic.ExpertCallsPerToken, 9);
        Assert.InRange(traffic.DistinctExpertsPerToken, moeLayers * c.NumExpertsPerTok, traffic.ExpertCallsPerToken);
        Assert.Equal(traffic.DistinctExpertsPerToken * moe.ExpertWeightBytes(0), traffic.ExpertBytes, 6);
        Assert.Equal(tf.FixedWeightBytesPerToken, traffic.FixedBytes);
        Assert.Equal(6, tf.Cache.Length);
        // The decode is deterministic: the same start gives the same traffic.
        Assert.Equal(traffic, Benchmark.MeasureTraffic(tf, 3, 6));
    }

    [Fact]
    public void RunsReportOneTimingPerRepetition()
    {
        using var model = ModelLoader.Load(Fixtures.Dir(Fixture), ExecutionMode.Packed, 16);
        var tokens = Benchmark.PromptTokens(5, model.Config.VocabSize);
        Assert.All(tokens, t => Assert.InRange(t, 0, model.Config.VocabSize - 1));
        var pp = Benchmark.RunPrompt(model.Transformer, tokens, 3);
        Assert.Equal("pp5", pp.Name);
        Assert.Equal(3, pp.Seconds.Count);
        Assert.True(pp.Mean > 0 && pp.StdDev >= 0);
        var (tg, _) = Benchmark.RunDecode(model.Transformer, tokens[0], 4, 2);
        Assert.Equal("tg4", tg.Name);
        Assert.Equal(2, tg.Seconds.Count);
    }

    [Fact]
    public void DepthFillsTheCacheBeforeEachRun()
    {
        using var model = ModelLoader.Load(Fixtures.Dir(Fixture), ExecutionMode.Packed, 16);
        var tf = model.Transformer;
        var c = tf.Config;
        var depth = Benchmark.PromptTokens(9, c.VocabSize, seed: 4321);
        var tokens = Benchmark.PromptTokens(5, c.VocabSize);
        var pp = Benchmark.RunPrompt(tf, tokens, 2, depth);
        Assert.Equal("pp5 @ d9", pp.Name);
        Assert.Equal(2, pp.Seconds.Count);
        Assert.Equal(0, tf.Cache.Length); // left empty

        var shallow = Benchmark.MeasureTraffic(tf, 3, 4);
        var deep = Benchmark.MeasureTraffic(tf, 3, 4, depth);
        Assert.Equal(9 + 4, tf.Cache.Length);
        // attention at positions 9..12 reads 9 more cached positions per token than at 0..3
        Assert.Equal(2.0 * c.NumLayers * c.KvDim * sizeof(float) * 9, deep.KvCacheBytes - shallow.KvCacheBytes, 6);
        Assert.Equal(shallow.FixedBytes, deep.FixedBytes);

        // the decode after the fill is the decode that follows those tokens: its first logits are the model's
        Benchmark.Fill(tf, depth);
        var afterFill = tf.Forward(tokens[0]).ToArray();
        tf.Cache.Clear();
        foreach (int token in depth) tf.Forward(token);
        Assert.Equal(tf.Forward(tokens[0]).ToArray(), afterFill);

        var (tg, _) = Benchmark.RunDecode(tf, tokens[0], 4, 2, depth);
        Assert.Equal("tg4 @ d9", tg.Name);
        Assert.Equal(2, tg.Seconds.Count);
    }

    [Fact]
    public unsafe void BandwidthProbeReadsEveryByte()
    {
        using var probe = new MemoryBandwidth(4 << 20);
        Assert.Equal(4 << 20, probe.Bytes);
        double gbps = probe.Measure(2, passes: 1);
        Assert.True(double.IsFinite(gbps) && gbps > 0);
        // Chunk c (1 MiB) is filled with byte (c * 31 + 7): the sum of its 64-bit words is known.
        ulong expected = 0;
        for (int c = 0; c < 4; c++)
        {
            ulong b = (byte)(c * 31 + 7);
            ulong word = b * 0x0101010101010101UL;
            expected += word * (ulong)((1 << 20) / 8);
        }
        Assert.Equal(expected, probe.Checksum);
    }

    [Fact]
    public void SyntheticTokenizerReachesLargeVocabularies()
    {
        string path = Path.Combine(_dir, "tokenizer.json");
        File.WriteAllText(path, RandomModel.SyntheticTokenizer(32002));
        var tok = TextTokenizer.Load(path);
        Assert.Equal(32002, tok.VocabSize);
        var ids = tok.Encode("the history of");
        Assert.Equal("the history of", tok.Decode(ids));
    }
}
