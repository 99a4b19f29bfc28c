using System.Numerics.Tensors;
using BitMoe.Kernels;
using BitMoe.Quant;

namespace BitMoe.Engine;

/// <summary>
/// Keys and values of every layer for positions [0, Capacity), written as tokens are evaluated. Head-major: a
/// layer's keys are [kv_heads][Capacity][head_dim], so one head's cached keys (and values) are a single run of
/// memory that attention reads front to back, and threads that split the heads read separate runs (position-major
/// rows made every head's slice a piece of each row, which two threads read no faster than one).
/// The memory comes from the model's <see cref="HugePageArena"/> (2 MiB pages), is not cleared (a position is
/// always written before attention reads it), so pages are touched only as the context fills, and lives as long
/// as the arena.
/// Elements are float32 (<see cref="DType.F32"/>, the default: attention then computes exactly what the PyTorch
/// reference does) or IEEE half (<see cref="DType.F16"/>, llama.cpp's default cache type): half the memory, and half
/// the bytes each decoded token reads from it, for keys and values rounded to 11 significant bits.
/// </summary>
public sealed unsafe class KvCache
{
    private readonly byte*[] _keys, _values;
    private readonly float[]? _clamped;

    /// <summary>The largest finite half; F16 stores clamp to it (a key past it would become infinite, and a score NaN).</summary>
    private const float HalfMax = 65504f;

    /// <summary>F32 or F16.</summary>
    public DType ElementType { get; }

    public int Capacity { get; }
    public int KvHeads { get; }
    public int HeadDim { get; }
    public int KvDim => KvHeads * HeadDim;
    /// <summary>Number of positions that hold valid keys and values.</summary>
    public int Length { get; internal set; }

    public KvCache(int layers, int capacity, int kvHeads, int headDim, HugePageArena arena, DType elementType = DType.F32)
    {
        if (elementType is not (DType.F32 or DType.F16))
            throw new BitMoeException($"KV cache type {elementType.ToString().ToLowerInvariant()} is not supported (expected f32 or f16)");
        Capacity = capacity; KvHeads = kvHeads; HeadDim = headDim; ElementType = elementType;
        _keys = new byte*[layers];
        _values = new byte*[layers];
        long bytes = (long)capacity * kvHeads * headDim * ElementSize;
        for (int l = 0; l < layers; l++)
        {
            _keys[l] = (byte*)arena.Allocate(bytes, clear: false);
            _values[l] = (byte*)arena.Allocate(bytes, clear: false);
        }
        if (elementType == DType.F16) _clamped = new float[headDim];
    }

    /// <summary>Bytes per cached element: 4 or 2.</summary>
    public int ElementSize => DTypeInfo.Size(ElementType);

    /// <summary>Bytes one position occupies in one layer, keys and values together.</summary>
    public long BytesPerPosition => 2L * KvDim * ElementSize;

    /// <summary>
    /// The cached keys of one key/value head of one layer, elements of <see cref="ElementType"/>: position p at
    /// [p * HeadDim, (p + 1) * HeadDim).
    /// </summary>
    public void* Keys(int layer, int kvHead) => _keys[layer] + (long)kvHead * Capacity * HeadDim * ElementSize;
    /// <summary>The cached values of one key/value head, laid out as <see cref="Keys"/>.</summary>
    public void* Values(int layer, int kvHead) => _values[layer] + (long)kvHead * Capacity * HeadDim * ElementSize;

    /// <summary>Stores one position's key and value (each KvDim floats, head after head).</summary>
    public void Write(int layer, int pos, ReadOnlySpan<float> key, ReadOnlySpan<float> value)
    {
        if ((uint)pos >= (uint)Capacity) throw new ArgumentOutOfRangeException(nameof(pos), $"position {pos} is outside the cache [0, {Capacity})");
        if (key.Length != KvDim || value.Length != KvDim) throw new ArgumentException($"a key and a value hold {KvDim} floats");
        for (int h = 0; h < KvHeads; h++)
        {
            Store(key.Slice(h * HeadDim, HeadDim), (byte*)Keys(layer, h), pos);
            Store(value.Slice(h * HeadDim, HeadDim), (byte*)Values(layer, h), pos);
        }
    }

    /// <summary>One head's row at position <paramref name="pos"/> of a run: copied, or clamped to the finite halves and rounded to nearest even.</summary>
    private void Store(ReadOnlySpan<float> row, byte* run, int pos)
    {
        byte* dst = run + (long)pos * HeadDim * ElementSize;
        if (ElementType == DType.F32)
        {
            row.CopyTo(new Span<float>(dst, HeadDim));
            return;
        }
        var clamped = _clamped.AsSpan();
        TensorPrimitives.Clamp(row, -HalfMax, HalfMax, clamped);
        TensorPrimitives.ConvertToHalf(clamped, new Span<Half>(dst, HeadDim));
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
