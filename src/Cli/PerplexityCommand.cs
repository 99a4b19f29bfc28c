using System.CommandLine;
using System.Diagnostics;
using BitMoe.Engine;
using BitMoe.Engine.Evaluation;
using BitMoe.Quant;

namespace BitMoe.Cli;

/// <summary><c>bitmoe perplexity</c>: llama-perplexity's chunked perplexity of a text file.</summary>
public static class PerplexityCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "checkpoint folder", Required = true };
        var file = new Option<string>("--file", "-f") { Description = "text file to score", Required = true };
        var ctx = new Option<int>("--ctx-size", "-c") { Description = "tokens per chunk", DefaultValueFactory = _ => 512 };
        var threads = new Option<int>("--threads", "-t") { Description = "worker threads", DefaultValueFactory = _ => Math.Max(1, Environment.ProcessorCount) };
        var mode = new Option<string>("--mode") { Description = "fp | fakequant | packed", DefaultValueFactory = _ => "fp" };

        var cmd = new Command("perplexity", "Perplexity of a text file, in non-overlapping chunks of -c tokens.")
        { model, file, ctx, threads, mode };
        cmd.SetAction(r => CliRunner.Run(() =>
        {
            CliRunner.SetThreads(r.GetValue(threads));
            string path = r.GetValue(file)!;
            if (!File.Exists(path)) throw new BitMoeException($"{path}: text file not found");
            string text = File.ReadAllText(path);
            if (text.Length == 0) throw new BitMoeException($"{path}: the text file is empty");
            int chunk = r.GetValue(ctx);
            if (chunk < 2) throw new BitMoeException($"-c: chunk length {chunk} must be at least 2");

            using var loaded = ModelLoader.Load(r.GetValue(model)!, CliRunner.ParseMode(r.GetValue(mode)!), chunk, r.GetValue(threads));
            var tokens = loaded.Tokenizer.Encode(text);
            if (tokens.Length < 2) throw new BitMoeException($"{path}: the text has {tokens.Length} token(s); at least 2 are needed");
            int chunks = Perplexity.Chunks(tokens.Length, chunk).Count();
            Console.Error.WriteLine($"{path}: {tokens.Length} tokens, {chunks} chunk(s) of up to {chunk}");

            var sw = Stopwatch.StartNew();
            var result = Perplexity.Evaluate(loaded.Transformer, tokens, chunk, report =>
            {
                Console.Write($"[{report.Chunk}]{report.RunningPerplexity:F4},");
                Console.Out.Flush();
            });
            Console.WriteLine();
            Console.WriteLine($"Final estimate: PPL = {result.Perplexity:F6} +/- {result.PerplexityError:F6}");
            Console.WriteLine($"tokens scored: {result.Count}; {result.Count / sw.Elapsed.TotalSeconds:F1} tokens/s");
            return 0;
        }));
        return cmd;
    }
}
