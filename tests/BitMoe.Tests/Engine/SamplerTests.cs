using BitMoe.Engine.Sampling;

namespace BitMoe.Tests.Engine;

public class SamplerTests
{
    private static float[] Logits(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 8 - 4)).ToArray();
    }

    [Fact]
    public void ZeroTemperatureIsArgMax()
    {
        var logits = Logits(500, 1);
        var s = new Sampler(new SamplingParams { Temperature = 0 }, logits.Length);
        Assert.Equal(Array.IndexOf(logits, logits.Max()), s.Sample(logits, []));
    }

    [Fact]
    public void SameSeedSameDraws()
    {
        var logits = Logits(500, 2);
        var p = new SamplingParams { Temperature = 1.0f, TopK = 0, TopP = 1, MinP = 0, Seed = 42 };
        var a = new Sampler(p, 500); var b = new Sampler(p, 500);
        var da = Enumerable.Range(0, 50).Select(_ => a.Sample(logits, [])).ToArray();
        var db = Enumerable.Range(0, 50).Select(_ => b.Sample(logits, [])).ToArray();
        Assert.Equal(da, db);
        Assert.True(da.Distinct().Count() > 5, "a temperature-1 draw over 500 tokens should vary");
    }

    [Fact]
    public void TopKKeepsOnlyTheKBest()
    {
        var logits = Logits(300, 3);
        var best = logits.Select((l, i) => (l, i)).OrderByDescending(x => x.l).Take(3).Select(x => x.i).ToHashSet();
        var s = new Sampler(new SamplingParams { Temperature = 5f, TopK = 3, TopP = 1, MinP = 0, Seed = 7 }, 300);
        for (int i = 0; i < 200; i++) Assert.Contains(s.Sample(logits, []), best);
    }

    [Fact]
    public void MinPDropsUnlikelyTokens()
    {
        var logits = new float[10];
        logits[4] = 10; logits[7] = 10 + MathF.Log(0.5f); // p7 / p4 = 0.5; everything else ~ e^-10 of p4
        var s = new Sampler(new SamplingParams { Temperature = 1, TopK = 0, TopP = 1, MinP = 0.1f, Seed = 3 }, 10);
        var seen = Enumerable.Range(0, 300).Select(_ => s.Sample(logits, [])).ToHashSet();
        Assert.Equal(new HashSet<int> { 4, 7 }, seen);
    }

    [Fact]
    public void TopPKeepsTheSmallestNucleus()
    {
        var logits = new float[] { 0, MathF.Log(6), MathF.Log(3), MathF.Log(1) }; // p = 0.0909.., 0.545, 0.27, 0.09
        var s = new Sampler(new SamplingParams { Temperature = 1, TopK = 0, TopP = 0.8f, MinP = 0, Seed = 9 }, 4);
        var seen = Enumerable.Range(0, 300).Select(_ => s.Sample(logits, [])).ToHashSet();
        Assert.Equal(new HashSet<int> { 1, 2 }, seen);
    }

    [Fact]
    public void RepeatPenaltyDemotesRecentTokens()
    {
        var logits = new float[] { 2.0f, 1.9f, -1f };
        var s = new Sampler(new SamplingParams { Temperature = 0, RepeatPenalty = 1.5f }, 3);
        Assert.Equal(1, s.Sample(logits, [0]));
        Assert.Equal(0, s.Sample(logits, []));
    }
}
