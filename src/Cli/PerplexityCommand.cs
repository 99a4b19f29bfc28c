using System.CommandLine;
using System.Diagnostics;
using BitMoe.Engine;
using BitMoe.Engine.Evaluation;
using BitMoe.Engine.Layers;
using BitMoe.Kernels;
using BitMoe.Quant;

namespace BitMoe.Cli;

/// <summary>
/// <c>bitmoe perplexity</c>: llama-perplexity's chunked perplexity of a text file, for one run or
/// several (models x modes) evaluated on the same tokens and compared with the first.
/// </summary>
public static class PerplexityCommand
{
    public static Command Create()
    {
        var models = new Option<string[]>("--model", "-m") { Description = "model (repeat to compare models)", Required = true, AllowMultipleArgumentsPerToken = false };
        var file = new Option<string>("--file", "-f") { Description = "text file to score", Required = true };
        var ctx = new Option<int>("--ctx-size", "-c") { Description = "tokens per chunk", DefaultValueFactory = _ => 512 };
        var cacheType = CacheTypeOption.Create();
        var threads = new Option<int>("--threads", "-t") { Description = "worker threads", DefaultValueFactory = _ => Math.Max(1, Environment.ProcessorCount) };
        var mode = new Option<string>("--mode") { Description = "auto | fp | fakequant | packed, or a comma list to compare modes (auto: packed for a ternary GGUF file, fp for a checkpoint folder)", DefaultValueFactory = _ => "auto" };

        var cmd = new Command("perplexity",
            "Perplexity of a text file in non-overlapping chunks of -c tokens; with several -m or modes, also delta PPL, KL divergence and top-1 agreement against the first run.")
        { models, file, ctx, cacheType, threads, mode };
        cmd.SetAction(r => CliRunner.Run(() => Execute(r.GetValue(models)!, r.GetValue(file)!, r.GetValue(ctx), r.GetValue(threads), r.GetValue(mode)!,
            CacheTypeOption.Parse(r.GetValue(cacheType)!))));
        return cmd;
    }

    private static int Execute(string[] modelPaths, string path, int chunk, int threads, string modeList, DType cacheType)
    {
        CliRunner.SetThreads(threads);
        if (!File.Exists(path)) throw new BitMoeException($"{path}: text file not found");
        string text = File.ReadAllText(path);
        if (text.Length == 0) throw new BitMoeException($"{path}: the text file is empty");
        if (chunk < 2) throw new BitMoeException($"-c: chunk length {chunk} must be at least 2");
        var modes = modeList.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(CliRunner.ParseMode).ToArray();
        if (modes.Length == 0) throw new BitMoeException("--mode: no mode given");

        var loaded = new List<(LoadedModel Model, string Label)>();
        try
        {
            foreach (var m in modelPaths)
                foreach (var mode in modes)
                {
                    var model = ModelLoader.Load(m, mode, chunk, threads, kvCacheType: cacheType);
                    loaded.Add((model, $"{m} [{model.Transformer.Mode.ToString().ToLowerInvariant()}]"));
                }

            var tokens = loaded[0].Model.Tokenizer.Encode(text);
            foreach (var (m, label) in loaded.Skip(1))
                if (!m.Tokenizer.Encode(text).SequenceEqual(tokens))
                    throw new BitMoeException($"{m.Path}: its tokenizer splits {path} differently from {loaded[0].Model.Path}; runs must score the same tokens");
            if (tokens.Length < 2) throw new BitMoeException($"{path}: the text has {tokens.Length} token(s); at least 2 are needed");
            int chunks = Perplexity.Chunks(tokens.Length, chunk).Count();
            Console.Error.WriteLine($"{path}: {tokens.Length} tokens, {chunks} chunk(s) of up to {chunk}, {loaded.Count} run(s)");

            var bar = new ProgressBar("perplexity", chunks);
            var sw = Stopwatch.StartNew();
            var result = Perplexity.Evaluate(loaded.Select(l => l.Model.Transformer).ToList(), tokens, chunk, report =>
            {
                Console.Write($"[{report.Chunk}]{report.Runs[0].Perplexity:F4},");
                Console.Out.Flush();
                bar.Report(report.Chunk, $"chunk {report.Chunk}/{report.Chunks}");
            });
            Console.WriteLine();
            Print(result, loaded.Select(l => l.Label).ToList(), sw.Elapsed.TotalSeconds);
            return 0;
        }
        finally
        {
            foreach (var (m, _) in loaded) m.Dispose();
        }
    }

    private static void Print(PerplexityResult result, IReadOnlyList<string> labels, double seconds)
    {
        var first = result.Runs[0];
        if (result.Runs.Count == 1)
        {
            Console.WriteLine($"Final estimate: PPL = {first.Perplexity:F6} +/- {first.PerplexityError:F6}");
            Console.WriteLine($"tokens scored: {first.Count}; {first.Count / seconds:F1} tokens/s");
            return;
        }
        for (int i = 0; i < result.Runs.Count; i++)
        {
            var run = result.Runs[i];
            Console.WriteLine($"run {i + 1}: {labels[i]}");
            Console.WriteLine($"  Final estimate: PPL = {run.Perplexity:F6} +/- {run.PerplexityError:F6}");
            if (result.VersusFirst[i] is { } cmp)
            {
                double delta = run.Perplexity - first.Perplexity;
                Console.WriteLine($"  vs run 1: delta PPL = {delta:+0.000000;-0.000000} ({delta / first.Perplexity * 100:+0.0000;-0.0000}%)");
                Console.WriteLine($"  KL divergence: mean {cmp.MeanKl:E4}, median {cmp.MedianKl:E4}, 99th percentile {cmp.P99Kl:E4}");
                Console.WriteLine($"  top-1 agreement: {cmp.TopTokenAgreement * 100:F3}%");
            }
        }
        Console.WriteLine($"tokens scored: {first.Count} per run; {first.Count * result.Runs.Count / seconds:F1} tokens/s over all runs");
    }
}
