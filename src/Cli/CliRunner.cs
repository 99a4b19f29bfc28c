using BitMoe.Engine.Layers;
using BitMoe.Quant;

namespace BitMoe.Cli;

/// <summary>Runs a command body and turns every expected failure into one line on stderr and exit code 1.</summary>
public static class CliRunner
{
    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (BitMoeException e)
        {
            return Fail(e.Message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Fail(e.Message);
        }
    }

    public static int Fail(string message)
    {
        Console.Out.Flush();
        Console.Error.WriteLine($"bitmoe: error: {message}");
        return 1;
    }

    /// <summary>A --mode value; "auto" (null) lets the loader pick: packed for a ternary GGUF file, fp otherwise.</summary>
    public static ExecutionMode? ParseMode(string text) => text.Trim().ToLowerInvariant() switch
    {
        "auto" => null,
        "fp" => ExecutionMode.Fp,
        "fakequant" => ExecutionMode.FakeQuant,
        "packed" => ExecutionMode.Packed,
        _ => throw new BitMoeException($"--mode: unknown mode '{text}' (expected auto, fp, fakequant or packed)"),
    };

    public static void SetThreads(int threads)
    {
        if (threads < 1) throw new BitMoeException($"-t: thread count {threads} must be at least 1");
    }
}
