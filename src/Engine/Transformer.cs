using BitMoe.Engine.Weights;
using BitMoe.Engine.Layers;
using BitMoe.Kernels;
using BitMoe.Quant;
using BitMoe.Quant.Formats;

namespace BitMoe.Engine;

/// <summary>
/// The forward pass of model-spec.md, top to bottom: embed the token, run every decoder layer
/// (attention, then dense FFN or MH-MoE), final RMSNorm, lm_head. One token at a time against
/// the KV cache (<see cref="Forward"/>, decoding), or a batch of tokens through every layer at once
/// (<see cref="ForwardBatch"/>, prompts and perplexity), with the same results bit for bit.
/// The scratch state is allocated once.
/// </summary>
public sealed unsafe class Transformer : IDisposable
{
    private readonly ModelWeights _weights;
    private readonly WorkerPool _pool;
    private readonly HugePageArena _arena = new();
    private readonly TensorView _embedding;
    private readonly DecoderLayer[] _layers;
    private readonly RmsNorm _finalNorm;
    private readonly BitLinear _lmHead;
    private readonly float[] _x, _normed, _logits;
    private readonly BatchScratch _scratch;

    public ModelConfig Config { get; }
    public ExecutionMode Mode { get; }
    public KvCache Cache { get; }
    public int ContextLength => Cache.Capacity;
    public IReadOnlyList<DecoderLayer> Layers => _layers;

    /// <summary>Tokens per pass of <see cref="ForwardBatch"/>; longer inputs are evaluated in chunks of this many.</summary>
    public int MaxBatch => _scratch.MaxTokens;

    /// <summary>The default <see cref="MaxBatch"/> (or the context length, if that is shorter).</summary>
    public const int DefaultMaxBatch = 512;

    /// <summary>Tokens evaluated since construction (prompt and generated), for statistics and tests.</summary>
    public long TokensEvaluated { get; private set; }

    public Transformer(ModelWeights weights, ModelConfig config, ExecutionMode mode, int contextLength, int threads = 1,
        int maxBatch = DefaultMaxBatch, DType kvCacheType = DType.F32)
    {
        if (contextLength <= 0) throw new BitMoeException($"context length {contextLength} must be positive");
        if (contextLength > config.MaxPositions)
            throw new BitMoeException($"context length {contextLength} is larger than max_position_embeddings {config.MaxPositions}");
        if (mode != ExecutionMode.Fp && !config.IsBitNet)
            throw new BitMoeException($"{weights.Source}: --mode {mode.ToString().ToLowerInvariant()} needs a BitNet checkpoint (config.json has no bitnet quantization_config)");
        if (maxBatch <= 0) throw new BitMoeException($"batch size {maxBatch} must be positive");
        _weights = weights; Config = config; Mode = mode;
        var c = config;
        _pool = new WorkerPool(threads);
        int batch = Math.Min(maxBatch, contextLength);
        _scratch = new BatchScratch(batch, c.AnyMoe ? batch * c.MoeNumHeads : batch);
        _scratch.Hidden.Reserve((long)batch * c.HiddenSize);
        _scratch.Normed.Reserve((long)batch * c.HiddenSize);
        var ctx = new LayerContext(weights, config, mode, _pool, _scratch, _arena);
        _embedding = weights.Take("model.embed_tokens.weight", c.VocabSize, c.HiddenSize);
        var rope = new Rope(c.HeadDim, c.RopeTheta, contextLength);
        _layers = new DecoderLayer[c.NumLayers];
        for (int i = 0; i < c.NumLayers; i++) _layers[i] = new DecoderLayer(ctx, i, rope, contextLength);
        _finalNorm = RmsNorm.Load(weights, "model.norm", c.HiddenSize, c.RmsNormEps);
        _lmHead = c.TieWordEmbeddings
            ? BitLinear.Load(ctx, "lm_head", c.VocabSize, c.HiddenSize, weightName: "model.embed_tokens.weight")
            : BitLinear.Load(ctx, "lm_head", c.VocabSize, c.HiddenSize);
        weights.CheckAllTaken();
        Cache = new KvCache(c.NumLayers, contextLength, c.NumKvHeads, c.HeadDim, _arena, kvCacheType);
        _x = new float[c.HiddenSize]; _normed = new float[c.HiddenSize]; _logits = new float[c.VocabSize];
    }

    /// <summary>Evaluates <paramref name="token"/> at the next free position of the cache and returns the logits.</summary>
    public ReadOnlySpan<float> Forward(int token)
    {
        int pos = Cache.Length;
        if (pos >= Cache.Capacity) throw new BitMoeException($"the context is full ({Cache.Capacity} tokens)");
        if ((uint)token >= (uint)Config.VocabSize) throw new BitMoeException($"token id {token} is outside the vocabulary [0, {Config.VocabSize})");

        FloatGemv.ToSingle(_embedding.Data, _embedding.FloatType, (long)token * Config.HiddenSize, _x);
        foreach (var layer in _layers) layer.Forward(_x, pos, Cache);
        _finalNorm.Forward(_x, _normed);
        _lmHead.Forward(_normed, _logits);

        Cache.Length = pos + 1;
        TokensEvaluated++;
        return _logits;
    }

    /// <summary>
    /// Evaluates <paramref name="tokens"/> at the next free positions of the cache and returns the logits after the
    /// last one; with <paramref name="allLogits"/> ([tokens, vocab]) also the logits after every token. Every layer runs
    /// on up to <see cref="MaxBatch"/> tokens at once (matrix-matrix, each expert once per batch); the results are
    /// those of <see cref="Forward"/> token by token, bit for bit.
    /// </summary>
    public ReadOnlySpan<float> ForwardBatch(ReadOnlySpan<int> tokens, Span<float> allLogits = default)
    {
        int vocab = Config.VocabSize;
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to evaluate", nameof(tokens));
        if (!allLogits.IsEmpty && allLogits.Length != (long)tokens.Length * vocab)
            throw new ArgumentException($"allLogits holds {allLogits.Length} values, {tokens.Length} tokens x {vocab} need {(long)tokens.Length * vocab}", nameof(allLogits));
        if (Cache.Length + tokens.Length > Cache.Capacity)
            throw new BitMoeException($"the context is full ({Cache.Capacity} tokens; {Cache.Length} used, {tokens.Length} more requested)");
        foreach (int token in tokens)
            if ((uint)token >= (uint)vocab) throw new BitMoeException($"token id {token} is outside the vocabulary [0, {vocab})");

        for (int start = 0; start < tokens.Length; start += MaxBatch)
        {
            int count = Math.Min(MaxBatch, tokens.Length - start);
            bool last = start + count == tokens.Length;
            ForwardChunk(tokens.Slice(start, count), allLogits.IsEmpty ? default : allLogits.Slice(start * vocab, count * vocab), last);
        }
        return _logits;
    }

    /// <summary>One batch of at most <see cref="MaxBatch"/> tokens; the last one's logits go to _logits when <paramref name="last"/>.</summary>
    private void ForwardChunk(ReadOnlySpan<int> tokens, Span<float> allLogits, bool last)
    {
        int pos = Cache.Length, count = tokens.Length, d = Config.HiddenSize;
        var x = _scratch.Hidden.Take((long)count * d);
        for (int t = 0; t < count; t++)
            FloatGemv.ToSingle(_embedding.Data, _embedding.FloatType, (long)tokens[t] * d, x.Slice(t * d, d));
        foreach (var layer in _layers) layer.ForwardBatch(x, count, pos, Cache);

        if (!allLogits.IsEmpty)
        {
            var normed = _scratch.Normed.Take((long)count * d);
            _finalNorm.ForwardBatch(x, normed, count);
            _lmHead.ForwardBatch(normed, allLogits, count);
            if (last) allLogits[^Config.VocabSize..].CopyTo(_logits);
        }
        else if (last)
        {
            // only the last token's logits are wanted: the other rows skip the (large) lm_head
            _finalNorm.Forward(x[^d..], _normed);
            _lmHead.Forward(_normed, _logits);
        }

        Cache.Length = pos + count;
        TokensEvaluated += count;
    }

    /// <summary>Bytes of one row of the token embedding: the only part of it a token's lookup reads.</summary>
    public long EmbeddingRowBytes => _embedding.ByteLength / Config.VocabSize;

    /// <summary>
    /// Bytes of weights every token reads whatever the routing: one embedding row, every layer's attention, norms,
    /// dense FFN or MoE head/merge/router/shared expert, the final norm and lm_head. Decoding one token reads this
    /// plus the routed experts the router picks (<see cref="MhMoeLayer.ExpertWeightBytes"/>).
    /// </summary>
    public long FixedWeightBytesPerToken =>
        EmbeddingRowBytes + _layers.Sum(l => l.FixedWeightBytes) + _finalNorm.WeightBytes + _lmHead.WeightBytes;

    /// <summary>Bytes of all weights held in memory (the embedding counted once when a float lm_head shares it).</summary>
    public long TotalWeightBytes =>
        _embedding.ByteLength + _layers.Sum(l => l.TotalWeightBytes) + _finalNorm.WeightBytes
        + (Config.TieWordEmbeddings && !_lmHead.IsQuantized ? 0 : _lmHead.WeightBytes);

    public void Dispose()
    {
        _pool.Dispose();
        _weights.Dispose();
        _arena.Dispose();
    }
}
