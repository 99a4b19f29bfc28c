namespace BitMoe.Engine;

/// <summary>Keys and values of every layer for positions [0, Capacity), written as tokens are evaluated.</summary>
public sealed class KvCache
{
    private readonly float[][] _keys, _values;

    public int Capacity { get; }
    public int KvDim { get; }
    /// <summary>Number of positions that hold valid keys and values.</summary>
    public int Length { get; internal set; }

    public KvCache(int layers, int capacity, int kvDim)
    {
        Capacity = capacity; KvDim = kvDim;
        _keys = new float[layers][];
        _values = new float[layers][];
        for (int l = 0; l < layers; l++)
        {
            _keys[l] = new float[(long)capacity * kvDim];
            _values[l] = new float[(long)capacity * kvDim];
        }
    }

    /// <summary>Every cached key of one layer: position p at [p * KvDim, (p + 1) * KvDim).</summary>
    public float[] Keys(int layer) => _keys[layer];
    /// <summary>Every cached value of one layer, laid out as <see cref="Keys"/>.</summary>
    public float[] Values(int layer) => _values[layer];

    public Span<float> Key(int layer, int pos) => _keys[layer].AsSpan(pos * KvDim, KvDim);
    public Span<float> Value(int layer, int pos) => _values[layer].AsSpan(pos * KvDim, KvDim);

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
