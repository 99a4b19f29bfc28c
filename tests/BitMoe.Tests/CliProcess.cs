using System.Diagnostics;

namespace BitMoe.Tests;

/// <summary>Runs the real `bitmoe` executable (built next to the tests) as a child process.</summary>
public static class CliProcess
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static Result RunWithInput(string? stdin, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "bitmoe.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (stdin != null) p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(120_000))
        {
            p.Kill(true);
            throw new TimeoutException("bitmoe did not finish in 120 s: " + string.Join(' ', args));
        }
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    public static Result Run(params string[] args) => RunWithInput(null, args);

    /// <summary>A failure the way users must see it: exit code 1, one line on stderr naming <paramref name="expected"/>, no stack trace.</summary>
    public static void AssertCleanError(Result r, params string[] expected)
    {
        Assert.Equal(1, r.ExitCode);
        var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, "expected one line on stderr, got:\n" + r.Stderr);
        Assert.StartsWith("bitmoe: error: ", lines[0]);
        Assert.DoesNotContain("   at ", r.Stderr);
        Assert.DoesNotContain("Exception", r.Stderr);
        foreach (var e in expected) Assert.Contains(e, lines[0]);
    }
}
