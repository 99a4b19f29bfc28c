using BitMoe.Kernels;

namespace BitMoe.Engine.Layers;

/// <summary>
/// The scratch of the one-token forward pass (decoding), one set per thread and shared by every layer: the normed
/// input and branch output of a decoder layer, an FFN's gate and up vectors, a linear layer's int8 input and its
/// layout for the kernels. Decoding streams every weight once per token, which evicts everything else from the caches;
/// buffers of each layer's own were written cold every token (a read for ownership per cache line, competing with the
/// weight stream), while one set is still in L1/L2 from the layer before. Timed per token with both forms alternating
/// at random: mixtral-small 0.95-0.98 of the time on one thread, bitnet-large unchanged (docs/performance.md, change 23).
/// Per thread, because a MoE layer runs its experts side by side on the pool's threads. Every buffer is used only
/// within one call (a layer fills it and reads it back before it returns), so layers and models may share them.
/// </summary>
internal static class DecodeBuffers
{
    [ThreadStatic] private static float[]? _normed, _branch, _gate, _up;
    [ThreadStatic] private static sbyte[]? _quantized;
    [ThreadStatic] private static TernaryActivations? _activations;

    /// <summary>A decoder layer's normalised input (<paramref name="n"/> = hidden size).</summary>
    public static Span<float> Normed(int n) => Grow(ref _normed, n).AsSpan(0, n);

    /// <summary>A decoder layer's attention or FFN output, before the residual add.</summary>
    public static Span<float> Branch(int n) => Grow(ref _branch, n).AsSpan(0, n);

    /// <summary>An FFN's gate projection (then act(gate) * up).</summary>
    public static Span<float> Gate(int n) => Grow(ref _gate, n).AsSpan(0, n);

    /// <summary>An FFN's up projection.</summary>
    public static Span<float> Up(int n) => Grow(ref _up, n).AsSpan(0, n);

    /// <summary>A linear layer's input quantized to int8 (at least <paramref name="n"/> values; the array, for the worker threads).</summary>
    public static sbyte[] Quantized(int n) => Grow(ref _quantized, n);

    /// <summary>The int8 input laid out for the packed ternary kernels.</summary>
    public static TernaryActivations Activations => _activations ??= new TernaryActivations();

    private static T[] Grow<T>(ref T[]? buffer, int n) => buffer != null && buffer.Length >= n ? buffer : buffer = new T[n];
}
