using System.Diagnostics;

namespace BitMoe.Cli;

/// <summary>
/// Progress with an ETA on stderr: redrawn in place on a terminal, and at most one line per 10%
/// when stderr is redirected (so logs stay readable).
/// </summary>
public sealed class ProgressBar(string label, long total)
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly bool _interactive = !Console.IsErrorRedirected;
    private int _lastDecile = -1;

    public void Report(long done, string detail = "")
    {
        double fraction = total <= 0 ? 1 : Math.Clamp((double)done / total, 0, 1);
        double elapsed = _clock.Elapsed.TotalSeconds;
        string eta = fraction > 0 && fraction < 1 ? Format(elapsed / fraction - elapsed) : "--:--";
        if (_interactive)
        {
            const int width = 30;
            int filled = (int)(fraction * width);
            Console.Error.Write($"\r{label} [{new string('#', filled)}{new string('.', width - filled)}] {fraction * 100,5:F1}% {detail} ETA {eta}   ");
            if (done >= total) Console.Error.WriteLine();
        }
        else
        {
            int decile = (int)(fraction * 10);
            if (decile == _lastDecile) return;
            _lastDecile = decile;
            Console.Error.WriteLine($"{label}: {fraction * 100:F0}% {detail} (elapsed {Format(elapsed)}, ETA {eta})");
        }
    }

    private static string Format(double seconds)
    {
        var t = TimeSpan.FromSeconds(Math.Max(0, seconds));
        return t.TotalHours >= 1 ? $"{(int)t.TotalHours}:{t.Minutes:D2}:{t.Seconds:D2}" : $"{t.Minutes:D2}:{t.Seconds:D2}";
    }
}
