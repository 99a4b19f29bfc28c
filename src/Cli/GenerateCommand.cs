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
        var model = ModelOption.Create();
        var prompt = new Option<string?>("--prompt", "-p") { Description = "prompt text" };
        var promptFile = new Option<string?>("--file", "-f") { Description = "read the prompt from a file" };
        var n = new Option<int>("--n-predict", "-n") { Description = "tokens to generate (-1: until end of text or a full context)", DefaultValueFactory = _ => 128 };
        var sampling = new SamplingOptions();
        var ctx = new Option<int?>("--ctx-size", "-c") { Description = "context length (default: max_position_embeddings)" };
        var threads = new Option<int>("--threads", "-t") { Description = "worker threads", DefaultValueFactory = _ => Math.Max(1, Environment.ProcessorCount) };
        var cacheType = CacheTypeOption.Create();
        var mode = new Option<string>("--mode") { Description = "auto | fp | fakequant | packed (auto: packed for a ternary GGUF file, fp for a checkpoint folder)", DefaultValueFactory = _ => "auto" };

        var cmd = new Command("generate", "Continue a prompt with the model, streaming text as it is produced.")
        { model, prompt, promptFile, n };
        sampling.AddTo(cmd);
        cmd.Options.Add(ctx); cmd.Options.Add(cacheType); cmd.Options.Add(threads); cmd.Options.Add(mode);
        cmd.SetAction(r => CliRunner.Run(() =>
        {
            CliRunner.SetThreads(r.GetValue(threads));
            string text = ReadPrompt(r.GetValue(prompt), r.GetValue(promptFile));
            var samplingParams = sampling.Read(r);
            using var loaded = ModelLoader.Load(ModelOption.Resolve(r, model), CliRunner.ParseMode(r.GetValue(mode)!), r.GetValue(ctx), r.GetValue(threads),
                kvCacheType: CacheTypeOption.Parse(r.GetValue(cacheType)!));
            var ids = loaded.Tokenizer.Encode(text);
            var generator = new Generator(loaded);
            var sampler = new Sampler(samplingParams, loaded.Config.VocabSize);
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

    /// <summary>Checks sampling values; kept for callers of the earlier API (see <see cref="SamplingOptions.Validate"/>).</summary>
    public static void Validate(SamplingParams s) => SamplingOptions.Validate(s);
}
