using System.CommandLine;
using BitMoe.Engine;
using BitMoe.Engine.Generation;
using BitMoe.Engine.Sampling;

namespace BitMoe.Cli;

/// <summary>
/// <c>bitmoe chat</c>: a conversation read line by line from stdin. At a terminal it shows a "> " prompt and
/// streams each reply; with stdin redirected it prints only the replies, one after another, each followed by
/// a newline, so a scripted conversation can be piped in.
/// </summary>
public static class ChatCommand
{
    public static Command Create()
    {
        var model = ModelOption.Create();
        var system = new Option<string?>("--system") { Description = "system prompt, fed once at the start (and after /reset)" };
        var template = new Option<string?>("--template") { Description = $"chat template: {string.Join(", ", ChatTemplate.Names)} (default: the model's, else chatml when the tokenizer has <|im_start|>, else plain)" };
        var sampling = new SamplingOptions();
        var n = new Option<int>("--n-predict", "-n") { Description = "tokens per reply (-1: until the end of the turn)", DefaultValueFactory = _ => -1 };
        var ctx = new Option<int?>("--ctx-size", "-c") { Description = "context length (default: max_position_embeddings)" };
        var threads = new Option<int>("--threads", "-t") { Description = "worker threads", DefaultValueFactory = _ => Math.Max(1, Environment.ProcessorCount) };
        var cacheType = CacheTypeOption.Create();
        var mode = new Option<string>("--mode") { Description = "auto | fp | fakequant | packed (auto: packed for a ternary GGUF file, fp for a checkpoint folder)", DefaultValueFactory = _ => "auto" };
        var shift = new Option<bool>("--context-shift") { Description = "when the context is full, keep the system prompt and the latest half of the conversation (re-evaluated) instead of refusing the turn" };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "print token counts and speed for every turn on stderr" };

        var cmd = new Command("chat", "Chat with the model: one message per line on stdin; /reset starts over, /exit or end of input ends.")
        { model, system, template };
        sampling.AddTo(cmd);
        foreach (var o in new Option[] { n, ctx, cacheType, threads, mode, shift, verbose }) cmd.Options.Add(o);

        cmd.SetAction(r => CliRunner.Run(() =>
        {
            CliRunner.SetThreads(r.GetValue(threads));
            var samplingParams = sampling.Read(r);
            string? templateName = r.GetValue(template);
            if (templateName != null) ChatTemplate.FromName(templateName); // an unknown name fails before the model loads
            string? systemText = r.GetValue(system);
            if (string.IsNullOrEmpty(systemText)) systemText = null;
            bool beVerbose = r.GetValue(verbose);

            using var loaded = ModelLoader.Load(ModelOption.Resolve(r, model), CliRunner.ParseMode(r.GetValue(mode)!), r.GetValue(ctx), r.GetValue(threads),
                kvCacheType: CacheTypeOption.Parse(r.GetValue(cacheType)!));
            var chatTemplate = ChatTemplate.Default(loaded, templateName);
            var session = new ChatSession(loaded, chatTemplate, new Sampler(samplingParams, loaded.Config.VocabSize), new ChatOptions
            {
                System = systemText, MaxTokens = r.GetValue(n), ContextShift = r.GetValue(shift),
            });
            return Loop(session, loaded.Path, interactive: !Console.IsInputRedirected, beVerbose);
        }));
        return cmd;
    }

    private static int Loop(ChatSession session, string modelPath, bool interactive, bool verbose)
    {
        var stdout = Console.Out;
        var stderr = Console.Error;
        if (interactive)
            stderr.WriteLine($"chat with {modelPath} ({session.Template.Name} template, context {session.ContextLength} tokens); " +
                "/reset starts over, /exit or Ctrl-D ends");
        if (verbose) stderr.WriteLine($"system: {session.PreambleTokens} tokens");

        int promptTokens = 0, generatedTokens = 0;
        double promptSeconds = 0, generateSeconds = 0;
        while (true)
        {
            if (interactive) { stdout.Write("> "); stdout.Flush(); }
            string? line = Console.In.ReadLine();
            if (line == null)
            {
                if (interactive) stdout.WriteLine();
                break;
            }
            string command = line.Trim();
            if (command == "/exit") break;
            if (command == "/reset")
            {
                session.Reset();
                if (interactive || verbose) stderr.WriteLine($"(conversation cleared; {session.CacheLength} tokens in the cache)");
                continue;
            }
            if (command.Length == 0) continue;

            var result = session.Send(line, piece => { stdout.Write(piece); stdout.Flush(); });
            if (result.Refused)
            {
                // At a terminal the user can /reset and go on; a script cannot, so the chat ends there.
                if (!interactive) return CliRunner.Fail(result.Message!);
                stderr.WriteLine($"bitmoe: {result.Message}");
                continue;
            }
            stdout.WriteLine();
            stdout.Flush();
            promptTokens += result.FedTokens; generatedTokens += result.GeneratedTokens;
            promptSeconds += result.PromptSeconds; generateSeconds += result.GenerateSeconds;
            if (result.StopReason == "context")
                stderr.WriteLine($"bitmoe: the reply was cut: the context of {session.ContextLength} tokens is full (/reset starts over, --context-shift slides the window)");
            if (verbose)
                stderr.WriteLine($"turn {result.Turn}: fed {result.FedTokens} tokens, generated {result.GeneratedTokens}, " +
                    $"evaluated {result.EvaluatedTokens}, cache {session.CacheLength}/{session.ContextLength}, stop: {result.StopReason}" +
                    (result.Shifts > 0 ? $", context shifted {result.Shifts}x" : "") +
                    $" ({Rate(result.FedTokens, result.PromptSeconds):F2} prompt tokens/s, {Rate(result.GeneratedTokens, result.GenerateSeconds):F2} tokens/s)");
        }
        stderr.WriteLine(
            $"chat: {session.Turns} turn{(session.Turns == 1 ? "" : "s")}; prompt: {promptTokens} tokens in {promptSeconds:F3} s ({Rate(promptTokens, promptSeconds):F2} tokens/s); " +
            $"generation: {generatedTokens} tokens in {generateSeconds:F3} s ({Rate(generatedTokens, generateSeconds):F2} tokens/s)");
        return 0;
    }

    private static double Rate(int tokens, double seconds) => tokens / Math.Max(seconds, 1e-9);
}
