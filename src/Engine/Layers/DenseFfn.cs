using System.Numerics.Tensors;

namespace BitMoe.Engine.Layers;

/// <summary>
/// down(act(gate(x)) * up(x)), act = silu (SwiGLU) or relu2 (squared ReLU); the BitNet
/// ffn_sub_norm, when present, normalises the product before down_proj. Also every expert.
/// </summary>
public sealed class DenseFfn
{
    private readonly BitLinear _gate, _up, _down;
    private readonly BitLinear.SharedInput _gateUp;
    private readonly RmsNorm? _subNorm;
    private readonly Activation _act;
    private readonly int _hidden;
    private readonly BatchScratch _scratch;

    /// <param name="maxRows">The most rows <see cref="ForwardBatch"/> gets: tokens, or sub-tokens for an expert.</param>
    public DenseFfn(LayerContext ctx, string prefix, int width, int hidden, int maxRows)
    {
        var c = ctx.Config;
        _gate = BitLinear.Load(ctx, $"{prefix}.gate_proj", hidden, width);
        _up = BitLinear.Load(ctx, $"{prefix}.up_proj", hidden, width);
        _down = BitLinear.Load(ctx, $"{prefix}.down_proj", width, hidden);
        _gateUp = new BitLinear.SharedInput(_gate, _up);
        if (c.UseSubNorm) _subNorm = RmsNorm.Load(ctx.Weights, $"{prefix}.ffn_sub_norm", hidden, c.RmsNormEps);
        _act = c.HiddenAct;
        _hidden = hidden;
        _scratch = ctx.Scratch;
        _scratch.Gate.Reserve((long)maxRows * hidden);
        _scratch.Up.Reserve((long)maxRows * hidden);
    }

    /// <summary>Bytes of weights one call reads: gate, up, down and the sub-norm.</summary>
    public long WeightBytes => _gate.WeightBytes + _up.WeightBytes + _down.WeightBytes + (_subNorm?.WeightBytes ?? 0);

    public void Forward(ReadOnlySpan<float> x, Span<float> y)
    {
        var g = DecodeBuffers.Gate(_hidden);
        var u = DecodeBuffers.Up(_hidden);
        _gateUp.Forward(x, g, u);
        ActivateAndMultiply(g, u);
        if (_subNorm != null) _subNorm.Forward(g, g);
        _down.Forward(g, y);
    }

    /// <summary>The same for <paramref name="count"/> rows at once: x is [count, width], y is [count, width].</summary>
    public void ForwardBatch(ReadOnlySpan<float> x, Span<float> y, int count)
    {
        int hidden = _hidden;
        var g = _scratch.Gate.Take((long)count * hidden);
        var u = _scratch.Up.Take((long)count * hidden);
        _gate.ForwardBatch(x, g, count);
        _up.ForwardBatch(x, u, count);
        ActivateAndMultiply(g, u);
        if (_subNorm != null) _subNorm.ForwardBatch(g, g, count);
        _down.ForwardBatch(g, y, count);
    }

    /// <summary>g = act(g) * u, element by element, a row (of <c>hidden</c> values) at a time.</summary>
    private void ActivateAndMultiply(Span<float> g, ReadOnlySpan<float> u)
    {
        int hidden = _hidden;
        if (_act == Activation.Silu)
        {
            // silu(g) = g * sigmoid(g) = g / (1 + exp(-g)), vectorised in blocks of each row: every element of a row
            // sits at the same place in its block whether one token or a batch runs, so both give the same bits
            Span<float> e = stackalloc float[SiluBlock];
            for (int row = 0; row < g.Length; row += hidden)
                for (int i = 0; i < hidden; i += SiluBlock)
                {
                    var gi = g.Slice(row + i, Math.Min(SiluBlock, hidden - i));
                    var ei = e[..gi.Length];
                    TensorPrimitives.Negate(gi, ei);
                    TensorPrimitives.Exp(ei, ei);
                    TensorPrimitives.Add(ei, 1f, ei);
                    TensorPrimitives.Divide(gi, ei, gi);
                }
        }
        else
        {
            for (int i = 0; i < g.Length; i++) { float r = MathF.Max(g[i], 0f); g[i] = r * r; }
        }
        TensorPrimitives.Multiply(g, u, g);
    }

    private const int SiluBlock = 1024;
}
