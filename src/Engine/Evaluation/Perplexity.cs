using BitMoe.Quant;

namespace BitMoe.Engine.Evaluation;

/// <summary>Running totals of negative log-likelihood over scored tokens.</summary>
public sealed class NllAccumulator
{
    private double _sum, _sumSquares;
    public long Count { get; private set; }

    public void Add(double nll)
    {
        _sum += nll; _sumSquares += nll * nll; Count++;
    }

    public double MeanNll => _sum / Math.Max(Count, 1);
    public double Perplexity => Math.Exp(MeanNll);

    /// <summary>llama.cpp's estimate: PPL * standard error of the mean NLL.</summary>
    public double PerplexityError
    {
        get
        {
            if (Count < 2) return 0;
            double mean = MeanNll;
            double variance = Math.Max(_sumSquares / Count - mean * mean, 0);
            return Perplexity * Math.Sqrt(variance / (Count - 1));
        }
    }
}

public sealed record ChunkReport(int Chunk, int Chunks, double RunningPerplexity, long TokensScored);

/// <summary>
/// llama-perplexity's procedure: the tokens are cut into non-overlapping chunks of the context
/// length; each chunk is evaluated from an empty cache and every token but its first is scored
/// (the last, partial chunk too).
/// </summary>
public static class Perplexity
{
    public static double LogSoftmaxAt(ReadOnlySpan<float> logits, int target)
    {
        double max = double.NegativeInfinity;
        foreach (float l in logits) if (l > max) max = l;
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        return logits[target] - max - Math.Log(sum);
    }

    public static IEnumerable<(int Start, int Length)> Chunks(int tokenCount, int ctx)
    {
        for (int start = 0; start < tokenCount; start += ctx)
        {
            int len = Math.Min(ctx, tokenCount - start);
            if (len >= 2) yield return (start, len);
        }
    }

    public static NllAccumulator Evaluate(Transformer model, IReadOnlyList<int> tokens, int ctx, Action<ChunkReport>? progress = null)
    {
        if (ctx < 2) throw new BitMoeException($"context {ctx} is too small to score tokens (needs at least 2)");
        if (ctx > model.ContextLength) throw new BitMoeException($"chunk length {ctx} exceeds the model's context {model.ContextLength}");
        if (tokens.Count < 2) throw new BitMoeException($"the text has {tokens.Count} token(s); at least 2 are needed to score one");
        var acc = new NllAccumulator();
        var chunks = Chunks(tokens.Count, ctx).ToList();
        for (int c = 0; c < chunks.Count; c++)
        {
            var (start, len) = chunks[c];
            model.Cache.Clear();
            for (int i = 0; i < len - 1; i++)
            {
                var logits = model.Forward(tokens[start + i]);
                acc.Add(-LogSoftmaxAt(logits, tokens[start + i + 1]));
            }
            progress?.Invoke(new ChunkReport(c + 1, chunks.Count, acc.Perplexity, acc.Count));
        }
        return acc;
    }
}
