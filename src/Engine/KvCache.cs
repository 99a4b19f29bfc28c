using BitMoe.Kernels;

namespace BitMoe.Engine;

/// <summary>
/// Keys and values of every layer for positions [0, Capacity), written as tokens are evaluated. Head-major: a
/// layer's keys are [kv_heads][Capacity][head_dim], so one head's cached keys (and values) are a single run of
/// memory that attention reads front to back, and threads that split the heads read separate runs (position-major
/// rows made every head's slice a piece of each row, which two threads read no faster than one).
/// The memory comes from the model's <see cref="HugePageArena"/> (2 MiB pages), is not cleared (a position is
/// always written before attention reads it), so pages are touched only as the context fills, and lives as long
/// as the arena.
/// </summary>
public sealed unsafe class KvCache
{
    private readonly float*[] _keys, _values;

    public int Capacity { get; }
    public int KvHeads { get; }
    public int HeadDim { get; }
    public int KvDim => KvHeads * HeadDim;
    /// <summary>Number of positions that hold valid keys and values.</summary>
    public int Length { get; internal set; }

    public KvCache(int layers, int capacity, int kvHeads, int headDim, HugePageArena arena)
    {
        Capacity = capacity; KvHeads = kvHeads; HeadDim = headDim;
        _keys = new float*[layers];
        _values = new float*[layers];
        long bytes = (long)capacity * kvHeads * headDim * sizeof(float);
        for (int l = 0; l < layers; l++)
        {
            _keys[l] = (float*)arena.Allocate(bytes, clear: false);
            _values[l] = (float*)arena.Allocate(bytes, clear: false);
        }
    }

    /// <summary>The cached keys of one key/value head of one layer: position p at [p * HeadDim, (p + 1) * HeadDim).</summary>
    public float* Keys(int layer, int kvHead) => _keys[layer] + (long)kvHead * Capacity * HeadDim;
    /// <summary>The cached values of one key/value head, laid out as <see cref="Keys"/>.</summary>
    public float* Values(int layer, int kvHead) => _values[layer] + (long)kvHead * Capacity * HeadDim;

    /// <summary>Stores one position's key and value (each KvDim floats, head after head).</summary>
    public void Write(int layer, int pos, ReadOnlySpan<float> key, ReadOnlySpan<float> value)
    {
        if ((uint)pos >= (uint)Capacity) throw new ArgumentOutOfRangeException(nameof(pos), $"position {pos} is outside the cache [0, {Capacity})");
        if (key.Length != KvDim || value.Length != KvDim) throw new ArgumentException($"a key and a value hold {KvDim} floats");
        for (int h = 0; h < KvHeads; h++)
        {
            key.Slice(h * HeadDim, HeadDim).CopyTo(new Span<float>(Keys(layer, h) + (long)pos * HeadDim, HeadDim));
            value.Slice(h * HeadDim, HeadDim).CopyTo(new Span<float>(Values(layer, h) + (long)pos * HeadDim, HeadDim));
        }
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
