using System.Diagnostics;
using System.Globalization;
using BitMoe.Engine;
using BitMoe.Engine.Evaluation;
using BitMoe.Quant;
using LLama.Native;

namespace BitMoe.LlamaCppCompare;

/// <summary>
/// llama.cpp and BitMoe in turns on the same file, in one process. This machine's memory bandwidth moves by a quarter
/// between phases that last minutes; two benches run one after the other can fall into different phases, and
/// BitMoe's decode, which streams at most of the bus, moves with them while llama.cpp's, which is compute-bound,
/// hardly does. Here every round times one run of each engine (the order swapped from round to round), so both
/// runs of a round see the same phase, and the ratio is taken per round.
/// </summary>
public static class Alternate
{
    public const string Usage = """
        alternate --model X.gguf [-p 512] [-n 128] [-t 1,2] [-r 5] [-b 2048] [-ub 512] [-d 0] [-fa auto|0|1] [-ct f32|f16] [--verbose]
          llama.cpp and BitMoe in turns: per thread count and test, one untimed warm-up of each engine, then r rounds,
          each timing one llama.cpp run and one BitMoe run (which goes first alternates). The same tests as bench
          (-p and -n: one value each, 0 skips). Prints both engines' mean +- sd and the median and range of the
          per-round ratios BitMoe / llama.cpp. llama.cpp's OpenMP threads must not spin while BitMoe runs:
          OMP_WAIT_POLICY=active is refused; leave it unset (libgomp spins briefly at a barrier, then sleeps).
          -ct gives both engines that KV cache type; without it each keeps its default (llama.cpp f16, BitMoe f32).
        """;

    public static int Run(Args a)
    {
        string model = a.Required("--model", "-m");
        int prompt = a.Int(512, "-p", "--n-prompt");
        int gen = a.Int(128, "-n", "--n-gen");
        int[] threadCounts = a.IntList([Environment.ProcessorCount], "-t", "--threads");
        int rounds = a.Int(5, "-r", "--repetitions");
        int nBatch = a.Int(2048, "-b", "--batch-size");
        int nUbatch = a.Int(512, "-ub", "--ubatch-size");
        int depth = a.Int(0, "-d", "--n-depth");
        bool? flash = Bench.ParseFlash(a.String("-fa", "--flash-attn") ?? "auto");
        string? cacheType = a.String("-ct", "--cache-type");
        a.Flag("--verbose", "-v");
        a.CheckAllUsed();
        if (!File.Exists(model)) throw new UsageException($"{model}: model file not found");
        if (rounds < 1) throw new UsageException("-r must be at least 1");
        if (threadCounts.Length == 0 || threadCounts.Any(t => t < 1)) throw new UsageException("-t: thread counts must be at least 1");
        if (prompt < 0 || gen < 0 || depth < 0) throw new UsageException("-p, -n and -d must not be negative");
        if (prompt == 0 && gen == 0) throw new UsageException("nothing to run: -p and -n are both 0");
        if (string.Equals(Environment.GetEnvironmentVariable("OMP_WAIT_POLICY"), "active", StringComparison.OrdinalIgnoreCase))
            throw new UsageException("OMP_WAIT_POLICY=active: llama.cpp's OpenMP threads would spin on the cores while BitMoe runs; unset it or set it to passive");

        var (llamaKv, bitmoeKv) = cacheType switch
        {
            null => ((GGMLType?)null, BitMoe.Kernels.DType.F32),
            "f32" => ((GGMLType?)GGMLType.GGML_TYPE_F32, BitMoe.Kernels.DType.F32),
            "f16" => ((GGMLType?)GGMLType.GGML_TYPE_F16, BitMoe.Kernels.DType.F16),
            _ => throw new UsageException($"-ct: '{cacheType}' is not a cache type (f32 or f16)"),
        };
        int context = Math.Max(depth + Math.Max(prompt, gen), 16);
        using var weights = LlamaNative.LoadWeights(LlamaNative.Params(model, context, nBatch, nUbatch, threadCounts[0], flash, llamaKv));
        Console.Error.WriteLine(LlamaNative.Describe());
        int vocab = weights.Vocab.Count;
        int? bos = weights.Vocab.ShouldAddBOS && weights.Vocab.BOS is { } b ? (int)b : null;
        Console.Error.WriteLine(Bench.LoadAverage("before"));
        Console.WriteLine($"| threads | {"test",13} | {"llama.cpp t/s",16} | {"BitMoe t/s",16} | ratio (median) | ratio (range) |");
        Console.WriteLine("| ------: | ------------: | ---------------: | ---------------: | -------------: | ------------: |");
        foreach (int threads in threadCounts)
        {
            var p = LlamaNative.Params(model, context, Math.Min(nBatch, context), nUbatch, threads, flash, llamaKv);
            using var llama = weights.CreateContext(p);
            var handle = llama.NativeHandle;
            using var loaded = ModelLoader.Load(model, null, context, threads, kvCacheType: bitmoeKv);
            var tf = loaded.Transformer;
            var tokens = Benchmark.PromptTokens(Math.Max(prompt, 1), loaded.Config.VocabSize);
            int[]? depthTokens = depth > 0 ? Benchmark.PromptTokens(depth, loaded.Config.VocabSize, seed: 4321) : null;
            var rng = new Random(1234);
            foreach (var (name, count, isPrompt) in new[] { ("pp", prompt, true), ("tg", gen, false) })
            {
                if (count == 0) continue;
                string test = Benchmark.TestName(name, count, depthTokens);
                double Llama()
                {
                    handle.MemoryClear(false);
                    if (depth > 0) Bench.Prompt(handle, depth, 0, nBatch, vocab, bos, rng);
                    var sw = Stopwatch.StartNew();
                    if (isPrompt) Bench.Prompt(handle, count, depth, nBatch, vocab, bos, rng);
                    else Bench.Generate(handle, count, depth, vocab, bos, rng);
                    return count / sw.Elapsed.TotalSeconds;
                }
                double BitMoe() => count / (isPrompt ? Benchmark.TimePrompt(tf, tokens, depthTokens) : Benchmark.TimeDecode(tf, tokens[0], count, depthTokens));

                Llama();
                double warm = 0;
                do warm += count / BitMoe(); while (warm < Benchmark.WarmupSeconds);
                var ll = new List<double>();
                var bm = new List<double>();
                for (int r = 0; r < rounds; r++)
                {
                    double x, y;
                    if (r % 2 == 0) { x = Llama(); y = BitMoe(); }
                    else { y = BitMoe(); x = Llama(); }
                    ll.Add(x);
                    bm.Add(y);
                    Console.Error.WriteLine(Inv($"  t={threads} {test} round {r + 1}/{rounds}: llama.cpp {x:F2}, BitMoe {y:F2} t/s, ratio {y / x:F2}"));
                }
                tf.Cache.Clear();
                var ratios = bm.Zip(ll, (y, x) => y / x).Order().ToList();
                Console.WriteLine(Inv($"| {threads,7} | {test,13} | {Speed(ll),16} | {Speed(bm),16} | {Median(ratios),13:F2}x | {ratios[0],5:F2}-{ratios[^1]:F2}x |"));
            }
        }
        Console.Error.WriteLine(Bench.LoadAverage("after"));
        return 0;
    }

    /// <summary>The median of sorted values.</summary>
    public static double Median(IReadOnlyList<double> sorted) =>
        sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;

    private static string Speed(List<double> rates)
    {
        double mean = rates.Average();
        double sd = rates.Count > 1 ? Math.Sqrt(rates.Sum(v => (v - mean) * (v - mean)) / (rates.Count - 1)) : 0;
        return Inv($"{mean:F2} ± {sd:F2}");
    }

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
