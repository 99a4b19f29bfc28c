using System.Numerics.Tensors;

namespace BitMoe.Engine.Layers;

/// <summary>
/// down(act(gate(x)) * up(x)), act = silu (SwiGLU) or relu2 (squared ReLU); the BitNet
/// ffn_sub_norm, when present, normalises the product before down_proj. Also every expert.
/// </summary>
public sealed class DenseFfn
{
    private readonly BitLinear _gate, _up, _down;
    private readonly RmsNorm? _subNorm;
    private readonly Activation _act;
    private readonly float[] _g, _u;

    public DenseFfn(LayerContext ctx, string prefix, int width, int hidden)
    {
        var c = ctx.Config;
        _gate = BitLinear.Load(ctx, $"{prefix}.gate_proj", hidden, width);
        _up = BitLinear.Load(ctx, $"{prefix}.up_proj", hidden, width);
        _down = BitLinear.Load(ctx, $"{prefix}.down_proj", width, hidden);
        if (c.UseSubNorm) _subNorm = RmsNorm.Load(ctx.Weights, $"{prefix}.ffn_sub_norm", hidden, c.RmsNormEps);
        _act = c.HiddenAct;
        _g = new float[hidden]; _u = new float[hidden];
    }

    /// <summary>Bytes of weights one call reads: gate, up, down and the sub-norm.</summary>
    public long WeightBytes => _gate.WeightBytes + _up.WeightBytes + _down.WeightBytes + (_subNorm?.WeightBytes ?? 0);

    public void Forward(ReadOnlySpan<float> x, Span<float> y)
    {
        _gate.Forward(x, _g);
        _up.Forward(x, _u);
        if (_act == Activation.Silu)
        {
            // silu(g) = g * sigmoid(g)
            for (int i = 0; i < _g.Length; i++) _g[i] = _g[i] / (1f + MathF.Exp(-_g[i]));
        }
        else
        {
            for (int i = 0; i < _g.Length; i++) { float r = MathF.Max(_g[i], 0f); _g[i] = r * r; }
        }
        TensorPrimitives.Multiply(_g, _u, _g);
        if (_subNorm != null) _subNorm.Forward(_g, _g);
        _down.Forward(_g, y);
    }
}
