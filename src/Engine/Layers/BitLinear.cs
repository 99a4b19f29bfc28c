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
    /// Below this many bytes of weights a matrix is not worth waking the other threads for. A tuning knob,
    /// read when a layer is built; results never depend on it (threads split rows, not sums).
    /// </summary>
    public static long ParallelThreshold { get; set; } = 1 << 18;

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
    private readonly RowJob _rows, _batchRows;
    private readonly int _minRowsPerShare;
    private readonly BatchScratch _scratch;

    // The current call's vectors, visible to the worker threads during Forward and ForwardBatch.
    private float* _x, _y;
    private float _denominator;
    private int _count;

    private BitLinear(string name, int outF, int inF, TensorView? floatWeights, sbyte[]? ternary, byte[]? packed, float weightScale,
        float[]? bias, LayerContext ctx)
    {
        Name = name; OutFeatures = outF; InFeatures = inF;
        _float = floatWeights; _ternary = ternary; _packed = packed; _weightScale = weightScale; _bias = bias; _pool = ctx.Pool;
        _xq = floatWeights == null ? new sbyte[inF] : [];
        if (packed != null)
        {
            _activations = new TernaryActivations();
            _dots = new int[outF];
        }
        _rows = packed != null ? PackedRows : ternary != null ? TernaryRows : FloatRows;
        _batchRows = packed != null ? PackedBatchRows : ternary != null ? TernaryBatchRows : FloatBatchRows;
        // Waking a thread costs microseconds (far more on a loaded machine), so a share must hold
        // enough bytes to be worth it: the threshold counts bytes as the kernels read them.
        long rowBytes = packed != null ? TernaryGemv.RowStride(inF) : ternary != null ? inF : (long)inF * DTypeInfo.Size(floatWeights!.FloatType);
        _minRowsPerShare = rowBytes * outF < ParallelThreshold ? outF : Math.Max(1, (int)(ParallelThreshold / 2 / rowBytes));
        _scratch = ctx.Scratch;
        if (floatWeights == null)
        {
            int rows = _scratch.MaxRows;
            _scratch.QuantizedX.Reserve((long)rows * inF);
            _scratch.Denominators.Reserve(rows);
            if (packed != null) _scratch.Dots.Reserve((long)rows * outF);
        }
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
                ExecutionMode.FakeQuant => new BitLinear(name, outF, inF, null, stored.ToValues(), null, stored.Scale, bias, ctx),
                ExecutionMode.Packed => new BitLinear(name, outF, inF, null, null, stored.ToKernelLayout(), stored.Scale, bias, ctx),
                _ => throw new BitMoeException($"{stored.File}: tensor '{stored.Name}' is ternary; --mode fp needs float weights (run the checkpoint folder, or use --mode packed or fakequant)"),
            };
        }
        var f = w.Float!;
        if (f.FloatType == DType.F16)
        {
            // FloatDot widens halves without handling infinities and NaNs; a tensor holding one is refused here, once.
            long bad = FloatDot.IndexOfNonFiniteF16((Half*)f.Data, (long)outF * inF);
            if (bad >= 0)
                throw new BitMoeException($"{f.File}: tensor '{f.Name}' holds an infinite or NaN value at row {bad / inF}, column {bad % inF}; weights must be finite");
        }
        bool quantize = ctx.Mode != ExecutionMode.Fp && ctx.Config.IsQuantized(name);
        if (!quantize) return new BitLinear(name, outF, inF, f, null, null, 0, bias, ctx);
        var (values, scale) = Ternarizer.Quantize(f.Data, f.FloatType, outF, inF);
        return ctx.Mode == ExecutionMode.Packed
            ? new BitLinear(name, outF, inF, null, null, TqRepack.FromTernary(values, outF, inF), scale, bias, ctx)
            : new BitLinear(name, outF, inF, null, values, null, scale, bias, ctx);
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

    /// <summary>
    /// y[t] = W x[t] (+ b) for <paramref name="count"/> vectors at once: x is [count, in], y is [count, out]. Each weight
    /// row is read once for the whole batch; every vector is quantized on its own (its own s_x) and every output is
    /// computed exactly as <see cref="Forward"/> computes it, so the results are the same bit for bit.
    /// </summary>
    public void ForwardBatch(ReadOnlySpan<float> x, Span<float> y, int count)
    {
        if (count < 1 || count > _scratch.MaxRows) throw new ArgumentOutOfRangeException(nameof(count), $"batch of {count} rows (1 to {_scratch.MaxRows})");
        x = x[..(count * InFeatures)];
        y = y[..(count * OutFeatures)];
        if (_float == null)
        {
            var xq = _scratch.QuantizedX.Take((long)count * InFeatures);
            var denominators = _scratch.Denominators.Take(count);
            for (int t = 0; t < count; t++)
            {
                float xs = ActivationQuantizer.Quantize(x.Slice(t * InFeatures, InFeatures), xq.Slice(t * InFeatures, InFeatures));
                denominators[t] = xs * _weightScale;
            }
            if (_packed != null)
            {
                _scratch.Activations.Prepare(xq, InFeatures, count);
                _scratch.Dots.Take((long)count * OutFeatures); // the workers write the int32 dots to Dots.Array
            }
        }
        fixed (float* px = x, py = y)
        {
            _x = px; _y = py; _count = count;
            _pool.For(OutFeatures, _batchRows, _minRowsPerShare);
            _x = _y = null;
        }
        if (_bias != null)
            for (int t = 0; t < count; t++)
            {
                var yt = y.Slice(t * OutFeatures, OutFeatures);
                System.Numerics.Tensors.TensorPrimitives.Add(yt, _bias, yt);
            }
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

    private void FloatBatchRows(int start, int end) =>
        FloatGemv.ComputeRowsBatch(_float!.Data, _float.FloatType, OutFeatures, InFeatures,
            new ReadOnlySpan<float>(_x, _count * InFeatures), _count, new Span<float>(_y, _count * OutFeatures), start, end);

    private void TernaryBatchRows(int start, int end)
    {
        var w = _ternary.AsSpan();
        var xq = _scratch.QuantizedX.Array.AsSpan();
        var denominators = _scratch.Denominators.Array;
        for (int r = start; r < end; r++)
        {
            var row = w.Slice(r * InFeatures, InFeatures);
            for (int t = 0; t < _count; t++)
                _y[(long)t * OutFeatures + r] = Int8Dot.Dot(xq.Slice(t * InFeatures, InFeatures), row) / denominators[t];
        }
    }

    private void PackedBatchRows(int start, int end)
    {
        var dots = _scratch.Dots.Array;
        var denominators = _scratch.Denominators.Array;
        TernaryGemm.Compute(_packed, OutFeatures, InFeatures, _scratch.Activations, dots, start, end);
        for (int t = 0; t < _count; t++)
        {
            long row = (long)t * OutFeatures;
            for (int r = start; r < end; r++) _y[row + r] = dots[row + r] / denominators[t];
        }
    }
}
