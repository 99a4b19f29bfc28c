using BitMoe.Kernels;

namespace BitMoe.Engine.Layers;

/// <summary>
/// One scratch buffer of the batched forward pass. Layers reserve what their largest batch needs while
/// they are built; the array is allocated once, at the first batched call, for the largest reservation.
/// </summary>
public sealed class ScratchBuffer<T>
{
    private long _reserved;

    /// <summary>The whole buffer (empty until the first <see cref="Take"/>); worker threads read it through this.</summary>
    public T[] Array { get; private set; } = [];

    public void Reserve(long length) => _reserved = Math.Max(_reserved, length);

    /// <summary>The first <paramref name="length"/> elements; the contents are whatever the last user left.</summary>
    public Span<T> Take(long length)
    {
        if (length > _reserved) throw new InvalidOperationException($"scratch request of {length} exceeds the {_reserved} reserved");
        if (Array.Length < _reserved) Array = new T[_reserved];
        return Array.AsSpan(0, (int)length);
    }
}

/// <summary>
/// The scratch memory of <see cref="Transformer.ForwardBatch"/>, shared by every layer of one model. Layers run one
/// at a time, so each buffer is in use by one layer at a time: a layer may use the buffers of its own level while it
/// runs and must not rely on them afterwards; nested levels (a decoder layer, its attention or FFN, their linear
/// layers) use different buffers. Sized for <see cref="MaxTokens"/> tokens per batch; nothing is allocated per call.
/// </summary>
public sealed class BatchScratch(int maxTokens, int maxSubTokens)
{
    /// <summary>Tokens per batch; longer inputs are evaluated in chunks of this many.</summary>
    public int MaxTokens { get; } = maxTokens;

    /// <summary>Rows the MoE experts and router see at most: every token split into h sub-tokens.</summary>
    public int MaxSubTokens { get; } = maxSubTokens;

    /// <summary>The most rows any linear layer gets in one call.</summary>
    public int MaxRows => Math.Max(MaxTokens, MaxSubTokens);

    // Transformer and DecoderLayer: [tokens, hidden]
    public ScratchBuffer<float> Hidden { get; } = new();
    public ScratchBuffer<float> Normed { get; } = new();
    public ScratchBuffer<float> Branch { get; } = new();

    // Attention
    public ScratchBuffer<float> Queries { get; } = new();
    public ScratchBuffer<float> Keys { get; } = new();
    public ScratchBuffer<float> Values { get; } = new();
    public ScratchBuffer<float> AttentionOut { get; } = new();
    /// <summary>One row of attention scores per query head: [heads, context].</summary>
    public ScratchBuffer<float> Scores { get; } = new();

    // MhMoeLayer
    public ScratchBuffer<float> Split { get; } = new();
    public ScratchBuffer<float> Concat { get; } = new();
    public ScratchBuffer<float> SharedOut { get; } = new();
    public ScratchBuffer<float> RouterProbs { get; } = new();
    public ScratchBuffer<int> ChosenExperts { get; } = new();
    public ScratchBuffer<float> RouteWeights { get; } = new();
    public ScratchBuffer<int> ExpertRows { get; } = new();
    public ScratchBuffer<float> ExpertIn { get; } = new();
    public ScratchBuffer<float> ExpertOut { get; } = new();

    // DenseFfn (dense layers, experts, shared expert)
    public ScratchBuffer<float> Gate { get; } = new();
    public ScratchBuffer<float> Up { get; } = new();

    // BitLinear
    public ScratchBuffer<sbyte> QuantizedX { get; } = new();
    public ScratchBuffer<float> Denominators { get; } = new();
    public ScratchBuffer<int> Dots { get; } = new();
    /// <summary>The packed kernels' activation streams; grows to the largest batch on first use and keeps its buffers.</summary>
    public TernaryActivations Activations { get; } = new();
}
