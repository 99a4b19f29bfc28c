using BitMoe.Kernels;

namespace BitMoe.Engine;

/// <summary>
/// Keys and values of every layer for positions [0, Capacity), written as tokens are evaluated. The memory comes
/// from the model's <see cref="HugePageArena"/> (2 MiB pages: attention reads a layer's whole cache for every
/// token, and with 4 KiB pages that was a TLB miss every 4 KiB), is not cleared (a position is always written
/// before attention reads it), so pages are touched only as the context fills, and lives as long as the arena.
/// </summary>
public sealed unsafe class KvCache
{
    private readonly float*[] _keys, _values;

    public int Capacity { get; }
    public int KvDim { get; }
    /// <summary>Number of positions that hold valid keys and values.</summary>
    public int Length { get; internal set; }

    public KvCache(int layers, int capacity, int kvDim, HugePageArena arena)
    {
        Capacity = capacity; KvDim = kvDim;
        _keys = new float*[layers];
        _values = new float*[layers];
        long bytes = (long)capacity * kvDim * sizeof(float);
        for (int l = 0; l < layers; l++)
        {
            _keys[l] = (float*)arena.Allocate(bytes, clear: false);
            _values[l] = (float*)arena.Allocate(bytes, clear: false);
        }
    }

    /// <summary>Every cached key of one layer: position p at [p * KvDim, (p + 1) * KvDim).</summary>
    public float* Keys(int layer) => _keys[layer];
    /// <summary>Every cached value of one layer, laid out as <see cref="Keys"/>.</summary>
    public float* Values(int layer) => _values[layer];

    public Span<float> Key(int layer, int pos) => Row(_keys, layer, pos);
    public Span<float> Value(int layer, int pos) => Row(_values, layer, pos);

    private Span<float> Row(float*[] rows, int layer, int pos)
    {
        if ((uint)pos >= (uint)Capacity) throw new ArgumentOutOfRangeException(nameof(pos), $"position {pos} is outside the cache [0, {Capacity})");
        return new Span<float>(rows[layer] + (long)pos * KvDim, KvDim);
    }

    /// <summary>Forgets everything: the next token is evaluated at position 0.</summary>
    public void Clear() => Length = 0;

    /// <summary>
    /// Keeps the first <paramref name="length"/> positions (undoes the latest tokens). Dropping the oldest
    /// positions instead is not possible: the cached keys carry their absolute rotary positions.
    /// </summary>
    public void Truncate(int length)
    {
        if (length < 0 || length > Length) throw new ArgumentOutOfRangeException(nameof(length));
        Length = length;
    }
}
