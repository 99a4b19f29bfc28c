using System.Numerics.Tensors;

namespace BitMoe.Engine.Layers;

/// <summary>One pre-norm block: x += attn(norm(x)); x += ffn(norm(x)), the FFN dense or MH-MoE.</summary>
public sealed class DecoderLayer
{
    private readonly RmsNorm _inputNorm, _postAttnNorm;
    private readonly Attention _attention;
    private readonly DenseFfn? _dense;
    public MhMoeLayer? Moe { get; }
    private readonly int _hidden;
    private readonly BatchScratch _scratch;

    public DecoderLayer(LayerContext ctx, int layer, Rope rope, int contextLength)
    {
        var c = ctx.Config;
        var w = ctx.Weights;
        string p = $"model.layers.{layer}";
        _inputNorm = RmsNorm.Load(w, $"{p}.input_layernorm", c.HiddenSize, c.RmsNormEps);
        _attention = new Attention(ctx, layer, rope, contextLength);
        _postAttnNorm = RmsNorm.Load(w, $"{p}.post_attention_layernorm", c.HiddenSize, c.RmsNormEps);
        if (c.IsMoeLayer[layer]) Moe = new MhMoeLayer(ctx, layer);
        else _dense = new DenseFfn(ctx, $"{p}.mlp", c.HiddenSize, c.IntermediateSize, ctx.Scratch.MaxTokens);
        _hidden = c.HiddenSize;
        _scratch = ctx.Scratch;
        _scratch.Normed.Reserve((long)_scratch.MaxTokens * c.HiddenSize);
        _scratch.Branch.Reserve((long)_scratch.MaxTokens * c.HiddenSize);
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
        var normed = DecodeBuffers.Normed(_hidden);
        var branch = DecodeBuffers.Branch(_hidden);
        _inputNorm.Forward(x, normed);
        _attention.Forward(normed, pos, cache, branch);
        TensorPrimitives.Add(x, branch, x);

        _postAttnNorm.Forward(x, normed);
        if (Moe != null) Moe.Forward(normed, branch);
        else _dense!.Forward(normed, branch);
        TensorPrimitives.Add(x, branch, x);
    }

    /// <summary>The same for <paramref name="count"/> tokens at positions [pos, pos + count): x is [count, hidden].</summary>
    public void ForwardBatch(Span<float> x, int count, int pos, KvCache cache)
    {
        int n = count * _hidden;
        x = x[..n];
        var normed = _scratch.Normed.Take(n);
        var branch = _scratch.Branch.Take(n);
        _inputNorm.ForwardBatch(x, normed, count);
        _attention.ForwardBatch(normed, count, pos, cache, branch);
        TensorPrimitives.Add(x, branch, x);

        _postAttnNorm.ForwardBatch(x, normed, count);
        if (Moe != null) Moe.ForwardBatch(normed, branch, count);
        else _dense!.ForwardBatch(normed, branch, count);
        TensorPrimitives.Add(x, branch, x);
    }
}
