using System.CommandLine;
using BitMoe.Engine;
using BitMoe.Engine.Generation;
using BitMoe.Engine.Sampling;
using BitMoe.Quant;

namespace BitMoe.Cli;

/// <summary><c>bitmoe generate</c>: continue a prompt, streaming the text to stdout.</summary>
public static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "checkpoint folder", Required = true };
        var prompt = new Option<string?>("--prompt", "-p") { Description = "prompt text" };
        var promptFile = new Option<string?>("--file", "-f") { Description = "read the prompt from a file" };
        var n = new Option<int>("--n-predict", "-n") { Description = "tokens to generate (-1: until end of text or a full context)", DefaultValueFactory = _ => 128 };
        var temp = new Option<float>("--temp") { Description = "temperature; 0 is greedy", DefaultValueFactory = _ => 0.8f };
        var topK = new Option<int>("--top-k") { Description = "keep the k most likely tokens (0: all)", DefaultValueFactory = _ => 40 };
        var topP = new Option<float>("--top-p") { Description = "nucleus sampling threshold (1: off)", DefaultValueFactory = _ => 0.95f };
        var minP = new Option<float>("--min-p") { Description = "drop tokens below min-p times the top probability (0: off)", DefaultValueFactory = _ => 0.05f };
        var repeat = new Option<float>("--repeat-penalty") { Description = "penalty for tokens among the last 64 (1: off)", DefaultValueFactory = _ => 1.0f };
        var seed = new Option<ulong?>("--seed", "-s") { Description = "random seed (default: time)" };
        var ctx = new Option<int?>("--ctx-size", "-c") { Description = "context length (default: max_position_embeddings)" };
        var threads = new Option<int>("--threads", "-t") { Description = "worker threads", DefaultValueFactory = _ => Math.Max(1, Environment.ProcessorCount) };
        var mode = new Option<string>("--mode") { Description = "fp | fakequant | packed", DefaultValueFactory = _ => "fp" };

        var cmd = new Command("generate", "Continue a prompt with the model, streaming text as it is produced.")
        { model, prompt, promptFile, n, temp, topK, topP, minP, repeat, seed, ctx, threads, mode };
        cmd.SetAction(r => CliRunner.Run(() =>
        {
            CliRunner.SetThreads(r.GetValue(threads));
            string text = ReadPrompt(r.GetValue(prompt), r.GetValue(promptFile));
            var sampling = new SamplingParams
            {
                Temperature = r.GetValue(temp), TopK = r.GetValue(topK), TopP = r.GetValue(topP), MinP = r.GetValue(minP),
                RepeatPenalty = r.GetValue(repeat), Seed = r.GetValue(seed) ?? (ulong)Environment.TickCount64,
            };
            Validate(sampling);
            using var loaded = ModelLoader.Load(r.GetValue(model)!, CliRunner.ParseMode(r.GetValue(mode)!), r.GetValue(ctx), r.GetValue(threads));
            var ids = loaded.Tokenizer.Encode(text);
            var generator = new Generator(loaded);
            var sampler = new Sampler(sampling, loaded.Config.VocabSize);
            var stdout = Console.Out;
            stdout.Write(text);
            stdout.Flush();
            var stats = generator.Generate(ids, r.GetValue(n), sampler, piece => { stdout.Write(piece); stdout.Flush(); });
            stdout.WriteLine();
            Console.Error.WriteLine(
                $"prompt: {stats.PromptTokens} tokens in {stats.PromptSeconds:F3} s ({stats.PromptTokensPerSecond:F2} tokens/s); " +
                $"generation: {stats.GeneratedTokens} tokens in {stats.GenerateSeconds:F3} s ({stats.GenerateTokensPerSecond:F2} tokens/s); stop: {stats.StopReason}");
            return 0;
        }));
        return cmd;
    }

    private static string ReadPrompt(string? prompt, string? file)
    {
        if (file != null)
        {
            if (!File.Exists(file)) throw new BitMoeException($"{file}: prompt file not found");
            prompt = File.ReadAllText(file);
            if (prompt.Length == 0) throw new BitMoeException($"{file}: the prompt file is empty");
        }
        if (string.IsNullOrEmpty(prompt)) throw new BitMoeException("-p: the prompt is empty (give -p TEXT or -f FILE)");
        return prompt;
    }

    public static void Validate(SamplingParams s)
    {
        if (s.TopP is <= 0f or > 1f) throw new BitMoeException($"--top-p: {s.TopP} must be in (0, 1]");
        if (s.MinP is < 0f or > 1f) throw new BitMoeException($"--min-p: {s.MinP} must be in [0, 1]");
        if (s.RepeatPenalty <= 0f) throw new BitMoeException($"--repeat-penalty: {s.RepeatPenalty} must be positive");
        if (float.IsNaN(s.Temperature)) throw new BitMoeException("--temp: not a number");
    }
}
