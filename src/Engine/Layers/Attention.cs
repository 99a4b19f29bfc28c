using System.Numerics.Tensors;
using BitMoe.Kernels;

namespace BitMoe.Engine.Layers;

/// <summary>
/// Causal self-attention with rotary embeddings and grouped-query heads: query head h reads
/// key/value head h / (heads / kv_heads). Optional BitNet attn_sub_norm before o_proj.
/// </summary>
public sealed unsafe class Attention
{
    private readonly int _layer, _heads, _kvHeads, _headDim, _contextLength;
    private readonly BitLinear _q, _k, _v, _o;
    private readonly BitLinear.SharedInput _qkv;
    private readonly RmsNorm? _subNorm;
    private readonly Rope _rope;
    private readonly float _scale;
    private readonly float[] _qBuf, _kBuf, _vBuf, _out;
    private readonly WorkerPool _pool;
    private readonly BatchScratch _scratch;
    private readonly RowJob _attendHeads;

    // The current call's queries and outputs ([count, heads * head_dim]), visible to the worker threads.
    private float[]? _queries, _outputs;
    private int _batchPos, _batchCount;
    private KvCache? _batchCache;

    public Attention(LayerContext ctx, int layer, Rope rope, int contextLength)
    {
        var c = ctx.Config;
        string p = $"model.layers.{layer}.self_attn";
        _layer = layer; _heads = c.NumHeads; _kvHeads = c.NumKvHeads; _headDim = c.HeadDim; _rope = rope; _contextLength = contextLength;
        _q = BitLinear.Load(ctx, $"{p}.q_proj", c.QDim, c.HiddenSize);
        _k = BitLinear.Load(ctx, $"{p}.k_proj", c.KvDim, c.HiddenSize);
        _v = BitLinear.Load(ctx, $"{p}.v_proj", c.KvDim, c.HiddenSize);
        _o = BitLinear.Load(ctx, $"{p}.o_proj", c.HiddenSize, c.QDim);
        _qkv = new BitLinear.SharedInput(_q, _k, _v);
        if (c.UseSubNorm) _subNorm = RmsNorm.Load(ctx.Weights, $"{p}.attn_sub_norm", c.QDim, c.RmsNormEps);
        _scale = 1f / MathF.Sqrt(_headDim);
        _qBuf = new float[c.QDim]; _kBuf = new float[c.KvDim]; _vBuf = new float[c.KvDim];
        _out = new float[c.QDim];

        _pool = ctx.Pool;
        _scratch = ctx.Scratch;
        _attendHeads = AttendHeads;
        int tokens = _scratch.MaxTokens;
        _scratch.Queries.Reserve((long)tokens * c.QDim);
        _scratch.Keys.Reserve((long)tokens * c.KvDim);
        _scratch.Values.Reserve((long)tokens * c.KvDim);
        _scratch.AttentionOut.Reserve((long)tokens * c.QDim);
        _queryBlock = (int)Math.Clamp(ScoreBudget / ((long)_heads * contextLength), 1, MaxQueryBlock);
        _scratch.Scores.Reserve((long)_heads * _queryBlock * contextLength);
    }

    /// <summary>Bytes of weights one token reads: q, k, v, o and the sub-norm (the KV cache is not counted).</summary>
    public long WeightBytes => _q.WeightBytes + _k.WeightBytes + _v.WeightBytes + _o.WeightBytes + (_subNorm?.WeightBytes ?? 0);

    /// <summary>Attends from position <paramref name="pos"/> over the cache [0, pos]; writes the layer's output to <paramref name="y"/>.</summary>
    public void Forward(ReadOnlySpan<float> x, int pos, KvCache cache, Span<float> y)
    {
        _qkv.Forward(x, _qBuf, _kBuf, _vBuf);
        _rope.Apply(_qBuf, _heads, pos);
        _rope.Apply(_kBuf, _kvHeads, pos);
        cache.Write(_layer, pos, _kBuf, _vBuf);

        _scratch.Scores.Take((long)_heads * _contextLength);
        Attend(_qBuf, _out, 1, pos, cache);
        if (_subNorm != null) _subNorm.Forward(_out, _out);
        _o.Forward(_out, y);
    }

    /// <summary>
    /// The same for <paramref name="count"/> tokens at positions [pos, pos + count): x and y are [count, hidden]. Keys and
    /// values of the whole batch enter the cache first; token t then attends over [0, pos + t] (causal within the batch).
    /// </summary>
    public void ForwardBatch(ReadOnlySpan<float> x, int count, int pos, KvCache cache, Span<float> y)
    {
        int qDim = _heads * _headDim, kvDim = _kvHeads * _headDim;
        var q = _scratch.Queries.Take((long)count * qDim);
        var k = _scratch.Keys.Take((long)count * kvDim);
        var v = _scratch.Values.Take((long)count * kvDim);
        var o = _scratch.AttentionOut.Take((long)count * qDim);
        _scratch.Scores.Take((long)_heads * _queryBlock * _contextLength);
        _q.ForwardBatch(x, q, count);
        _k.ForwardBatch(x, k, count);
        _v.ForwardBatch(x, v, count);
        for (int t = 0; t < count; t++)
        {
            _rope.Apply(q.Slice(t * qDim, qDim), _heads, pos + t);
            _rope.Apply(k.Slice(t * kvDim, kvDim), _kvHeads, pos + t);
            cache.Write(_layer, pos + t, k.Slice(t * kvDim, kvDim), v.Slice(t * kvDim, kvDim));
        }

        Attend(_scratch.Queries.Array, _scratch.AttentionOut.Array, count, pos, cache);

        if (_subNorm != null) _subNorm.ForwardBatch(o, o, count);
        _o.ForwardBatch(o, y, count);
    }

    /// <summary>
    /// Tokens [pos, pos + count) attend over the cache: <paramref name="q"/> and <paramref name="o"/> are [count, heads *
    /// head_dim]. The heads are independent: threads split them (each with its own row of scores) once the work is
    /// worth waking them for.
    /// </summary>
    private void Attend(float[] q, float[] o, int count, int pos, KvCache cache)
    {
        _queries = q; _outputs = o; _batchPos = pos; _batchCount = count; _batchCache = cache;
        long work = (long)count * (pos + count) * _headDim * _heads;
        _pool.For(_heads, _attendHeads, work < MinParallelWork ? _heads : 1);
        _queries = _outputs = null; _batchCache = null;
    }

    /// <summary>Cached positions per block of a batch's pass over a head's keys and values.</summary>
    private const int PositionBlock = 16;

    /// <summary>Multiply-adds below which the attention of one call stays on the calling thread (a tuning knob).</summary>
    private const long MinParallelWork = 1 << 12;

    private void AttendHeads(int start, int end)
    {
        if (_batchCount == 1)
        {
            AttendOneToken(start, end);
            return;
        }
        AttendTokens(start, end);
    }

    /// <summary>Batch tokens per pass over a head's cached keys and values (each keeps a row of scores: up to 32 x context floats per head).</summary>
    private const int MaxQueryBlock = 32;

    /// <summary>Floats of scores all heads may keep at once (16 MiB): a long context with many heads takes fewer tokens per pass.</summary>
    private const long ScoreBudget = 4L << 20;

    /// <summary>Tokens per pass: <see cref="MaxQueryBlock"/>, or fewer where heads x context x 32 floats would pass <see cref="ScoreBudget"/>.</summary>
    private readonly int _queryBlock;

    /// <summary>
    /// Heads [start, end) of a batch of tokens (prompt, perplexity): token t at position pos + t attends over [0, pos + t].
    /// For each head, up to <see cref="MaxQueryBlock"/> tokens share one pass over the cache, a block of positions at a
    /// time: every token scores the block's keys (then each its own softmax), and every token adds the block's values
    /// to its output, continuing its chains from the block before. Token by token, a head's keys and values
    /// (context x head_dim floats each) were read from far caches once per token.
    /// Each score is the same dot and each output element the same chain of multiply-adds in position order as in
    /// <see cref="AttendOneToken"/>, so a prompt evaluated as a batch equals the same tokens decoded one by one, bit for bit.
    /// </summary>
    private void AttendTokens(int start, int end)
    {
        var cache = _batchCache!;
        int group = _heads / _kvHeads, qDim = _heads * _headDim;
        fixed (float* q = _queries, o = _outputs, scoreBase = _scratch.Scores.Array)
            for (int h = start; h < end; h++)
            {
                void* kh = cache.Keys(_layer, h / group), vh = cache.Values(_layer, h / group);
                float* scores = scoreBase + (long)h * _queryBlock * _contextLength;
                for (int t0 = 0; t0 < _batchCount; t0 += _queryBlock)
                {
                    int tokens = Math.Min(_queryBlock, _batchCount - t0);
                    int positions = _batchPos + t0 + tokens; // the last token's context
                    for (int p0 = 0; p0 < positions; p0 += PositionBlock)
                        for (int j = 0; j < tokens; j++)
                        {
                            int count = BlockPositions(t0 + j, p0);
                            if (count <= 0) continue;
                            ScoreKeys(cache, kh, p0, count, q + (long)(t0 + j) * qDim + h * _headDim, scores + (long)j * _contextLength + p0);
                        }
                    for (int j = 0; j < tokens; j++)
                    {
                        Softmax.InPlace(new Span<float>(scores + (long)j * _contextLength, _batchPos + t0 + j + 1));
                        new Span<float>(o + (long)(t0 + j) * qDim + h * _headDim, _headDim).Clear();
                    }
                    for (int p0 = 0; p0 < positions; p0 += PositionBlock)
                        for (int j = 0; j < tokens; j++)
                        {
                            int count = BlockPositions(t0 + j, p0);
                            if (count <= 0) continue;
                            SumValues(cache, vh, p0, count, scores + (long)j * _contextLength + p0, o + (long)(t0 + j) * qDim + h * _headDim,
                                accumulate: true);
                        }
                }
            }
    }

    /// <summary>Positions of the block starting at <paramref name="p0"/> that batch token <paramref name="t"/> attends over (none if 0 or less).</summary>
    private int BlockPositions(int t, int p0) => Math.Min(PositionBlock, _batchPos + t + 1 - p0);

    /// <summary>
    /// Heads [start, end) of a single token (decoding): the same arithmetic as <see cref="AttendTokens"/> (every score
    /// the same dot, every output element the same chain of multiply-adds in position order). A head's cached keys
    /// and values are each one run of memory (<see cref="KvCache"/>), read front to back: the scores with q in
    /// registers, then the sum over the values with the outputs in registers.
    /// </summary>
    private void AttendOneToken(int start, int end)
    {
        var cache = _batchCache!;
        int n = _batchPos + 1, hd = _headDim, group = _heads / _kvHeads;
        fixed (float* q = _queries, o = _outputs, scores = _scratch.Scores.Array)
            for (int h = start; h < end; h++)
            {
                float* sh = scores + (long)h * _contextLength;
                ScoreKeys(cache, cache.Keys(_layer, h / group), 0, n, q + h * hd, sh, prefetch: true);
                Softmax.InPlace(new Span<float>(sh, n));
                SumValues(cache, cache.Values(_layer, h / group), 0, n, sh, o + h * hd, accumulate: false, prefetch: true);
            }
    }

    /// <summary>
    /// scores[i] = scale * dot(q, key at position p0 + i) for i &lt; count, from one head's run of cached keys (F32 or F16;
    /// F16 keys are widened exactly, so the arithmetic is the same either way).
    /// </summary>
    private void ScoreKeys(KvCache cache, void* keys, int p0, int count, float* q, float* scores, bool prefetch = false)
    {
        long offset = (long)p0 * _headDim;
        if (cache.ElementType == DType.F16) StridedRows.Dots((Half*)keys + offset, _headDim, count, q, _headDim, _scale, scores, prefetch);
        else StridedRows.Dots((float*)keys + offset, _headDim, count, q, _headDim, _scale, scores, prefetch);
    }

    /// <summary>o (+)= sum_i weights[i] * value at position p0 + i, for i &lt; count, from one head's run of cached values.</summary>
    private void SumValues(KvCache cache, void* values, int p0, int count, float* weights, float* o, bool accumulate, bool prefetch = false)
    {
        long offset = (long)p0 * _headDim;
        if (cache.ElementType == DType.F16) StridedRows.WeightedSum((Half*)values + offset, _headDim, count, weights, _headDim, o, accumulate, prefetch);
        else StridedRows.WeightedSum((float*)values + offset, _headDim, count, weights, _headDim, o, accumulate, prefetch);
    }
}
