using System.Text.RegularExpressions;
using BitMoe.Engine.Conversion;
using BitMoe.Kernels;

namespace BitMoe.Tests.Cli;

/// <summary>
/// <c>bitmoe bench</c> on a small packed model: the llama-bench rows and the roofline lines appear, and a bad
/// --isa is one clean line. Speed is never asserted (the machine is shared).
/// </summary>
public sealed class BenchTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bitmoe-bench-" + Guid.NewGuid().ToString("N"));
    private readonly string _gguf;

    public BenchTests()
    {
        Directory.CreateDirectory(_dir);
        _gguf = Path.Combine(_dir, "h2.gguf");
        Quantizer.Run(Fixtures.Dir("mhmoe_h2_top2_bitnet"), _gguf, new QuantizeOptions(OutputType.Tq2, "mhmoe"));
    }

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void PrintsPromptAndGenerationRowsForEveryThreadCountAndTheRoofline()
    {
        var r = CliProcess.Run("bench", "-m", _gguf, "-p", "8", "-n", "4", "-r", "1", "-t", "1,2", "--bw-mib", "32");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var o = r.Stdout;
        Assert.Contains("params:", o);
        Assert.Contains("isa:", o);
        foreach (int t in new[] { 1, 2 })
        {
            Assert.Matches(new Regex($@"^\|\s+{t} \|\s+pp8 \|\s+[0-9.]+ ± [0-9.]+ \|", RegexOptions.Multiline), o);
            Assert.Matches(new Regex($@"^\|\s+{t} \|\s+tg4 \|\s+[0-9.]+ ± [0-9.]+ \|\s+[0-9.]+ kB \|\s+[0-9.]+ \|\s+[0-9.]+ \|\s+[0-9.]+% \|", RegexOptions.Multiline), o);
            Assert.Matches(new Regex($@"^roofline t={t}: memory read [0-9.]+ GB/s .* of weights per token = at most [0-9.]+ tokens/s; tg4 ran at", RegexOptions.Multiline), o);
        }
        // mhmoe_h2_top2: 2 MoE heads x top-2 = 4 expert calls per MoE layer per token.
        Assert.Contains("4.00 expert calls", o);
    }

    [Fact]
    public void ForcedIsaIsUsed()
    {
        var r = CliProcess.Run("bench", "-m", _gguf, "-p", "0", "-n", "2", "-r", "1", "-t", "1", "--bw-mib", "8", "--isa", "scalar");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("isa:     Scalar", r.Stdout);
        Assert.DoesNotMatch(@"\|\s+pp\d+ \|", r.Stdout); // -p 0 skips the prompt test
        Assert.Matches(@"\|\s+tg2 \|", r.Stdout);
    }

    [Fact]
    public void UnsupportedIsaIsOneLine()
    {
        // neon on x86, an x86 ISA on ARM
        var missing = Enum.GetValues<KernelIsa>().First(i => !Isa.IsSupported(i));
        CliProcess.AssertCleanError(CliProcess.Run("bench", "-m", _gguf, "-p", "8", "-n", "4", "--isa", missing.ToString().ToLowerInvariant()),
            "--isa", missing.ToString(), "does not support");
    }

    [Fact]
    public void UnknownIsaAndBadOptionsAreOneLine()
    {
        CliProcess.AssertCleanError(CliProcess.Run("bench", "-m", _gguf, "--isa", "sse9"), "--isa", "'sse9' is not an instruction set");
        CliProcess.AssertCleanError(CliProcess.Run("bench", "-m", _gguf, "-t", "1,zero"), "-t", "'zero'");
        CliProcess.AssertCleanError(CliProcess.Run("bench", "-m", _gguf, "-r", "0"), "-r");
        CliProcess.AssertCleanError(CliProcess.Run("bench", "-m", _gguf, "-p", "0", "-n", "0"), "nothing to measure");
        CliProcess.AssertCleanError(CliProcess.Run("bench", "-m", _gguf, "-d", "-3"), "-d", "0 or more");
        CliProcess.AssertCleanError(CliProcess.Run("bench", "-m", _gguf, "-d", "100000", "-p", "8"), "-d 100000", "max_position_embeddings");
    }

    /// <summary>-ct f16: the header and the traffic line name the cache type, and the cache bytes read per token are half of f32's.</summary>
    [Fact]
    public void F16CacheHalvesTheCacheBytesPerToken()
    {
        double CacheKb(string type)
        {
            var r = CliProcess.Run("bench", "-m", _gguf, "-p", "0", "-n", "4", "-d", "6", "-r", "1", "-t", "1", "--bw-mib", "8", "-ct", type);
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Contains($"KV cache {type}", r.Stdout);
            var m = Regex.Match(r.Stdout, $@"the KV cache \({type}\) adds ([0-9.]+) kB per token");
            Assert.True(m.Success, r.Stdout);
            return double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        }
        double f32 = CacheKb("f32"), f16 = CacheKb("f16");
        Assert.True(f32 > 0);
        Assert.InRange(f16, f32 / 2 - 0.01, f32 / 2 + 0.01); // printed to 0.01 kB
        CliProcess.AssertCleanError(CliProcess.Run("bench", "-m", _gguf, "-ct", "q8_0"), "--cache-type", "'q8_0'", "f32 or f16");
    }

    [Fact]
    public void DepthNamesTheTestsAsLlamaBench()
    {
        var r = CliProcess.Run("bench", "-m", _gguf, "-p", "8", "-n", "4", "-d", "6", "-r", "1", "-t", "1", "--bw-mib", "8");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Matches(new Regex(@"^\|\s+1 \|\s+pp8 @ d6 \|\s+[0-9.]+ ± [0-9.]+ \|", RegexOptions.Multiline), r.Stdout);
        Assert.Matches(new Regex(@"^\|\s+1 \|\s+tg4 @ d6 \|\s+[0-9.]+ ± [0-9.]+ \|\s+[0-9.]+ kB \|", RegexOptions.Multiline), r.Stdout);
    }
}
