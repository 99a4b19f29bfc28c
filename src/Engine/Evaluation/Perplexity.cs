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

/// <summary>
/// How one run's next-token distributions differ from a base run's, token by token: KL(base || run)
/// and whether both put the same token first (llama-perplexity --kl-divergence).
/// </summary>
public sealed class DistributionComparison
{
    private readonly List<double> _kl = [];
    private long _sameTop;

    public long Count => _kl.Count;
    public double MeanKl => _kl.Count == 0 ? 0 : _kl.Average();
    public double MedianKl => Percentile(0.5);
    public double P99Kl => Percentile(0.99);
    public double TopTokenAgreement => _kl.Count == 0 ? 0 : (double)_sameTop / _kl.Count;

    /// <param name="baseLogProbs">log-softmax of the base run's logits.</param>
    /// <param name="logProbs">log-softmax of this run's logits.</param>
    public void Add(ReadOnlySpan<double> baseLogProbs, ReadOnlySpan<double> logProbs)
    {
        double kl = 0;
        int argBase = 0, argRun = 0;
        for (int v = 0; v < baseLogProbs.Length; v++)
        {
            double lp = baseLogProbs[v];
            kl += Math.Exp(lp) * (lp - logProbs[v]);
            if (lp > baseLogProbs[argBase]) argBase = v;
            if (logProbs[v] > logProbs[argRun]) argRun = v;
        }
        _kl.Add(Math.Max(kl, 0));
        if (argBase == argRun) _sameTop++;
    }

    private double Percentile(double q)
    {
        if (_kl.Count == 0) return 0;
        var sorted = _kl.Order().ToArray();
        double pos = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(pos), hi = (int)Math.Ceiling(pos);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    }
}

public sealed record ChunkReport(int Chunk, int Chunks, IReadOnlyList<NllAccumulator> Runs);

/// <summary>The result of evaluating several runs on the same tokens.</summary>
public sealed record PerplexityResult(IReadOnlyList<NllAccumulator> Runs, IReadOnlyList<DistributionComparison?> VersusFirst);

/// <summary>
/// llama-perplexity's procedure: the tokens are cut into non-overlapping chunks of the context
/// length; each chunk is evaluated from an empty cache and every token but its first is scored
/// (the last, partial chunk too). Several models (or modes) run in lockstep on the same tokens,
/// so their distributions can be compared position by position without storing more than one batch of them.
/// </summary>
public static class Perplexity
{
    /// <summary>log-softmax in double precision.</summary>
    public static void LogSoftmax(ReadOnlySpan<float> logits, Span<double> result)
    {
        double max = double.NegativeInfinity;
        foreach (float l in logits) if (l > max) max = l;
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        double logSum = max + Math.Log(sum);
        for (int i = 0; i < logits.Length; i++) result[i] = logits[i] - logSum;
    }

    public static IEnumerable<(int Start, int Length)> Chunks(int tokenCount, int ctx)
    {
        for (int start = 0; start < tokenCount; start += ctx)
        {
            int len = Math.Min(ctx, tokenCount - start);
            if (len >= 2) yield return (start, len);
        }
    }

    public static NllAccumulator Evaluate(Transformer model, IReadOnlyList<int> tokens, int ctx, Action<ChunkReport>? progress = null) =>
        Evaluate([model], tokens, ctx, progress).Runs[0];

    public static PerplexityResult Evaluate(IReadOnlyList<Transformer> models, IReadOnlyList<int> tokens, int ctx, Action<ChunkReport>? progress = null)
    {
        if (models.Count == 0) throw new ArgumentException("no model to evaluate");
        if (ctx < 2) throw new BitMoeException($"context {ctx} is too small to score tokens (needs at least 2)");
        if (tokens.Count < 2) throw new BitMoeException($"the text has {tokens.Count} token(s); at least 2 are needed to score one");
        int vocab = models[0].Config.VocabSize;
        foreach (var m in models)
        {
            if (ctx > m.ContextLength) throw new BitMoeException($"chunk length {ctx} exceeds the model's context {m.ContextLength}");
            if (m.Config.VocabSize != vocab) throw new BitMoeException($"the models have different vocabularies ({vocab} and {m.Config.VocabSize} tokens)");
        }

        var runs = models.Select(_ => new NllAccumulator()).ToArray();
        var versus = models.Select((_, i) => i == 0 ? null : new DistributionComparison()).ToArray();
        var baseLogProbs = new double[vocab];
        var logProbs = new double[vocab];
        var ids = tokens as int[] ?? tokens.ToArray();
        // Each model evaluates a piece of the chunk as one batch with the logits of every position, then the runs are
        // compared position by position. Pieces of at most MaxBatch tokens bound the logits held: [piece, vocab] per model.
        int piece = Math.Min(models.Min(m => m.MaxBatch), ctx - 1);
        var logits = models.Select(_ => new float[(long)piece * vocab]).ToArray();
        var chunks = Chunks(tokens.Count, ctx).ToList();
        for (int c = 0; c < chunks.Count; c++)
        {
            var (start, len) = chunks[c];
            foreach (var m in models) m.Cache.Clear();
            // the chunk's last token is only ever a target: positions [start, start + len - 1) are evaluated
            for (int p = 0; p < len - 1; p += piece)
            {
                int n = Math.Min(piece, len - 1 - p);
                for (int r = 0; r < models.Count; r++)
                    models[r].ForwardBatch(ids.AsSpan(start + p, n), logits[r].AsSpan(0, n * vocab));
                for (int i = 0; i < n; i++)
                {
                    int next = ids[start + p + i + 1];
                    for (int r = 0; r < models.Count; r++)
                    {
                        var lp = r == 0 ? baseLogProbs : logProbs;
                        LogSoftmax(logits[r].AsSpan(i * vocab, vocab), lp);
                        runs[r].Add(-lp[next]);
                        versus[r]?.Add(baseLogProbs, logProbs);
                    }
                }
            }
            progress?.Invoke(new ChunkReport(c + 1, chunks.Count, runs));
        }
        return new PerplexityResult(runs, versus);
    }
}
