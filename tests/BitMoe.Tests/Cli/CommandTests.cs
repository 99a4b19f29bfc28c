using System.Globalization;
using System.Text.RegularExpressions;
using BitMoe.Engine;
using BitMoe.Engine.Evaluation;
using BitMoe.Engine.Layers;

namespace BitMoe.Tests.Cli;

/// <summary>The commands end to end, through the real executable.</summary>
public class CommandTests
{
    private const string Fixture = "mhmoe_h2_top2_bitnet";
    private static readonly string Model = Fixtures.Dir(Fixture);

    [Fact]
    public void SameSeedSameTextAndSpeedOnStderr()
    {
        string[] args = ["generate", "-m", Model, "-p", "The history of", "-n", "24", "--temp", "0.9", "--top-k", "0", "--top-p", "1", "--min-p", "0"];
        var a = CliProcess.Run([.. args, "--seed", "11"]);
        var b = CliProcess.Run([.. args, "--seed", "11"]);
        var c = CliProcess.Run([.. args, "--seed", "12"]);
        Assert.Equal(0, a.ExitCode);
        Assert.StartsWith("The history of", a.Stdout);
        Assert.Equal(a.Stdout, b.Stdout);
        Assert.NotEqual(a.Stdout, c.Stdout);
        Assert.Matches(@"prompt: \d+ tokens in [\d.]+ s \([\d.]+ tokens/s\); generation: 24 tokens in [\d.]+ s \([\d.]+ tokens/s\)", a.Stderr);
    }

    [Fact]
    public void GreedyIsDeterministicWithoutASeed()
    {
        var a = CliProcess.Run("generate", "-m", Model, "-p", "Once", "-n", "16", "--temp", "0");
        var b = CliProcess.Run("generate", "-m", Model, "-p", "Once", "-n", "16", "--temp", "0");
        Assert.Equal(0, a.ExitCode);
        Assert.Equal(a.Stdout, b.Stdout);
    }

    [Fact]
    public void PerplexityPrintsChunksAndTheFinalEstimate()
    {
        string text = File.ReadAllText(Path.Combine(Fixtures.Dir("tokenizer"), "sample.txt"));
        string file = Path.Combine(Path.GetTempPath(), $"bitmoe-ppl-{Guid.NewGuid():N}.txt");
        File.WriteAllText(file, text);
        try
        {
            var r = CliProcess.Run("perplexity", "-m", Model, "-f", file, "-c", "64", "-t", "1");
            Assert.Equal(0, r.ExitCode);
            Assert.Matches(@"^\[1\][\d.]+,\[2\][\d.]+,", r.Stdout);
            var m = Regex.Match(r.Stdout, @"Final estimate: PPL = (\d+\.\d{6}) \+/- (\d+\.\d{6})");
            Assert.True(m.Success, r.Stdout);
            var scored = Regex.Match(r.Stdout, @"tokens scored: (\d+)");
            Assert.True(scored.Success, r.Stdout);

            using var model = ModelLoader.Load(Model, ExecutionMode.Fp, 64);
            var tokens = model.Tokenizer.Encode(text);
            var expected = Perplexity.Evaluate(model.Transformer, tokens, 64);
            Assert.Equal(expected.Count, long.Parse(scored.Groups[1].Value));
            Assert.Equal(expected.Perplexity, double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), 5);
            Assert.Equal(tokens.Length - Perplexity.Chunks(tokens.Length, 64).Count(), expected.Count);
        }
        finally { File.Delete(file); }
    }

    [Fact]
    public void PerplexityComparesModes()
    {
        string file = Path.Combine(Fixtures.Dir("tokenizer"), "sample.txt");
        var r = CliProcess.Run("perplexity", "-m", Model, "-f", file, "-c", "64", "--mode", "fp,fakequant,packed");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("run 3: ", r.Stdout);
        Assert.Matches(@"KL divergence: mean [\d.E+-]+, median [\d.E+-]+, 99th percentile [\d.E+-]+", r.Stdout);
        Assert.Matches(@"top-1 agreement: [\d.]+%", r.Stdout);
        // packed and fake-quant are the same function: run 3 against run 1 shows the same delta as run 2
        var deltas = Regex.Matches(r.Stdout, @"delta PPL = ([+-][\d.]+)").Select(x => x.Groups[1].Value).ToList();
        Assert.Equal(2, deltas.Count);
        Assert.Equal(deltas[0], deltas[1]);
    }
}
