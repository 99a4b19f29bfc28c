using System.Diagnostics;
using System.Numerics.Tensors;
using BitMoe.Engine.Layers;
using BitMoe.Engine.Sampling;

namespace BitMoe.Engine.Evaluation;

/// <summary>Timings of one test (pp or tg) over its repetitions.</summary>
/// <param name="Name">llama-bench's name: pp512, tg128.</param>
/// <param name="Tokens">Tokens evaluated per repetition.</param>
/// <param name="Seconds">Wall time of each repetition.</param>
public sealed record SpeedSample(string Name, int Tokens, IReadOnlyList<double> Seconds)
{
    public IReadOnlyList<double> TokensPerSecond => Seconds.Select(s => Tokens / Math.Max(s, 1e-12)).ToList();

    public double Mean => TokensPerSecond.Average();

    /// <summary>Sample standard deviation of tokens/s (0 for one repetition), as llama-bench reports it.</summary>
    public double StdDev
    {
        get
        {
            var v = TokensPerSecond;
            if (v.Count < 2) return 0;
            double mean = v.Average();
            return Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Count - 1));
        }
    }
}

/// <summary>
/// What decoding one token reads, measured on a greedy decode from an empty cache (or one filled to a depth): the weights every token
/// reads, plus the routed experts the router actually picked (an expert picked by several sub-tokens of the
/// same token is read once from memory and counted once), plus, apart, the KV cache attention reads.
/// </summary>
/// <param name="FixedBytes">Weights read whatever the routing (<see cref="Transformer.FixedWeightBytesPerToken"/>).</param>
/// <param name="ExpertBytes">Routed-expert weights per token, averaged over the decode.</param>
/// <param name="ExpertCallsPerToken">Expert evaluations per token, all MoE layers together (ExpertHits: h * k per MoE layer).</param>
/// <param name="DistinctExpertsPerToken">Distinct experts per token, all MoE layers together.</param>
/// <param name="KvCacheBytes">Keys and values attention reads per token, averaged over the decode (in the cache's element type; not weights).</param>
/// <param name="MoeLayers">MoE layers in the model.</param>
public sealed record DecodeTraffic(long FixedBytes, double ExpertBytes, double ExpertCallsPerToken, double DistinctExpertsPerToken,
    double KvCacheBytes, int MoeLayers)
{
    /// <summary>Bytes of weights read per decoded token: the roofline's denominator.</summary>
    public double WeightBytes => FixedBytes + ExpertBytes;

    /// <summary>The decode speed memory bandwidth allows: bandwidth / bytes per token.</summary>
    public double BoundTokensPerSecond(double bandwidthGBps) => bandwidthGBps * 1e9 / WeightBytes;
}

/// <summary>
/// llama-bench's two tests on a loaded model: <c>pp</c> (evaluate a prompt of random tokens from an empty cache)
/// and <c>tg</c> (decode tokens one at a time from an empty cache, greedy: the next token is the argmax, no
/// sampling cost). Each test runs once to warm up (JIT, caches, page faults; repeated while shorter than
/// <see cref="WarmupSeconds"/>), then the timed repetitions. With a depth (llama-bench's <c>-d</c>), every run
/// first fills the cache with that many other tokens, untimed, so the test measures attention over a long
/// context; its name gains " @ dN" as in llama-bench.
/// </summary>
public static class Benchmark
{
    /// <summary>The benchmark prompt: <paramref name="count"/> token ids drawn uniformly from the vocabulary, the same for every run.</summary>
    public static int[] PromptTokens(int count, int vocabSize, ulong seed = 1234)
    {
        var rng = new Rng(seed);
        var tokens = new int[count];
        for (int i = 0; i < count; i++) tokens[i] = (int)(rng.NextUInt64() % (ulong)vocabSize);
        return tokens;
    }

    /// <summary>
    /// Prompt processing: evaluates <paramref name="tokens"/> at the next positions of the cache. The one place the
    /// pp test evaluates tokens: one batched call (matrix-matrix, each expert once per batch), as llama-bench does.
    /// </summary>
    public static void EvaluatePrompt(Transformer t, ReadOnlySpan<int> tokens) => t.ForwardBatch(tokens);

    /// <summary>
    /// Greedy decode: evaluates <paramref name="first"/>, then <paramref name="count"/> - 1 more tokens, each the
    /// argmax of the previous logits. <paramref name="afterToken"/> runs after every evaluated token.
    /// </summary>
    public static void Decode(Transformer t, int first, int count, Action? afterToken = null)
    {
        int token = first;
        for (int i = 0; i < count; i++)
        {
            var logits = t.Forward(token);
            afterToken?.Invoke();
            token = TensorPrimitives.IndexOfMax(logits);
        }
    }

    /// <summary>Empties the cache, then evaluates <paramref name="depth"/> (if any) as one untimed prompt.</summary>
    public static void Fill(Transformer t, int[]? depth)
    {
        t.Cache.Clear();
        if (depth is { Length: > 0 }) t.ForwardBatch(depth);
    }

    /// <summary>llama-bench's test name: pp512, tg128, or with a depth tg128 @ d1024.</summary>
    public static string TestName(string test, int tokens, int[]? depth) =>
        depth is { Length: > 0 } ? $"{test}{tokens} @ d{depth.Length}" : $"{test}{tokens}";

    /// <summary>Seconds to evaluate the prompt after the cache is filled with <paramref name="depth"/> (empty if null).</summary>
    public static double TimePrompt(Transformer t, int[] tokens, int[]? depth = null)
    {
        Fill(t, depth);
        long t0 = Stopwatch.GetTimestamp();
        EvaluatePrompt(t, tokens);
        return Stopwatch.GetElapsedTime(t0).TotalSeconds;
    }

    /// <summary>Seconds to decode <paramref name="count"/> tokens after the cache is filled with <paramref name="depth"/> (empty if null).</summary>
    public static double TimeDecode(Transformer t, int first, int count, int[]? depth = null)
    {
        Fill(t, depth);
        long t0 = Stopwatch.GetTimestamp();
        Decode(t, first, count);
        return Stopwatch.GetElapsedTime(t0).TotalSeconds;
    }

    /// <summary>
    /// Decodes <paramref name="count"/> tokens after <see cref="Fill"/> (untimed) and counts the bytes each reads: the
    /// fixed weights, the experts each MoE layer's router picked for that token (from the ExpertHits counters,
    /// read after every token), and the KV cache. The decode is deterministic, so a timed decode from the same
    /// token reads exactly this.
    /// </summary>
    public static DecodeTraffic MeasureTraffic(Transformer t, int first, int count, int[]? depth = null)
    {
        Fill(t, depth);
        var moes = t.Layers.Select(l => l.Moe).OfType<MhMoeLayer>().ToArray();
        var before = moes.Select(m => (long[])m.ExpertHits.Clone()).ToArray();
        double expertBytes = 0, calls = 0, distinct = 0;
        int tokens = 0;
        Decode(t, first, count, () =>
        {
            tokens++;
            for (int m = 0; m < moes.Length; m++)
            {
                var hits = moes[m].ExpertHits;
                for (int e = 0; e < hits.Length; e++)
                {
                    long d = hits[e] - before[m][e];
                    if (d == 0) continue;
                    calls += d;
                    distinct++;
                    expertBytes += moes[m].ExpertWeightBytes(e);
                    before[m][e] = hits[e];
                }
            }
        });
        // At position p attention reads p + 1 keys and values of kv_dim elements in every layer; averaged over
        // p = d..d+count-1 for a depth d.
        double kv = (double)t.Config.NumLayers * t.Cache.BytesPerPosition * ((depth?.Length ?? 0) + (count + 1) / 2.0);
        tokens = Math.Max(tokens, 1);
        return new DecodeTraffic(t.FixedWeightBytesPerToken, expertBytes / tokens, calls / tokens, distinct / tokens, kv, moes.Length);
    }

    /// <summary>
    /// Least seconds of warm-up before a test is timed: the warm-up run repeats until this much time has passed,
    /// so that the JIT has replaced the first, unoptimized code of the hot methods (tiered compilation promotes a
    /// method after 30 calls and a 100 ms quiet period) on small models whose single run is short.
    /// </summary>
    public static double WarmupSeconds { get; set; } = 0.5;

    /// <summary>pp: warm-up (at least one run), then <paramref name="repetitions"/> timed evaluations of <paramref name="tokens"/>.</summary>
    public static SpeedSample RunPrompt(Transformer t, int[] tokens, int repetitions, int[]? depth = null)
    {
        double warm = 0;
        do warm += TimePrompt(t, tokens, depth); while (warm < WarmupSeconds);
        var seconds = new List<double>();
        for (int r = 0; r < repetitions; r++) seconds.Add(TimePrompt(t, tokens, depth));
        t.Cache.Clear();
        return new SpeedSample(TestName("pp", tokens.Length, depth), tokens.Length, seconds);
    }

    /// <summary>tg: warm-up (a first decode that also measures the traffic, repeated for <see cref="WarmupSeconds"/>), then <paramref name="repetitions"/> timed decodes.</summary>
    public static (SpeedSample Speed, DecodeTraffic Traffic) RunDecode(Transformer t, int first, int count, int repetitions, int[]? depth = null)
    {
        long t0 = Stopwatch.GetTimestamp();
        var traffic = MeasureTraffic(t, first, count, depth);
        double warm = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        while (warm < WarmupSeconds) warm += TimeDecode(t, first, count, depth);
        var seconds = new List<double>();
        for (int r = 0; r < repetitions; r++) seconds.Add(TimeDecode(t, first, count, depth));
        t.Cache.Clear();
        return (new SpeedSample(TestName("tg", count, depth), count, seconds), traffic);
    }
}
