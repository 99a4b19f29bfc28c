using System.Runtime.Intrinsics;
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
    /// (F32/F16/BF16: in the memory map, or copied to the huge-page arena in packed mode); plus the float32 bias.
    /// </summary>
    public long WeightBytes =>
        (_packed?.Length ?? _ternary?.LongLength ?? _float!.ByteLength) + (_bias?.LongLength ?? 0) * sizeof(float);

    // Exactly one of these holds the weights: float rows (in the file mapping, or in packed mode in the model's
    // huge-page arena), one sbyte per ternary weight (fake-quant), or ternary codes in the kernels' packed layout
    // (in the arena).
    private readonly TensorView? _float;
    private readonly HugePageArena _arena; // keeps the arena, and so float rows copied there, alive with the layer
    private readonly sbyte[]? _ternary;
    private readonly PackedMatrix? _packed;
    private readonly float _weightScale;
    private readonly float[]? _bias;
    // the current Forward call's int8 input and its kernel layout (DecodeBuffers of the calling thread), for the workers
    private sbyte[]? _xq;
    private TernaryActivations? _activations;
    private readonly WorkerPool _pool;
    private readonly RowJob _rows, _batchRows, _quantizeTokens;
    private readonly int _minRowsPerShare;
    private readonly BatchScratch _scratch;

    // The current call's vectors, visible to the worker threads during Forward and ForwardBatch.
    private float* _x, _y;
    private float _denominator;
    private int _count;

    private BitLinear(string name, int outF, int inF, TensorView? floatWeights, sbyte[]? ternary, PackedMatrix? packed, float weightScale,
        float[]? bias, LayerContext ctx)
    {
        Name = name; OutFeatures = outF; InFeatures = inF;
        _float = floatWeights; _ternary = ternary; _packed = packed; _weightScale = weightScale; _bias = bias; _pool = ctx.Pool;
        _arena = ctx.Arena;
        _rows = packed != null ? PackedRows : ternary != null ? TernaryRows : FloatRows;
        _batchRows = packed != null ? PackedBatchRows : ternary != null ? TernaryBatchRows : FloatBatchRows;
        _quantizeTokens = QuantizeTokens;
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
                ExecutionMode.Packed => new BitLinear(name, outF, inF, null, null, PackedMatrix.From(ctx.Arena, stored), stored.Scale, bias, ctx),
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
        if (!quantize)
        {
            // packed mode reads its float matrices (the lm_head, routers) from 2 MiB pages too, as the ternary ones
            var rows = ctx.Mode == ExecutionMode.Packed ? HugePageCopy.Of(ctx.Arena, f) : f;
            return new BitLinear(name, outF, inF, rows, null, null, 0, bias, ctx);
        }
        var (values, scale) = Ternarizer.Quantize(f.Data, f.FloatType, outF, inF);
        return ctx.Mode == ExecutionMode.Packed
            ? new BitLinear(name, outF, inF, null, null, PackedMatrix.From(ctx.Arena, values, outF, inF), scale, bias, ctx)
            : new BitLinear(name, outF, inF, null, values, null, scale, bias, ctx);
    }

    public void Forward(ReadOnlySpan<float> x, Span<float> y)
    {
        if (_float == null)
        {
            _xq = DecodeBuffers.Quantized(InFeatures);
            float xs = ActivationQuantizer.Quantize(x[..InFeatures], _xq.AsSpan(0, InFeatures));
            // y = (xq . Wq^T) / (s_x * s_w): the integer dot is exact, then one float division.
            _denominator = xs * _weightScale;
            if (_packed != null)
            {
                _activations = DecodeBuffers.Activations;
                _activations.Prepare(_xq.AsSpan(0, InFeatures), InFeatures);
            }
        }
        fixed (float* px = x, py = y)
        {
            _x = px; _y = py;
            _pool.For(OutFeatures, _rows, _minRowsPerShare);
            _x = _y = null;
        }
        _xq = null; _activations = null;
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
            _scratch.QuantizedX.Take((long)count * InFeatures);
            _scratch.Denominators.Take(count);
            if (_packed != null)
            {
                _scratch.Activations.Reset(InFeatures, count);
                _scratch.Dots.Take((long)count * OutFeatures); // the workers write the int32 dots to Dots.Array
            }
            // every token is quantized (and laid out) on its own: threads split the tokens
            fixed (float* px = x)
            {
                _x = px; _count = count;
                _pool.For(count, _quantizeTokens, QuantizeTokensPerShare);
                _x = null;
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

    /// <summary>
    /// Several layers that read the same input (q, k and v; gate and up) evaluated together: in packed mode the input is
    /// quantized and laid out for the kernels once and the rows of all of them are handed to the threads in one go (one
    /// wait instead of one per layer). Each output is what its layer's <see cref="Forward"/> gives, bit for bit.
    /// </summary>
    public sealed class SharedInput
    {
        private readonly BitLinear[] _layers;
        private readonly int[] _firstRow;
        private readonly int _rows, _minRowsPerShare;
        private readonly RowJob _job;
        private readonly float*[] _outputs;
        private readonly bool _packed;
        private TernaryActivations? _activations; // the current call's, for the workers

        public SharedInput(params BitLinear[] layers)
        {
            if (layers.Length is < 2 or > 3 || layers.Any(l => l.InFeatures != layers[0].InFeatures || l._pool != layers[0]._pool))
                throw new ArgumentException("two or three layers with the same input width and thread pool share an input");
            _packed = layers.All(l => l._packed != null);
            _layers = layers;
            _firstRow = new int[layers.Length + 1];
            for (int i = 0; i < layers.Length; i++) _firstRow[i + 1] = _firstRow[i] + layers[i].OutFeatures;
            _rows = _firstRow[^1];
            _minRowsPerShare = layers.Min(l => l._minRowsPerShare);
            _outputs = new float*[layers.Length];
            _job = Rows;
        }

        /// <summary>y0 = layers[0].Forward(x), y1 = layers[1].Forward(x), y2 = layers[2].Forward(x) when there is a third.</summary>
        public void Forward(ReadOnlySpan<float> x, Span<float> y0, Span<float> y1, Span<float> y2 = default)
        {
            if (!_packed)
            {
                _layers[0].Forward(x, y0);
                _layers[1].Forward(x, y1);
                if (_layers.Length > 2) _layers[2].Forward(x, y2);
                return;
            }
            if (y0.Length < _layers[0].OutFeatures || y1.Length < _layers[1].OutFeatures || (_layers.Length > 2 && y2.Length < _layers[2].OutFeatures))
                throw new ArgumentException("an output is shorter than its layer's rows");
            var first = _layers[0];
            int n = first.InFeatures;
            var xq = DecodeBuffers.Quantized(n).AsSpan(0, n);
            float xs = ActivationQuantizer.Quantize(x[..n], xq);
            _activations = DecodeBuffers.Activations;
            _activations.Prepare(xq, n);
            foreach (var l in _layers) l._denominator = xs * l._weightScale;
            fixed (float* p0 = y0, p1 = y1, p2 = y2)
            {
                _outputs[0] = p0; _outputs[1] = p1;
                if (_layers.Length > 2) _outputs[2] = p2;
                first._pool.For(_rows, _job, _minRowsPerShare);
                Array.Clear(_outputs);
            }
            _activations = null;
            AddBias(_layers[0], y0);
            AddBias(_layers[1], y1);
            if (_layers.Length > 2) AddBias(_layers[2], y2);
        }

        private static void AddBias(BitLinear l, Span<float> y)
        {
            if (l._bias != null) System.Numerics.Tensors.TensorPrimitives.Add(y[..l.OutFeatures], l._bias, y);
        }

        private void Rows(int start, int end)
        {
            var activations = _activations!;
            for (int i = 0; i < _layers.Length; i++)
            {
                int s = Math.Max(start, _firstRow[i]), e = Math.Min(end, _firstRow[i + 1]);
                if (s >= e) continue;
                _layers[i].PackedRows(activations, _outputs[i], s - _firstRow[i], e - _firstRow[i]);
            }
        }
    }

    /// <summary>Tokens below which quantizing a batch is not worth waking the other threads for (a tuning knob).</summary>
    private const int QuantizeTokensPerShare = 16;

    private void QuantizeTokens(int start, int end)
    {
        var xq = _scratch.QuantizedX.Array.AsSpan();
        var denominators = _scratch.Denominators.Array;
        var x = new ReadOnlySpan<float>(_x, _count * InFeatures);
        for (int t = start; t < end; t++)
        {
            var xt = xq.Slice(t * InFeatures, InFeatures);
            denominators[t] = ActivationQuantizer.Quantize(x.Slice(t * InFeatures, InFeatures), xt) * _weightScale;
            if (_packed != null) _scratch.Activations.PrepareToken(t, xt);
        }
    }

    private void FloatRows(int start, int end) =>
        FloatGemv.ComputeRows(_float!.Data, _float.FloatType, InFeatures,
            new ReadOnlySpan<float>(_x, InFeatures), new Span<float>(_y, OutFeatures), start, end);

    private void TernaryRows(int start, int end)
    {
        var w = _ternary.AsSpan();
        for (int r = start; r < end; r++)
            _y[r] = Int8Dot.Dot(_xq.AsSpan(0, InFeatures), w.Slice(r * InFeatures, InFeatures)) / _denominator;
    }

    private void PackedRows(int start, int end) => PackedRows(_activations!, _y, start, end);

    /// <summary>Rows [start, end) of y = (codes . activations) / denominator: the packed Forward, also for a <see cref="SharedInput"/>.</summary>
    private void PackedRows(TernaryActivations activations, float* y, int start, int end)
    {
        // the int32 dots pass through a block on the worker's stack (hot in L1), not an array written cold every token
        int stride = TernaryGemv.RowStride(InFeatures);
        int* dots = stackalloc int[DotsBlock];
        for (int r = start; r < end; r += DotsBlock)
        {
            int n = Math.Min(DotsBlock, end - r);
            TernaryGemv.Compute(_packed!.Span.Slice(r * stride, n * stride), InFeatures, activations, new Span<int>(dots, n), 0, n);
            DivideRows(dots, _denominator, y + r, 0, n);
        }
    }

    /// <summary>Rows per block of <see cref="PackedRows"/>: 1 KiB of dots.</summary>
    private const int DotsBlock = 256;

    /// <summary>y[r] = (float)dots[r] / denominator for r in [start, end): the int to float conversion is exact (|dot| &lt; 2^24) and the division correctly rounded, vector or not.</summary>
    private static void DivideRows(int* dots, float denominator, float* y, int start, int end)
    {
        int r = start;
        if (Vector512.IsHardwareAccelerated)
        {
            var d = Vector512.Create(denominator);
            for (; r + 16 <= end; r += 16)
                (Vector512.ConvertToSingle(Vector512.Load(dots + r)) / d).Store(y + r);
        }
        for (; r < end; r++) y[r] = dots[r] / denominator;
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
        TernaryGemm.Compute(_packed!.Span, OutFeatures, InFeatures, _scratch.Activations, dots, start, end);
        fixed (int* pd = dots)
            for (int t = 0; t < _count; t++)
            {
                long row = (long)t * OutFeatures;
                DivideRows(pd + row, denominators[t], _y + row, start, end);
            }
    }
}
