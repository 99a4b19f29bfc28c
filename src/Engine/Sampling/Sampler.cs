namespace BitMoe.Engine.Sampling;

/// <summary>
/// The llama.cpp sampler chain in its order: repeat penalty, top-k, top-p, min-p, temperature,
/// then a draw from the remaining distribution. top-p and min-p look at the probabilities before
/// temperature, as llama.cpp's do. Candidate buffers are allocated once.
/// </summary>
public sealed class Sampler
{
    private readonly SamplingParams _p;
    private readonly Rng _rng;
    private readonly int[] _ids;
    private readonly float[] _logits;
    private readonly double[] _probs;

    public Sampler(SamplingParams p, int vocabSize)
    {
        _p = p;
        _rng = new Rng(p.Seed);
        _ids = new int[vocabSize];
        _logits = new float[vocabSize];
        _probs = new double[vocabSize];
    }

    public SamplingParams Params => _p;

    /// <param name="logits">The model's logits for the next token.</param>
    /// <param name="history">Tokens so far (prompt and generated), for the repeat penalty.</param>
    public int Sample(ReadOnlySpan<float> logits, IReadOnlyList<int> history)
    {
        int n = logits.Length;
        logits.CopyTo(_logits);
        ApplyRepeatPenalty(_logits.AsSpan(0, n), history);

        if (_p.Temperature <= 0) return ArgMax(_logits.AsSpan(0, n));

        // Candidates sorted by logit, highest first (ties by lower id, for a stable order).
        for (int i = 0; i < n; i++) _ids[i] = i;
        var ids = _ids.AsSpan(0, n);
        var keys = _logits;
        ids.Sort((a, b) => keys[b] != keys[a] ? keys[b].CompareTo(keys[a]) : a.CompareTo(b));

        int count = n;
        if (_p.TopK > 0) count = Math.Min(count, _p.TopK);

        // Probabilities at temperature 1 over the current candidates.
        Softmax(ids[..count], 1.0);
        if (_p.TopP < 1.0f)
        {
            double cum = 0;
            int keep = count;
            for (int i = 0; i < count; i++)
            {
                cum += _probs[i];
                if (cum >= _p.TopP) { keep = i + 1; break; }
            }
            count = keep;
        }
        if (_p.MinP > 0f)
        {
            double threshold = _probs[0] * _p.MinP;
            int keep = 1;
            while (keep < count && _probs[keep] >= threshold) keep++;
            count = keep;
        }

        Softmax(ids[..count], _p.Temperature);
        double u = _rng.NextDouble(), acc = 0;
        for (int i = 0; i < count; i++)
        {
            acc += _probs[i];
            if (u < acc) return ids[i];
        }
        return ids[count - 1];
    }

    private void ApplyRepeatPenalty(Span<float> logits, IReadOnlyList<int> history)
    {
        if (_p.RepeatPenalty == 1.0f || _p.RepeatLastN == 0) return;
        int start = _p.RepeatLastN < 0 ? 0 : Math.Max(0, history.Count - _p.RepeatLastN);
        var seen = new HashSet<int>();
        for (int i = start; i < history.Count; i++)
        {
            int t = history[i];
            if ((uint)t >= (uint)logits.Length || !seen.Add(t)) continue;
            // CTRL-style penalty: shrink positive logits, push negative ones further down.
            logits[t] = logits[t] > 0 ? logits[t] / _p.RepeatPenalty : logits[t] * _p.RepeatPenalty;
        }
    }

    /// <summary>_probs[i] = softmax(logit[ids[i]] / temperature) over the given candidates.</summary>
    private void Softmax(ReadOnlySpan<int> ids, double temperature)
    {
        double max = _logits[ids[0]] / temperature, sum = 0;
        for (int i = 0; i < ids.Length; i++) sum += _probs[i] = Math.Exp(_logits[ids[i]] / temperature - max);
        for (int i = 0; i < ids.Length; i++) _probs[i] /= sum;
    }

    public static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}
