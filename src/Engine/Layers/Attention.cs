using System.Numerics.Tensors;

namespace BitMoe.Engine.Layers;

/// <summary>
/// Causal self-attention with rotary embeddings and grouped-query heads: query head h reads
/// key/value head h / (heads / kv_heads). Optional BitNet attn_sub_norm before o_proj.
/// </summary>
public sealed class Attention
{
    private readonly int _layer, _heads, _kvHeads, _headDim;
    private readonly BitLinear _q, _k, _v, _o;
    private readonly RmsNorm? _subNorm;
    private readonly Rope _rope;
    private readonly float _scale;
    private readonly float[] _qBuf, _kBuf, _vBuf, _out, _scores;

    public Attention(LayerContext ctx, int layer, Rope rope, int contextLength)
    {
        var c = ctx.Config;
        string p = $"model.layers.{layer}.self_attn";
        _layer = layer; _heads = c.NumHeads; _kvHeads = c.NumKvHeads; _headDim = c.HeadDim; _rope = rope;
        _q = BitLinear.Load(ctx, $"{p}.q_proj", c.QDim, c.HiddenSize);
        _k = BitLinear.Load(ctx, $"{p}.k_proj", c.KvDim, c.HiddenSize);
        _v = BitLinear.Load(ctx, $"{p}.v_proj", c.KvDim, c.HiddenSize);
        _o = BitLinear.Load(ctx, $"{p}.o_proj", c.HiddenSize, c.QDim);
        if (c.UseSubNorm) _subNorm = RmsNorm.Load(ctx.Weights, $"{p}.attn_sub_norm", c.QDim, c.RmsNormEps);
        _scale = 1f / MathF.Sqrt(_headDim);
        _qBuf = new float[c.QDim]; _kBuf = new float[c.KvDim]; _vBuf = new float[c.KvDim];
        _out = new float[c.QDim]; _scores = new float[contextLength];
    }

    /// <summary>Bytes of weights one token reads: q, k, v, o and the sub-norm (the KV cache is not counted).</summary>
    public long WeightBytes => _q.WeightBytes + _k.WeightBytes + _v.WeightBytes + _o.WeightBytes + (_subNorm?.WeightBytes ?? 0);

    /// <summary>Attends from position <paramref name="pos"/> over the cache [0, pos]; writes the layer's output to <paramref name="y"/>.</summary>
    public void Forward(ReadOnlySpan<float> x, int pos, KvCache cache, Span<float> y)
    {
        _q.Forward(x, _qBuf);
        _k.Forward(x, _kBuf);
        _v.Forward(x, _vBuf);
        _rope.Apply(_qBuf, _heads, pos);
        _rope.Apply(_kBuf, _kvHeads, pos);
        _kBuf.CopyTo(cache.Key(_layer, pos));
        _vBuf.CopyTo(cache.Value(_layer, pos));

        int group = _heads / _kvHeads, n = pos + 1;
        var scores = _scores.AsSpan(0, n);
        for (int h = 0; h < _heads; h++)
        {
            var q = _qBuf.AsSpan(h * _headDim, _headDim);
            int kvOffset = (h / group) * _headDim;
            for (int t = 0; t < n; t++)
                scores[t] = TensorPrimitives.Dot(q, cache.Key(_layer, t).Slice(kvOffset, _headDim)) * _scale;
            Softmax.InPlace(scores);
            var o = _out.AsSpan(h * _headDim, _headDim);
            o.Clear();
            for (int t = 0; t < n; t++)
                TensorPrimitives.MultiplyAdd(cache.Value(_layer, t).Slice(kvOffset, _headDim), scores[t], o, o);
        }
        if (_subNorm != null) _subNorm.Forward(_out, _out);
        _o.Forward(_out, y);
    }
}
