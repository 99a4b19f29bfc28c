using System.CommandLine;
using BitMoe.Engine;
using BitMoe.Engine.Evaluation;
using BitMoe.Engine.Gguf;
using BitMoe.Engine.Layers;
using BitMoe.Kernels;
using BitMoe.Quant;
using BitMoe.Quant.Formats;

namespace BitMoe.Cli;

/// <summary>
/// <c>bitmoe bench</c>: llama-bench's table (pp = prompt processing, tg = token generation, tokens/s mean ± stddev
/// over the repetitions, for each thread count), plus for decoding the bytes of active weights read per token, the
/// effective bandwidth, the memory read bandwidth of this machine measured in the same run with the same threads,
/// and the fraction of that roofline reached.
/// </summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var model = ModelOption.Create();
        var prompt = new Option<int>("--n-prompt", "-p") { Description = "prompt tokens for the pp test (0: skip it)", DefaultValueFactory = _ => 512 };
        var gen = new Option<int>("--n-gen", "-n") { Description = "tokens to generate in the tg test (0: skip it)", DefaultValueFactory = _ => 128 };
        var threads = new Option<string>("--threads", "-t") { Description = "thread counts, comma separated (e.g. 1,2)", DefaultValueFactory = _ => Environment.ProcessorCount.ToString() };
        var depth = new Option<int>("--n-depth", "-d") { Description = "depth: tokens put in the cache (untimed) before every run of each test, as llama-bench's -d", DefaultValueFactory = _ => 0 };
        var reps = new Option<int>("--repetitions", "-r") { Description = "timed repetitions of each test (after one warm-up)", DefaultValueFactory = _ => 5 };
        var isa = new Option<string>("--isa") { Description = "kernel instruction set: auto | scalar | avx2 | avxvnni | avx512 | neon (auto: BITMOE_ISA, else the best this CPU has)", DefaultValueFactory = _ => "auto" };
        var mode = new Option<string>("--mode") { Description = "auto | fp | fakequant | packed (auto: packed for a ternary GGUF file, fp for a checkpoint folder)", DefaultValueFactory = _ => "auto" };
        var cacheType = CacheTypeOption.Create();
        var bwSize = new Option<int>("--bw-mib") { Description = "buffer for the memory bandwidth measurement, MiB (keep it well above the last-level cache)", DefaultValueFactory = _ => 1024 };

        var cmd = new Command("bench", "Measure prompt processing and generation speed (llama-bench's pp/tg tests) and how close decoding comes to the memory-bandwidth bound.")
        { model, prompt, gen, depth, threads, reps, isa, mode, cacheType, bwSize };
        cmd.SetAction(r => CliRunner.Run(() =>
        {
            int p = r.GetValue(prompt), n = r.GetValue(gen), d = r.GetValue(depth), repetitions = r.GetValue(reps), mib = r.GetValue(bwSize);
            if (p < 0) throw new BitMoeException($"-p: {p} prompt tokens must be 0 or more");
            if (n < 0) throw new BitMoeException($"-n: {n} generated tokens must be 0 or more");
            if (p == 0 && n == 0) throw new BitMoeException("-p and -n are both 0: nothing to measure");
            if (d < 0) throw new BitMoeException($"-d: {d} depth tokens must be 0 or more");
            if (repetitions < 1) throw new BitMoeException($"-r: {repetitions} repetitions must be at least 1");
            if (mib < 1) throw new BitMoeException($"--bw-mib: {mib} must be at least 1");
            var threadCounts = ParseThreads(r.GetValue(threads)!);
            var forcedMode = CliRunner.ParseMode(r.GetValue(mode)!);
            var kvType = CacheTypeOption.Parse(r.GetValue(cacheType)!);
            SetIsa(r.GetValue(isa)!);
            return Execute(ModelOption.Resolve(r, model), forcedMode, kvType, p, n, d, repetitions, threadCounts, mib * 1048576L);
        }));
        return cmd;
    }

    public static IReadOnlyList<int> ParseThreads(string text)
    {
        var list = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!int.TryParse(part, out int t) || t < 1) throw new BitMoeException($"-t: '{part}' is not a thread count (a whole number of at least 1)");
            list.Add(t);
        }
        if (list.Count == 0) throw new BitMoeException("-t: no thread count given");
        return list;
    }

    /// <summary>Forces <see cref="Isa.Current"/>; "auto" keeps the detected (or BITMOE_ISA) choice. Errors are one line.</summary>
    private static void SetIsa(string text)
    {
        try
        {
            if (Isa.Parse(text, "--isa") is { } forced)
            {
                Isa.Require(forced, "--isa");
                Isa.Current = forced;
            }
            _ = Isa.Current; // an invalid BITMOE_ISA fails here, before the model loads
        }
        catch (NotSupportedException e) { throw new BitMoeException(e.Message); }
    }

    private static int Execute(string path, ExecutionMode? mode, DType cacheType, int p, int n, int d, int repetitions, IReadOnlyList<int> threadCounts, long bwBytes)
    {
        var o = Console.Out;
        int context = d + Math.Max(p, n);
        int nameWidth = d > 0 ? 13 : 7;
        MemoryBandwidth? bandwidth = null;
        var roofline = new List<string>();
        try
        {
            bool headerDone = false;
            foreach (int t in threadCounts)
            {
                using var loaded = LoadForBench(path, mode, cacheType, context, t, p, n, d);
                var tf = loaded.Transformer;
                if (!headerDone)
                {
                    PrintHeader(loaded, path);
                    o.WriteLine();
                    o.WriteLine($"| threads | {"test".PadLeft(nameWidth)} | {"t/s",18} | {"weights/token",13} | {"GB/s",7} | {"mem GB/s",8} | {"roofline",8} |");
                    o.WriteLine($"| ------: | {new string('-', nameWidth - 1)}: | -----------------: | ------------: | ------: | -------: | -------: |");
                    o.Flush();
                    headerDone = true;
                }
                var tokens = Benchmark.PromptTokens(p == 0 ? 1 : p, loaded.Config.VocabSize);
                int[]? depthTokens = d > 0 ? Benchmark.PromptTokens(d, loaded.Config.VocabSize, seed: 4321) : null;
                if (p > 0)
                {
                    var pp = Benchmark.RunPrompt(tf, tokens, repetitions, depthTokens);
                    o.WriteLine($"| {t,7} | {pp.Name.PadLeft(nameWidth)} | {Speed(pp),18} | {"-",13} | {"-",7} | {"-",8} | {"-",8} |");
                    o.Flush();
                }
                if (n > 0)
                {
                    var (tg, traffic) = Benchmark.RunDecode(tf, tokens[0], n, repetitions, depthTokens);
                    bandwidth ??= new MemoryBandwidth(bwBytes);
                    double memory = bandwidth.Measure(t);
                    double effective = traffic.WeightBytes * tg.Mean / 1e9;
                    double bound = traffic.BoundTokensPerSecond(memory);
                    o.WriteLine($"| {t,7} | {tg.Name.PadLeft(nameWidth)} | {Speed(tg),18} | {Mb(traffic.WeightBytes),13} | {effective,7:F2} | {memory,8:F2} | {effective / memory * 100,7:F1}% |");
                    o.Flush();
                    roofline.Add($"roofline t={t}: memory read {memory:F2} GB/s ({bandwidth.Bytes / 1048576} MiB, best of 5) / {Mb(traffic.WeightBytes)} of weights per token " +
                        $"= at most {bound:F1} tokens/s; {tg.Name} ran at {tg.Mean:F1} tokens/s = {tg.Mean / bound * 100:F1}% of the bound ({effective:F2} GB/s)");
                    if (roofline.Count == 1) roofline.Insert(0, TrafficLine(traffic, tf));
                }
            }
        }
        finally
        {
            bandwidth?.Dispose();
        }
        o.WriteLine();
        foreach (var line in roofline) o.WriteLine(line);
        o.WriteLine($"load average at the end: {LoadAverage()}");
        return 0;
    }

    /// <summary>The model with a context of d + max(p, n); a context the model cannot hold names the options that asked for it.</summary>
    private static LoadedModel LoadForBench(string path, ExecutionMode? mode, DType cacheType, int context, int threads, int p, int n, int d)
    {
        try { return ModelLoader.Load(path, mode, context, threads, kvCacheType: cacheType); }
        catch (BitMoeException e) when (e.Message.Contains("max_position_embeddings"))
        {
            throw new BitMoeException($"-d {d} + max(-p {p}, -n {n}) needs a context of {context} tokens: {e.Message}");
        }
    }

    private static void PrintHeader(LoadedModel loaded, string path)
    {
        var c = loaded.Config;
        var tf = loaded.Transformer;
        var (total, active) = ModelTensors.CountParameters(c);
        string shape = $"{c.NumLayers} layers, hidden {c.HiddenSize}, vocab {c.VocabSize}";
        if (c.AnyMoe)
            shape += $", {c.NumExperts} experts top-{c.NumExpertsPerTok} of width {c.SubTokenDim} and hidden {c.MoeIntermediateSize}" +
                     (c.MoeNumHeads > 1 ? $", {c.MoeNumHeads} MoE heads" : "");
        if (c.IsMoeLayer.Any(m => !m)) shape += $", dense FFN {c.IntermediateSize}";
        var o = Console.Out;
        o.WriteLine($"model:   {path} ({Describe(path)}; {shape})");
        o.WriteLine($"size:    {FileBytes(path) / 1048576.0:F2} MiB on disk; {tf.TotalWeightBytes / 1048576.0:F2} MiB of weights in memory ({tf.Mode.ToString().ToLowerInvariant()})");
        o.WriteLine($"params:  {total / 1e6:F2} M total, {active / 1e6:F2} M active per token; KV cache {tf.Cache.ElementType.ToString().ToLowerInvariant()}");
        o.WriteLine($"isa:     {Isa.Current}{(Isa.CurrentGemm != Isa.Current ? $" (batches: {Isa.CurrentGemm})" : "")} (supported here: {string.Join(", ", Isa.Supported)}); vectors: {VectorWidth()}");
        o.WriteLine($"machine: {Environment.ProcessorCount} CPUs, load average {LoadAverage()}");
    }

    /// <summary>The decode traffic of the first thread count (the same for every one: the decode is deterministic).</summary>
    private static string TrafficLine(DecodeTraffic tr, Transformer tf)
    {
        string experts = tr.MoeLayers == 0 ? "no routed experts"
            : $"routed experts {Mb(tr.ExpertBytes)} ({tr.ExpertCallsPerToken / tr.MoeLayers:F2} expert calls, {tr.DistinctExpertsPerToken / tr.MoeLayers:F2} distinct experts per MoE layer per token)";
        return $"decode weights per token: {Mb(tr.WeightBytes)} = fixed {Mb(tr.FixedBytes)} (embedding row {tf.EmbeddingRowBytes} B) + {experts}; " +
               $"the KV cache ({tf.Cache.ElementType.ToString().ToLowerInvariant()}) adds {Mb(tr.KvCacheBytes)} per token on average (not counted)";
    }

    private static string Speed(SpeedSample s) => $"{s.Mean:F2} ± {s.StdDev:F2}";

    private static string Mb(double bytes) => bytes >= 1e6 ? $"{bytes / 1e6:F2} MB" : $"{bytes / 1e3:F2} kB";

    private static string Describe(string path)
    {
        if (Directory.Exists(path)) return "checkpoint folder";
        using var f = GgufFile.Open(path, TernaryGguf.Types);
        GgufModelMetadata.ReadConfig(f, out string arch);
        var types = f.Tensors.Values.GroupBy(t => t.TypeName).OrderByDescending(g => g.Sum(t => t.ByteSize))
            .Select(g => $"{g.Key} x{g.Count()}");
        return $"GGUF, {arch}, tensors {string.Join(", ", types)}";
    }

    private static long FileBytes(string path) =>
        Directory.Exists(path) ? Directory.GetFiles(path).Sum(f => new FileInfo(f).Length) : new FileInfo(path).Length;

    private static string VectorWidth() =>
        System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "512-bit"
        : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "256-bit" : "128-bit";

    /// <summary>/proc/loadavg's three averages (the machine may be shared: other work slows the figures).</summary>
    public static string LoadAverage()
    {
        try
        {
            var parts = File.ReadAllText("/proc/loadavg").Split(' ');
            return string.Join(" ", parts.Take(3));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return "unknown"; }
    }
}
