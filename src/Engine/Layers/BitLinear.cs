using BitMoe.Kernels;
using BitMoe.Quant;
using BitMoe.Quant.Formats;
using BitMoe.Engine.Weights;

namespace BitMoe.Engine.Layers;

/// <summary>
/// One linear layer y = W x (+ b), in whichever execution mode it runs. This is the only place
/// that switches on the mode: float weights straight from the memory map, or BitNet b1.58
/// (absmean ternary weights, absmax int8 activations per token, one float rescale).
/// </summary>
public sealed unsafe class BitLinear
{
    /// <summary>
    /// Below this many weights a matrix is not worth waking the other threads for. A tuning knob,
    /// read when a layer is built; results never depend on it (threads split rows, not sums).
    /// </summary>
    public static long ParallelThreshold { get; set; } = 1 << 15;

    public string Name { get; }
    public int InFeatures { get; }
    public int OutFeatures { get; }
    public bool IsQuantized => _ternary != null || _packed != null;

    /// <summary>
    /// Bytes one <see cref="Forward"/> reads from the weights as they sit in memory: the packed kernel layout
    /// (<see cref="TernaryGemv.RowStride"/>(in) * out), one sbyte per weight (fake-quant), or the float rows
    /// (F32/F16/BF16, in the memory map); plus the float32 bias.
    /// </summary>
    public long WeightBytes =>
        (_packed?.LongLength ?? _ternary?.LongLength ?? _float!.ByteLength) + (_bias?.LongLength ?? 0) * sizeof(float);

    // Exactly one of these holds the weights: float rows, one sbyte per ternary weight (fake-quant),
    // or ternary codes in the kernels' packed layout.
    private readonly TensorView? _float;
    private readonly sbyte[]? _ternary;
    private readonly byte[]? _packed;
    private readonly float _weightScale;
    private readonly float[]? _bias;
    private readonly sbyte[] _xq;
    private readonly TernaryActivations? _activations;
    private readonly int[]? _dots;
    private readonly WorkerPool _pool;
    private readonly RowJob _rows;
    private readonly int _minRowsPerShare;

    // The current call's vectors, visible to the worker threads during Forward.
    private float* _x, _y;
    private float _denominator;

    private BitLinear(string name, int outF, int inF, TensorView? floatWeights, sbyte[]? ternary, byte[]? packed, float weightScale,
        float[]? bias, WorkerPool pool)
    {
        Name = name; OutFeatures = outF; InFeatures = inF;
        _float = floatWeights; _ternary = ternary; _packed = packed; _weightScale = weightScale; _bias = bias; _pool = pool;
        _xq = floatWeights == null ? new sbyte[inF] : [];
        if (packed != null)
        {
            _activations = new TernaryActivations();
            _dots = new int[outF];
        }
        _rows = packed != null ? PackedRows : ternary != null ? TernaryRows : FloatRows;
        _minRowsPerShare = (long)outF * inF < ParallelThreshold ? outF : Math.Max(1, (int)(ParallelThreshold / 4 / inF));
    }

    /// <summary>
    /// Takes <c>{name}.weight</c> [out, in] (and <c>{name}.bias</c> when <paramref name="hasBias"/>).
    /// <paramref name="weightName"/> overrides the tensor (a tied lm_head reads embed_tokens).
    /// Float weights of a quantized module are ternarized here (absmean, one scale per tensor);
    /// ternary weights from a GGUF file arrive with their float32 scale.
    /// </summary>
    public static BitLinear Load(LayerContext ctx, string name, int outF, int inF, bool hasBias = false, string? weightName = null)
    {
        var w = ctx.Weights.TakeLinear(weightName ?? name + ".weight", outF, inF);
        float[]? bias = hasBias ? ctx.Weights.Take(name + ".bias", outF).ToFloatArray() : null;
        if (w.Ternary is { } stored)
        {
            return ctx.Mode switch
            {
                ExecutionMode.FakeQuant => new BitLinear(name, outF, inF, null, stored.ToValues(), null, stored.Scale, bias, ctx.Pool),
                ExecutionMode.Packed => new BitLinear(name, outF, inF, null, null, stored.ToKernelLayout(), stored.Scale, bias, ctx.Pool),
                _ => throw new BitMoeException($"{stored.File}: tensor '{stored.Name}' is ternary; --mode fp needs float weights (run the checkpoint folder, or use --mode packed or fakequant)"),
            };
        }
        var f = w.Float!;
        bool quantize = ctx.Mode != ExecutionMode.Fp && ctx.Config.IsQuantized(name);
        if (!quantize) return new BitLinear(name, outF, inF, f, null, null, 0, bias, ctx.Pool);
        var (values, scale) = Ternarizer.Quantize(f.Data, f.FloatType, outF, inF);
        return ctx.Mode == ExecutionMode.Packed
            ? new BitLinear(name, outF, inF, null, null, TqRepack.FromTernary(values, outF, inF), scale, bias, ctx.Pool)
            : new BitLinear(name, outF, inF, null, values, null, scale, bias, ctx.Pool);
    }

    public void Forward(ReadOnlySpan<float> x, Span<float> y)
    {
        if (_float == null)
        {
            float xs = ActivationQuantizer.Quantize(x[..InFeatures], _xq);
            // y = (xq . Wq^T) / (s_x * s_w): the integer dot is exact, then one float division.
            _denominator = xs * _weightScale;
            _activations?.Prepare(_xq, InFeatures);
        }
        fixed (float* px = x, py = y)
        {
            _x = px; _y = py;
            _pool.For(OutFeatures, _rows, _minRowsPerShare);
            _x = _y = null;
        }
        if (_bias != null)
            System.Numerics.Tensors.TensorPrimitives.Add(y[..OutFeatures], _bias, y);
    }

    private void FloatRows(int start, int end) =>
        FloatGemv.ComputeRows(_float!.Data, _float.FloatType, InFeatures,
            new ReadOnlySpan<float>(_x, InFeatures), new Span<float>(_y, OutFeatures), start, end);

    private void TernaryRows(int start, int end)
    {
        var w = _ternary.AsSpan();
        for (int r = start; r < end; r++)
            _y[r] = Int8Dot.Dot(_xq, w.Slice(r * InFeatures, InFeatures)) / _denominator;
    }

    private void PackedRows(int start, int end)
    {
        TernaryGemv.Compute(_packed, InFeatures, _activations!, _dots, start, end);
        for (int r = start; r < end; r++) _y[r] = _dots![r] / _denominator;
    }
}
