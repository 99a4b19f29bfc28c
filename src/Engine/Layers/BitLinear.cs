using BitMoe.Kernels;
using BitMoe.Quant;
using BitMoe.Quant.Formats;

namespace BitMoe.Engine.Layers;

/// <summary>
/// One linear layer y = W x (+ b), in whichever execution mode it runs. This is the only place
/// that switches on the mode: float weights straight from the memory map, or BitNet b1.58
/// (absmean ternary weights, absmax int8 activations per token, one float rescale).
/// </summary>
public sealed unsafe class BitLinear
{
    public string Name { get; }
    public int InFeatures { get; }
    public int OutFeatures { get; }
    public bool IsQuantized => _ternary != null;

    private readonly TensorView? _float;
    private readonly sbyte[]? _ternary;
    private readonly float _weightScale;
    private readonly float[]? _bias;
    private readonly sbyte[] _xq;

    private BitLinear(string name, int outF, int inF, TensorView? floatWeights, sbyte[]? ternary, float weightScale, float[]? bias)
    {
        Name = name; OutFeatures = outF; InFeatures = inF;
        _float = floatWeights; _ternary = ternary; _weightScale = weightScale; _bias = bias;
        _xq = ternary != null ? new sbyte[inF] : [];
    }

    /// <summary>
    /// Takes <c>{name}.weight</c> [out, in] (and <c>{name}.bias</c> when <paramref name="hasBias"/>).
    /// <paramref name="weightName"/> overrides the tensor (a tied lm_head reads embed_tokens).
    /// </summary>
    public static BitLinear Load(ModelWeights weights, ModelConfig config, ExecutionMode mode, string name, int outF, int inF,
        bool hasBias = false, string? weightName = null)
    {
        var w = weights.Take(weightName ?? name + ".weight", outF, inF);
        float[]? bias = hasBias ? weights.Take(name + ".bias", outF).ToFloatArray() : null;
        bool quantize = mode != ExecutionMode.Fp && config.IsQuantized(name);
        if (!quantize) return new BitLinear(name, outF, inF, w, null, 0, bias);
        var (values, scale) = Ternarizer.Quantize(w.Data, w.FloatType, outF, inF);
        return new BitLinear(name, outF, inF, null, values, scale, bias);
    }

    public void Forward(ReadOnlySpan<float> x, Span<float> y)
    {
        if (_ternary == null)
        {
            FloatGemv.Compute(_float!.Data, _float.FloatType, OutFeatures, InFeatures, x, y);
        }
        else
        {
            float xs = ActivationQuantizer.Quantize(x[..InFeatures], _xq);
            // y = (xq . Wq^T) / (s_x * s_w): the integer dot is exact, then one float division.
            float denom = xs * _weightScale;
            var w = _ternary.AsSpan();
            for (int r = 0; r < OutFeatures; r++)
                y[r] = Int8Dot.Dot(_xq, w.Slice(r * InFeatures, InFeatures)) / denom;
        }
        if (_bias != null)
            System.Numerics.Tensors.TensorPrimitives.Add(y[..OutFeatures], _bias, y);
    }
}
