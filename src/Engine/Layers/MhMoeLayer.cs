using System.Numerics.Tensors;

namespace BitMoe.Engine.Layers;

/// <summary>
/// Multi-Head Mixture-of-Experts (the seed paper): head_proj, split the token into h sub-tokens,
/// route each sub-token to its own top-k experts, concatenate, merge_proj, plus an optional shared
/// expert on the un-split token. h = 1 without head/merge is a plain (Mixtral-style) sparse MoE.
/// </summary>
public sealed class MhMoeLayer
{
    private readonly Kernels.WorkerPool _pool;
    private readonly Kernels.RowJob _runExperts;
    private readonly float[] _pairOut;
    private readonly int[] _pairChosen, _distinct;
    private int _distinctCount;
    private readonly int _heads, _subDim;
    private readonly BitLinear? _headProj, _mergeProj;
    private readonly Router _router;
    private readonly DenseFfn[] _experts;
    private readonly DenseFfn? _shared;
    private readonly float[] _split, _concat, _sharedOut, _weights;
    private readonly int[] _chosen;
    private readonly int[] _expertStart, _expertNext;
    private readonly float[] _pairWeights;
    private readonly BatchScratch _scratch;

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
            _experts[e] = new DenseFfn(ctx, $"{p}.experts.{e}", _subDim, c.MoeIntermediateSize, ctx.Scratch.MaxSubTokens);
        if (c.SharedExpertIntermediateSize > 0)
            _shared = new DenseFfn(ctx, $"{p}.shared_expert", d, c.SharedExpertIntermediateSize, ctx.Scratch.MaxTokens);
        _split = new float[d]; _concat = new float[d]; _sharedOut = new float[d];
        _weights = new float[c.NumExpertsPerTok]; _chosen = new int[c.NumExpertsPerTok];
        ExpertHits = new long[c.NumExperts];
        _pool = ctx.Pool;
        _runExperts = RunExperts;
        _pairOut = new float[_heads * c.NumExpertsPerTok * _subDim];
        _pairChosen = new int[_heads * c.NumExpertsPerTok];
        _distinct = new int[_heads * c.NumExpertsPerTok];
        _pairWeights = new float[_heads * c.NumExpertsPerTok];

        _expertStart = new int[c.NumExperts + 1]; _expertNext = new int[c.NumExperts];
        _scratch = ctx.Scratch;
        long tokens = _scratch.MaxTokens, pairs = (long)_scratch.MaxSubTokens * c.NumExpertsPerTok;
        _scratch.Split.Reserve(tokens * d);
        _scratch.Concat.Reserve(tokens * d);
        _scratch.SharedOut.Reserve(tokens * d);
        _scratch.ChosenExperts.Reserve(pairs);
        _scratch.RouteWeights.Reserve(pairs);
        _scratch.ExpertRows.Reserve(pairs);
        _scratch.ExpertIn.Reserve(pairs * _subDim);
        _scratch.ExpertOut.Reserve(pairs * _subDim);
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

        // 2-4. every sub-token s_j = x'[j*d/h, (j+1)*d/h) is routed on its own; outputs land in the same slot.
        //    Pair j*k + r is sub-token j's r-th choice. With several threads and several distinct experts, the experts
        //    run side by side, each whole on one thread (one expert's matrices are small: splitting each of them
        //    across threads costs a wait per matrix); the outputs are then added in pair order either way.
        int k = _chosen.Length, pairs = _heads * k;
        for (int j = 0; j < _heads; j++)
        {
            _router.Route(_split.AsSpan(j * _subDim, _subDim), _chosen, _weights);
            for (int r = 0; r < k; r++)
            {
                _pairChosen[j * k + r] = _chosen[r];
                _pairWeights[j * k + r] = _weights[r];
                ExpertHits[_chosen[r]]++;
            }
        }
        _distinctCount = 0;
        for (int i = 0; i < pairs; i++)
            if (Array.IndexOf(_distinct, _pairChosen[i], 0, _distinctCount) < 0) _distinct[_distinctCount++] = _pairChosen[i];
        if (_pool.Threads > 1 && _distinctCount > 1) _pool.For(_distinctCount, _runExperts);
        else RunExperts(0, _distinctCount);
        for (int j = 0; j < _heads; j++)
        {
            var outSlot = _concat.AsSpan(j * _subDim, _subDim);
            outSlot.Clear();
            for (int r = 0; r < k; r++)
                TensorPrimitives.MultiplyAdd(_pairOut.AsSpan((j * k + r) * _subDim, _subDim), _pairWeights[j * k + r], outSlot, outSlot);
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

    /// <summary>Distinct experts [start, end) of the current token, each on every pair (sub-token) that chose it.</summary>
    private void RunExperts(int start, int end)
    {
        int pairs = _heads * _chosen.Length;
        for (int e = start; e < end; e++)
        {
            int expert = _distinct[e];
            for (int i = 0; i < pairs; i++)
                if (_pairChosen[i] == expert)
                    _experts[expert].Forward(_split.AsSpan(i / _chosen.Length * _subDim, _subDim), _pairOut.AsSpan(i * _subDim, _subDim));
        }
    }

    /// <summary>
    /// The same for <paramref name="count"/> tokens (x and y are [count, hidden]), with the sub-tokens grouped by
    /// expert: every expert runs once per batch, on all the sub-tokens that chose it, so its weights are read once.
    /// Each sub-token's outputs are summed in the order <see cref="Forward"/> sums them: the results are the same.
    /// </summary>
    public void ForwardBatch(ReadOnlySpan<float> x, Span<float> y, int count)
    {
        int d = _heads * _subDim, k = _chosen.Length;
        int subTokens = count * _heads, pairs = subTokens * k;
        var split = _scratch.Split.Take(count * d);
        var concat = _scratch.Concat.Take(count * d);

        // 1. head layer
        if (_headProj != null) _headProj.ForwardBatch(x, split, count);
        else x[..(count * d)].CopyTo(split);

        // 2-3. sub-token j of token t is row t*h + j of split seen as [count*h, d/h]; every one is routed on its own.
        //    Pair i = s*k + r is sub-token s's r-th choice.
        var chosen = _scratch.ChosenExperts.Take(pairs);
        var weights = _scratch.RouteWeights.Take(pairs);
        _router.RouteBatch(split, subTokens, chosen, weights);

        //    Group the pairs by expert: expert e's pairs take rows [start[e], start[e+1]) of the expert input and output.
        Array.Clear(_expertStart);
        foreach (int e in chosen) _expertStart[e + 1]++;
        for (int e = 0; e < _experts.Length; e++) _expertStart[e + 1] += _expertStart[e];
        _expertStart.AsSpan(0, _experts.Length).CopyTo(_expertNext);
        var rowOf = _scratch.ExpertRows.Take(pairs);
        var input = _scratch.ExpertIn.Take((long)pairs * _subDim);
        var output = _scratch.ExpertOut.Take((long)pairs * _subDim);
        for (int i = 0; i < pairs; i++)
        {
            int row = rowOf[i] = _expertNext[chosen[i]]++;
            split.Slice(i / k * _subDim, _subDim).CopyTo(input.Slice(row * _subDim, _subDim));
        }

        //    Each expert once, on its gathered rows.
        for (int e = 0; e < _experts.Length; e++)
        {
            int first = _expertStart[e], n = _expertStart[e + 1] - first;
            if (n == 0) continue;
            ExpertHits[e] += n;
            _experts[e].ForwardBatch(input.Slice(first * _subDim, n * _subDim), output.Slice(first * _subDim, n * _subDim), n);
        }

        // 4. y_s = sum_r p_r * Expert_r(s), in rank order, into sub-token s's slot of the concatenation
        for (int s = 0; s < subTokens; s++)
        {
            var slot = concat.Slice(s * _subDim, _subDim);
            slot.Clear();
            for (int r = 0; r < k; r++)
            {
                int i = s * k + r;
                TensorPrimitives.MultiplyAdd(output.Slice(rowOf[i] * _subDim, _subDim), weights[i], slot, slot);
            }
        }

        // 5. merge layer
        if (_mergeProj != null) _mergeProj.ForwardBatch(concat, y, count);
        else concat.CopyTo(y);

        // 6. shared expert on the un-split tokens
        if (_shared != null)
        {
            var sharedOut = _scratch.SharedOut.Take(count * d);
            _shared.ForwardBatch(x, sharedOut, count);
            TensorPrimitives.Add(y[..(count * d)], sharedOut, y);
        }
    }
}
