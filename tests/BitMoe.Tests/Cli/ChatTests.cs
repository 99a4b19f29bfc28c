using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using BitMoe.Engine.Generation;
using BitMoe.Tests.Engine;

namespace BitMoe.Tests.Cli;

/// <summary><c>bitmoe chat</c> as a user runs it: the built bitmoe.dll in a subprocess with a scripted stdin.</summary>
public class ChatTests
{
    private static readonly string ModelDir = Fixtures.Dir(ChatSessionTests.Fixture);

    public sealed record Run(int ExitCode, string Stdout, string Stderr);

    /// <summary>Runs <c>dotnet bitmoe.dll args</c> with <paramref name="stdin"/> piped in.</summary>
    public static Run Bitmoe(string stdin, params string[] args)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "bitmoe.dll");
        Assert.True(File.Exists(dll), $"{dll} not found");
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8, StandardErrorEncoding = Encoding.UTF8, StandardInputEncoding = new UTF8Encoding(false),
        };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(120_000)) { p.Kill(true); Assert.Fail("bitmoe chat did not finish in 120 s"); }
        return new Run(p.ExitCode, stdout.Result, stderr.Result);
    }

    private static readonly Regex TurnLine = new(@"^turn (\d+): fed (\d+) tokens, generated (\d+), evaluated (\d+), cache (\d+)/(\d+)", RegexOptions.Multiline);

    private static List<(int Turn, int Fed, int Generated, int Evaluated, int Cache)> Turns(string stderr) =>
        TurnLine.Matches(stderr).Select(m => (int.Parse(m.Groups[1].Value), int.Parse(m.Groups[2].Value), int.Parse(m.Groups[3].Value),
            int.Parse(m.Groups[4].Value), int.Parse(m.Groups[5].Value))).ToList();

    [Fact]
    public void ScriptedConversationPrintsOneReplyPerLineAndFeedsOnlyNewTurns()
    {
        string script = string.Join("\n", ChatSessionTests.Messages) + "\n";
        var run = Bitmoe(script, "chat", "-m", ModelDir, "--temp", "0", "-n", "5", "--verbose");
        Assert.True(run.ExitCode == 0, run.Stderr);

        // The same conversation in process: stdout is exactly the replies, each followed by a newline, no markers.
        using var model = ChatSessionTests.Load(ctx: 2048);
        var session = ChatSessionTests.Session(model, new ChatOptions { MaxTokens = 5 });
        var expected = new StringBuilder();
        foreach (var m in ChatSessionTests.Messages) expected.Append(session.Send(m, _ => { }).Reply).Append('\n');
        Assert.Equal(expected.ToString(), run.Stdout);
        Assert.DoesNotContain("> ", run.Stdout);
        Assert.DoesNotContain("\u001b[", run.Stdout + run.Stderr);

        var turns = Turns(run.Stderr);
        Assert.Equal([1, 2, 3], turns.Select(t => t.Turn));
        var tok = model.Tokenizer;
        var template = session.Template;
        for (int i = 1; i < 3; i++)
        {
            // Turns 2 and 3 evaluate their own tokens (the previous reply's end, the message, the prefix) and what
            // they generate, nothing of turn 1: the cache grows by exactly that.
            int newTurn = tok.Encode(template.ReplyEnd, addBos: false).Length + tok.Encode(template.UserTurn(ChatSessionTests.Messages[i]), addBos: false).Length;
            Assert.Equal(newTurn, turns[i].Fed);
            Assert.Equal(turns[i].Fed + turns[i].Generated, turns[i].Evaluated);
            Assert.Equal(turns[i - 1].Cache + turns[i].Evaluated, turns[i].Cache);
        }
        Assert.Contains("chat: 3 turns; prompt: ", run.Stderr);
        Assert.Contains("tokens/s", run.Stderr);
    }

    [Fact]
    public void ResetFeedsTheSystemPromptAgain()
    {
        var run = Bitmoe("hello there\n/reset\nhello there\n/exit\nnot read\n", "chat", "-m", ModelDir, "--temp", "0", "-n", "6", "-v", "--system", "Be brief.");
        Assert.True(run.ExitCode == 0, run.Stderr);
        int system = int.Parse(Regex.Match(run.Stderr, @"^system: (\d+) tokens", RegexOptions.Multiline).Groups[1].Value);
        Assert.True(system > 0);
        Assert.Contains($"(conversation cleared; {system} tokens in the cache)", run.Stderr);
        var turns = Turns(run.Stderr);
        Assert.Equal(2, turns.Count); // /exit ends the chat before the last line
        Assert.Equal(turns[0].Fed, turns[1].Fed);
        Assert.Equal(turns[0].Cache, turns[1].Cache);
        var lines = run.Stdout.Split('\n');
        Assert.Equal(lines[0], lines[1]); // same conversation, same greedy reply
    }

    public static TheoryData<string[], string> BadInput => new()
    {
        { ["--template", "nope"], "bitmoe: error: --template: unknown chat template 'nope' (known: chatml, llama3, zephyr, plain)" },
        { ["-c", "16", "--system", string.Concat(Enumerable.Repeat("a long system prompt ", 10))], "bitmoe: error: --system: the system prompt needs " },
        { ["--template", "llama3"], "bitmoe: error: --template llama3: the tokenizer has no <|begin_of_text|> token" },
        { ["--top-p", "0"], "bitmoe: error: --top-p: " },
        { ["-m", "/nonexistent/bitmoe-model"], "bitmoe: error: /nonexistent/bitmoe-model: model path does not exist" },
    };

    [Theory, MemberData(nameof(BadInput))]
    public void BadInputIsOneErrorLine(string[] extra, string expectedStart)
    {
        var args = new List<string> { "chat" };
        if (!extra.Contains("-m")) args.AddRange(["-m", ModelDir]);
        args.AddRange(extra);
        var run = Bitmoe("hello\n", args.ToArray());
        Assert.Equal(1, run.ExitCode);
        var lines = run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, run.Stderr);
        Assert.StartsWith(expectedStart, lines[0]);
        Assert.DoesNotContain(" at ", run.Stderr.Replace(expectedStart, ""));
        Assert.Equal("", run.Stdout);
    }

    [Fact]
    public void FullContextEndsAScriptedChatWithOneErrorLine()
    {
        var run = Bitmoe("hello there\nhow are you?\ntell me more\nand more\n", "chat", "-m", ModelDir, "--temp", "0", "-n", "5", "-c", "48");
        Assert.Equal(1, run.ExitCode);
        var errors = run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("bitmoe: error:")).ToList();
        Assert.Single(errors);
        Assert.Contains("the context is full", errors[0]);
        Assert.Contains("--context-shift", errors[0]);
        Assert.DoesNotContain("Exception", run.Stderr);
    }

    [Fact]
    public void ContextShiftGoesOn()
    {
        var run = Bitmoe("hello there\nhow are you?\ntell me more\nand more\n", "chat", "-m", ModelDir, "--temp", "0", "-n", "5", "-c", "48",
            "--context-shift", "-v", "--system", "Be brief.");
        Assert.True(run.ExitCode == 0, run.Stderr);
        var turns = Turns(run.Stderr);
        Assert.Equal(4, turns.Count);
        Assert.All(turns, t => Assert.True(t.Cache <= 48));
        Assert.Contains("context shifted", run.Stderr);

        using var model = ChatSessionTests.Load(ctx: 48);
        var session = ChatSessionTests.Session(model, new ChatOptions { System = "Be brief.", MaxTokens = 5, ContextShift = true });
        var expected = new StringBuilder();
        foreach (var m in new[] { "hello there", "how are you?", "tell me more", "and more" }) expected.Append(session.Send(m, _ => { }).Reply).Append('\n');
        Assert.Equal(expected.ToString(), run.Stdout);
    }
}
