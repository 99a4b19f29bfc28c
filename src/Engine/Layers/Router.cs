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

    public Router(LayerContext ctx, string name)
    {
        var c = ctx.Config;
        _gate = BitLinear.Load(ctx, name, c.NumExperts, c.SubTokenDim);
        _topK = c.NumExpertsPerTok;
        _normalize = c.NormTopkProb;
        _probs = new float[c.NumExperts];
    }

    public int TopK => _topK;

    /// <summary>Bytes of the gate matrix.</summary>
    public long WeightBytes => _gate.WeightBytes;

    /// <summary>Fills <paramref name="experts"/> and <paramref name="weights"/> (length k), largest weight first.</summary>
    public void Route(ReadOnlySpan<float> subToken, Span<int> experts, Span<float> weights)
    {
        _gate.Forward(subToken, _probs);
        Softmax.InPlace(_probs);
        for (int k = 0; k < _topK; k++)
        {
            int best = -1;
            for (int e = 0; e < _probs.Length; e++)
            {
                if (experts[..k].Contains(e)) continue;
                // ties go to the lower index, as torch.topk does on CPU
                if (best < 0 || _probs[e] > _probs[best]) best = e;
            }
            experts[k] = best;
            weights[k] = _probs[best];
        }
        if (_normalize)
        {
            float sum = 0;
            for (int k = 0; k < _topK; k++) sum += weights[k];
            for (int k = 0; k < _topK; k++) weights[k] /= sum;
        }
    }
}
