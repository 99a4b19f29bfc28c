namespace BitMoe.Engine.Layers;

/// <summary>
/// Picks the experts of one sub-token: softmax over all expert logits (float32), keep the top k,
/// and renormalise the kept weights to sum 1 when norm_topk_prob.
/// </summary>
public sealed class Router
{
    private readonly BitLinear _gate;
    private readonly int _topK;
    private readonly bool _normalize;
    private readonly float[] _probs;
    private readonly BatchScratch _scratch;

    public Router(LayerContext ctx, string name)
    {
        var c = ctx.Config;
        _gate = BitLinear.Load(ctx, name, c.NumExperts, c.SubTokenDim);
        _topK = c.NumExpertsPerTok;
        _normalize = c.NormTopkProb;
        _probs = new float[c.NumExperts];
        _scratch = ctx.Scratch;
        _scratch.RouterProbs.Reserve((long)_scratch.MaxSubTokens * c.NumExperts);
    }

    public int TopK => _topK;

    /// <summary>Bytes of the gate matrix.</summary>
    public long WeightBytes => _gate.WeightBytes;

    /// <summary>Fills <paramref name="experts"/> and <paramref name="weights"/> (length k), largest weight first.</summary>
    public void Route(ReadOnlySpan<float> subToken, Span<int> experts, Span<float> weights)
    {
        _gate.Forward(subToken, _probs);
        Pick(_probs, experts, weights);
    }

    /// <summary>
    /// Routes <paramref name="count"/> sub-tokens (rows of <paramref name="subTokens"/>) at once: sub-token s gets
    /// experts[s*k .. s*k+k) and weights[s*k .. s*k+k), as <see cref="Route"/> would give it.
    /// </summary>
    public void RouteBatch(ReadOnlySpan<float> subTokens, int count, Span<int> experts, Span<float> weights)
    {
        int e = _probs.Length;
        var probs = _scratch.RouterProbs.Take((long)count * e);
        _gate.ForwardBatch(subTokens, probs, count);
        for (int s = 0; s < count; s++)
            Pick(probs.Slice(s * e, e), experts.Slice(s * _topK, _topK), weights.Slice(s * _topK, _topK));
    }

    /// <summary>Softmax of the expert logits <paramref name="probs"/> (in place), then the top k.</summary>
    private void Pick(Span<float> probs, Span<int> experts, Span<float> weights)
    {
        Softmax.InPlace(probs);
        for (int k = 0; k < _topK; k++)
        {
            int best = -1;
            for (int e = 0; e < probs.Length; e++)
            {
                if (experts[..k].Contains(e)) continue;
                // ties go to the lower index, as torch.topk does on CPU
                if (best < 0 || probs[e] > probs[best]) best = e;
            }
            experts[k] = best;
            weights[k] = probs[best];
        }
        if (_normalize)
        {
            float sum = 0;
            for (int k = 0; k < _topK; k++) sum += weights[k];
            for (int k = 0; k < _topK; k++) weights[k] /= sum;
        }
    }
}
