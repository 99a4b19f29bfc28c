using BitMoe.Engine;
using BitMoe.Engine.Evaluation;
using BitMoe.Engine.Layers;

namespace BitMoe.Tests.Engine;

/// <summary>The engine against the PyTorch reference (tools/reference) on every fixture checkpoint.</summary>
public class ParityTests(Xunit.Abstractions.ITestOutputHelper output)
{
    public static TheoryData<string> All => Fixtures.All();
    public static TheoryData<string> BitNet => Fixtures.BitNet();

    /// <summary>max |engine - reference| over every position, relative to the largest |reference logit|.</summary>
    public static double RelativeLogitError(LoadedModel model, int[] tokens, float[] reference, int vocab)
    {
        model.Transformer.Cache.Clear();
        double maxDiff = 0, maxAbs = 0;
        for (int t = 0; t < tokens.Length; t++)
        {
            var logits = model.Transformer.Forward(tokens[t]);
            for (int v = 0; v < vocab; v++)
            {
                float r = reference[t * vocab + v];
                maxAbs = Math.Max(maxAbs, Math.Abs(r));
                maxDiff = Math.Max(maxDiff, Math.Abs(logits[v] - r));
            }
        }
        return maxDiff / maxAbs;
    }

    public static double EnginePerplexity(LoadedModel model, int[] tokens, int ctx, out long scored)
    {
        var acc = Perplexity.Evaluate(model.Transformer, tokens, ctx);
        scored = acc.Count;
        return acc.Perplexity;
    }

    [Theory, MemberData(nameof(All))]
    public void FpLogitsAndPerplexityMatchReference(string fixture)
    {
        var reference = Reference.Load(fixture);
        using var model = ModelLoader.Load(Fixtures.Dir(fixture), ExecutionMode.Fp, reference.Tokens.Length);
        double err = RelativeLogitError(model, reference.Tokens, reference.LogitsFp, reference.Vocab);
        output.WriteLine($"{fixture} fp: logits {err:E3} relative");
        Assert.True(err <= 1e-4, $"{fixture}: fp logits differ by {err:E3} relative (bound 1e-4)");

        double ppl = EnginePerplexity(model, reference.Tokens, reference.PplCtx, out long scored);
        Assert.Equal(reference.ScoredTokens, scored);
        double rel = Math.Abs(ppl - reference.PplFp) / reference.PplFp;
        output.WriteLine($"{fixture} fp: perplexity {ppl:F6} vs {reference.PplFp:F6} ({rel:E3} relative)");
        Assert.True(rel <= 1e-5, $"{fixture}: fp perplexity {ppl} vs reference {reference.PplFp} ({rel:E3} relative, bound 1e-5)");
    }

    [Theory, MemberData(nameof(BitNet))]
    public void FakeQuantLogitsAndPerplexityMatchReference(string fixture)
    {
        var reference = Reference.Load(fixture);
        using var model = ModelLoader.Load(Fixtures.Dir(fixture), ExecutionMode.FakeQuant, reference.Tokens.Length);
        double err = RelativeLogitError(model, reference.Tokens, reference.LogitsFakeQuant!, reference.Vocab);
        output.WriteLine($"{fixture} fakequant: logits {err:E3} relative");
        Assert.True(err <= 1e-2, $"{fixture}: fakequant logits differ by {err:E3} relative (bound 1e-2)");

        double ppl = EnginePerplexity(model, reference.Tokens, reference.PplCtx, out _);
        double rel = Math.Abs(ppl - reference.PplFakeQuant!.Value) / reference.PplFakeQuant.Value;
        output.WriteLine($"{fixture} fakequant: perplexity {ppl:F6} vs {reference.PplFakeQuant:F6} ({rel:E3} relative)");
        Assert.True(rel <= 1e-3, $"{fixture}: fakequant perplexity {ppl} vs reference {reference.PplFakeQuant} ({rel:E3} relative, bound 1e-3)");
    }
}
