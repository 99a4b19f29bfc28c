using System.Diagnostics;
using System.Globalization;
using BitMoe.Quant;
using LLama;
using LLama.Native;

namespace BitMoe.LlamaCppCompare;

/// <summary>
/// llama-bench's two tests through LLamaSharp: ppP decodes one batch of P random tokens from an
/// empty cache (logits for the last only), tgN decodes N single tokens one after the other; both
/// after one untimed warm-up, repeated r times, reported as mean +- sample stddev of tokens/s.
/// </summary>
public static class Bench
{
    public const string Usage = """
        bench --model X.gguf [-p 512] [-n 128] [-t 1,2] [-r 3] [-b 2048] [-ub 512] [-d 0] [-fa auto|0|1] [--verbose]
          llama-bench's pp and tg tests on llama.cpp (LLamaSharp's CPU backend):
          -p    prompt tokens of the pp test, decoded as one batch (0: skip)       (comma list allowed)
          -n    tokens of the tg test, decoded one at a time (0: skip)            (comma list allowed)
          -t    thread counts, comma separated
          -r    repetitions of each test (after one untimed warm-up)
          -b    logical batch (the pp prompt is decoded in pieces of -b tokens), -ub: physical batch
          -d    depth: tokens put in the cache (untimed) before each repetition, as llama-bench's -d
          -fa   flash attention: auto (llama.cpp's default), 0 or 1
          On a machine busy with other work, run with OMP_WAIT_POLICY=passive in the environment:
          llama.cpp's OpenMP threads otherwise spin at every barrier and 2+ threads collapse.
        """;

    private sealed record Test(string Name, int Prompt, int Gen);

    public static int Run(Args a)
    {
        string model = a.Required("--model", "-m");
        int[] prompts = a.IntList([512], "-p", "--n-prompt");
        int[] gens = a.IntList([128], "-n", "--n-gen");
        int[] threadCounts = a.IntList([Environment.ProcessorCount], "-t", "--threads");
        int reps = a.Int(3, "-r", "--repetitions");
        int nBatch = a.Int(2048, "-b", "--batch-size");
        int nUbatch = a.Int(512, "-ub", "--ubatch-size");
        int depth = a.Int(0, "-d", "--n-depth");
        string fa = a.String("-fa", "--flash-attn") ?? "auto";
        a.Flag("--verbose", "-v");
        a.CheckAllUsed();
        if (!File.Exists(model)) throw new UsageException($"{model}: model file not found");
        if (reps < 1) throw new UsageException("-r must be at least 1");
        if (threadCounts.Length == 0 || threadCounts.Any(t => t < 1)) throw new UsageException("-t: thread counts must be at least 1");
        if (prompts.Any(x => x < 0) || gens.Any(x => x < 0) || depth < 0) throw new UsageException("-p, -n and -d must not be negative");
        bool? flash = ParseFlash(fa);

        var tests = prompts.Where(x => x > 0).Select(x => new Test($"pp{x}", x, 0))
            .Concat(gens.Where(x => x > 0).Select(x => new Test($"tg{x}", 0, x))).ToList();
        if (tests.Count == 0) throw new UsageException("nothing to run: -p and -n are both 0");
        int ctxSize = depth + Math.Max(prompts.Max(), 0) + Math.Max(gens.Max(), 0);

        using var weights = LlamaNative.LoadWeights(LlamaNative.Params(model, Math.Max(ctxSize, 16), nBatch, nUbatch, threadCounts[0], flash));
        Console.Error.WriteLine(LlamaNative.Describe());
        string desc = weights.NativeHandle.Description;
        string size = FormatSize(weights.SizeInBytes);
        string parameters = FormatParams(weights.ParameterCount);
        int vocab = weights.Vocab.Count;
        int? bos = weights.Vocab.ShouldAddBOS && weights.Vocab.BOS is { } b ? (int)b : null;

        int w = Math.Max(30, desc.Length);
        Console.Error.WriteLine(LoadAverage("before"));
        Console.WriteLine($"| {"model".PadRight(w)} | {"size",10} | {"params",10} | {"backend",-7} | {"threads",7} | {"test",13} | {"t/s",20} |");
        Console.WriteLine($"| {new string('-', w)} | {new string('-', 9)}: | {new string('-', 9)}: | {new string('-', 7)} | {new string('-', 6)}: | {new string('-', 12)}: | {new string('-', 19)}: |");
        foreach (int threads in threadCounts)
        {
            var p = LlamaNative.Params(model, Math.Max(ctxSize, 16), Math.Min(nBatch, Math.Max(ctxSize, 16)), nUbatch, threads, flash);
            using var context = weights.CreateContext(p);
            var handle = context.NativeHandle;
            var rng = new Random(1234);
            foreach (var test in tests)
            {
                // Warm-up, untimed: the full prompt for pp, one token for tg (as llama-bench).
                handle.MemoryClear(false);
                if (test.Prompt > 0) Prompt(handle, test.Prompt, 0, nBatch, vocab, bos, rng);
                else Generate(handle, 1, 0, vocab, bos, rng);

                var rates = new List<double>();
                for (int r = 0; r < reps; r++)
                {
                    handle.MemoryClear(false);
                    if (depth > 0) Prompt(handle, depth, 0, nBatch, vocab, bos, rng);
                    var sw = Stopwatch.StartNew();
                    if (test.Prompt > 0) Prompt(handle, test.Prompt, depth, nBatch, vocab, bos, rng);
                    else Generate(handle, test.Gen, depth, vocab, bos, rng);
                    double s = sw.Elapsed.TotalSeconds;
                    rates.Add((test.Prompt + test.Gen) / s);
                }
                double mean = rates.Average();
                double sd = rates.Count > 1 ? Math.Sqrt(rates.Sum(x => (x - mean) * (x - mean)) / (rates.Count - 1)) : 0;
                string name = depth > 0 ? $"{test.Name} @ d{depth}" : test.Name;
                string ts = string.Create(CultureInfo.InvariantCulture, $"{mean:F2} ± {sd:F2}");
                Console.WriteLine($"| {desc.PadRight(w)} | {size,10} | {parameters,10} | {"CPU",-7} | {threads,7} | {name,13} | {ts,20} |");
            }
        }
        Console.Error.WriteLine(LoadAverage("after"));
        return 0;
    }

    /// <summary>The 1/5/15-minute load averages (Linux), to judge how much other work shared the cores.</summary>
    internal static string LoadAverage(string when)
    {
        try
        {
            var f = File.ReadAllText("/proc/loadavg").Split(' ');
            return $"load average {when}: {f[0]} {f[1]} {f[2]} on {Environment.ProcessorCount} logical CPU(s)";
        }
        catch (IOException) { return $"load average {when}: unknown"; }
        catch (UnauthorizedAccessException) { return $"load average {when}: unknown"; }
    }

    /// <summary>n random tokens decoded in pieces of nBatch (logits for the last of each piece), as llama-bench's test_prompt.</summary>
    internal static void Prompt(SafeLLamaContextHandle handle, int n, int pos, int nBatch, int vocab, int? bos, Random rng)
    {
        var batch = new LLamaBatch();
        int done = 0;
        while (done < n)
        {
            int len = Math.Min(nBatch, n - done);
            batch.Clear();
            for (int i = 0; i < len; i++)
            {
                int token = pos + done + i == 0 && bos is int b ? b : rng.Next(vocab);
                batch.Add(token, pos + done + i, LLamaSeqId.Zero, i == len - 1);
            }
            Decode(handle, batch);
            done += len;
        }
        handle.Synchronize();
    }

    /// <summary>n single-token decodes, as llama-bench's test_gen.</summary>
    internal static void Generate(SafeLLamaContextHandle handle, int n, int pos, int vocab, int? bos, Random rng)
    {
        var batch = new LLamaBatch();
        int token = pos == 0 && bos is int b ? b : rng.Next(vocab);
        for (int i = 0; i < n; i++)
        {
            batch.Clear();
            batch.Add(token, pos + i, LLamaSeqId.Zero, true);
            Decode(handle, batch);
            handle.Synchronize();
            token = rng.Next(vocab);
        }
    }

    private static void Decode(SafeLLamaContextHandle handle, LLamaBatch batch)
    {
        var r = handle.Decode(batch);
        if (r != DecodeResult.Ok) throw new BitMoeException($"llama.cpp: decode failed: {r}");
    }

    /// <summary>An -fa value: auto (null, llama.cpp decides), 0/off or 1/on.</summary>
    public static bool? ParseFlash(string fa) => fa switch
    {
        "auto" => null,
        "0" or "off" => false,
        "1" or "on" => true,
        _ => throw new UsageException($"-fa: '{fa}' (expected auto, 0 or 1)"),
    };

    private static string FormatSize(ulong bytes) => bytes >= 1UL << 30
        ? string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1UL << 30):F2} GiB")
        : string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1UL << 20):F2} MiB");

    private static string FormatParams(ulong n) => n >= 1_000_000_000
        ? string.Create(CultureInfo.InvariantCulture, $"{n / 1e9:F2} B")
        : string.Create(CultureInfo.InvariantCulture, $"{n / 1e6:F2} M");
}
