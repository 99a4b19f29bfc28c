using System.Numerics.Tensors;

namespace BitMoe.Engine.Layers;

/// <summary>One pre-norm block: x += attn(norm(x)); x += ffn(norm(x)), the FFN dense or MH-MoE.</summary>
public sealed class DecoderLayer
{
    private readonly RmsNorm _inputNorm, _postAttnNorm;
    private readonly Attention _attention;
    private readonly DenseFfn? _dense;
    public MhMoeLayer? Moe { get; }
    private readonly float[] _normed, _branch;

    public DecoderLayer(LayerContext ctx, int layer, Rope rope, int contextLength)
    {
        var c = ctx.Config;
        var w = ctx.Weights;
        string p = $"model.layers.{layer}";
        _inputNorm = RmsNorm.Load(w, $"{p}.input_layernorm", c.HiddenSize, c.RmsNormEps);
        _attention = new Attention(ctx, layer, rope, contextLength);
        _postAttnNorm = RmsNorm.Load(w, $"{p}.post_attention_layernorm", c.HiddenSize, c.RmsNormEps);
        if (c.IsMoeLayer[layer]) Moe = new MhMoeLayer(ctx, layer);
        else _dense = new DenseFfn(ctx, $"{p}.mlp", c.HiddenSize, c.IntermediateSize);
        _normed = new float[c.HiddenSize]; _branch = new float[c.HiddenSize];
    }

    /// <summary>Bytes of weights every token reads in this layer: norms, attention, and the dense FFN or the MoE's fixed part (routed experts excluded).</summary>
    public long FixedWeightBytes => _inputNorm.WeightBytes + _postAttnNorm.WeightBytes + _attention.WeightBytes
        + (Moe?.FixedWeightBytes ?? _dense!.WeightBytes);

    /// <summary>Bytes of all this layer's weights in memory, every routed expert included.</summary>
    public long TotalWeightBytes
    {
        get
        {
            long total = FixedWeightBytes;
            if (Moe != null) for (int e = 0; e < Moe.NumExperts; e++) total += Moe.ExpertWeightBytes(e);
            return total;
        }
    }

    public void Forward(Span<float> x, int pos, KvCache cache)
    {
        _inputNorm.Forward(x, _normed);
        _attention.Forward(_normed, pos, cache, _branch);
        TensorPrimitives.Add(x, _branch, x);

        _postAttnNorm.Forward(x, _normed);
        if (Moe != null) Moe.Forward(_normed, _branch);
        else _dense!.Forward(_normed, _branch);
        TensorPrimitives.Add(x, _branch, x);
    }
}
