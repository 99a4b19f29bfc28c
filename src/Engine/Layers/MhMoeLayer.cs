using System.Numerics.Tensors;

namespace BitMoe.Engine.Layers;

/// <summary>
/// Multi-Head Mixture-of-Experts (the seed paper): head_proj, split the token into h sub-tokens,
/// route each sub-token to its own top-k experts, concatenate, merge_proj, plus an optional shared
/// expert on the un-split token. h = 1 without head/merge is a plain (Mixtral-style) sparse MoE.
/// </summary>
public sealed class MhMoeLayer
{
    private readonly int _heads, _subDim;
    private readonly BitLinear? _headProj, _mergeProj;
    private readonly Router _router;
    private readonly DenseFfn[] _experts;
    private readonly DenseFfn? _shared;
    private readonly float[] _split, _concat, _expertOut, _sharedOut, _weights;
    private readonly int[] _chosen;

    /// <summary>How many times each expert ran since the last reset (for statistics and benchmarks).</summary>
    public long[] ExpertHits { get; }

    public MhMoeLayer(LayerContext ctx, int layer)
    {
        var c = ctx.Config;
        string p = $"model.layers.{layer}.mlp";
        int d = c.HiddenSize;
        _heads = c.MoeNumHeads; _subDim = c.SubTokenDim;
        if (c.MoeHeadProj) _headProj = BitLinear.Load(ctx, $"{p}.head_proj", d, d, c.MoeHeadProjBias);
        if (c.MoeMergeProj) _mergeProj = BitLinear.Load(ctx, $"{p}.merge_proj", d, d, c.MoeMergeProjBias);
        _router = new Router(ctx, $"{p}.router");
        _experts = new DenseFfn[c.NumExperts];
        for (int e = 0; e < c.NumExperts; e++)
            _experts[e] = new DenseFfn(ctx, $"{p}.experts.{e}", _subDim, c.MoeIntermediateSize);
        if (c.SharedExpertIntermediateSize > 0)
            _shared = new DenseFfn(ctx, $"{p}.shared_expert", d, c.SharedExpertIntermediateSize);
        _split = new float[d]; _concat = new float[d]; _expertOut = new float[_subDim]; _sharedOut = new float[d];
        _weights = new float[c.NumExpertsPerTok]; _chosen = new int[c.NumExpertsPerTok];
        ExpertHits = new long[c.NumExperts];
    }

    public int NumExperts => _experts.Length;

    /// <summary>
    /// Bytes of weights one token reads whatever the routing: head and merge projections, the router (read once,
    /// though each of the h sub-tokens runs it), the shared expert.
    /// </summary>
    public long FixedWeightBytes =>
        (_headProj?.WeightBytes ?? 0) + (_mergeProj?.WeightBytes ?? 0) + _router.WeightBytes + (_shared?.WeightBytes ?? 0);

    /// <summary>Bytes of weights routed expert <paramref name="expert"/> reads per call.</summary>
    public long ExpertWeightBytes(int expert) => _experts[expert].WeightBytes;

    public void Forward(ReadOnlySpan<float> x, Span<float> y)
    {
        // 1. head layer
        if (_headProj != null) _headProj.Forward(x, _split);
        else x[.._split.Length].CopyTo(_split);

        // 2-4. every sub-token s_j = x'[j*d/h, (j+1)*d/h) is routed on its own; outputs land in the same slot
        for (int j = 0; j < _heads; j++)
        {
            var sub = _split.AsSpan(j * _subDim, _subDim);
            var outSlot = _concat.AsSpan(j * _subDim, _subDim);
            outSlot.Clear();
            _router.Route(sub, _chosen, _weights);
            for (int k = 0; k < _chosen.Length; k++)
            {
                ExpertHits[_chosen[k]]++;
                _experts[_chosen[k]].Forward(sub, _expertOut);
                TensorPrimitives.MultiplyAdd(_expertOut, _weights[k], outSlot, outSlot);
            }
        }

        // 5. merge layer
        if (_mergeProj != null) _mergeProj.Forward(_concat, y);
        else _concat.CopyTo(y);

        // 6. shared expert on the un-split token
        if (_shared != null)
        {
            _shared.Forward(x, _sharedOut);
            TensorPrimitives.Add(y[.._sharedOut.Length], _sharedOut, y);
        }
    }
}
