using System.Runtime.InteropServices;

namespace BitMoe.Kernels;

/// <summary>
/// Native memory for the weights a model repacks at load (the ternary matrices in the kernels' layout),
/// handed out in 64-byte-aligned pieces from chunks that are 2 MiB aligned and, on Linux, advised to use
/// transparent huge pages. Decoding streams every weight once per token; with 4 KiB pages that is a TLB
/// miss every 4 KiB, with 2 MiB pages one per 2 MiB (measured on the bitnet-large shape: the ternary gemv
/// went from 21 to 25.5 GB/s). Everything is freed together, by <see cref="Dispose"/> or the finalizer.
/// </summary>
public sealed unsafe class HugePageArena : IDisposable
{
    private const long HugePage = 2 << 20;
    private const int Alignment = 64;

    /// <summary>Bytes reserved per chunk (a larger request gets a chunk of its own). Pages are touched only when written.</summary>
    public long ChunkBytes { get; }

    private readonly List<(IntPtr Start, long Bytes)> _chunks = [];
    private byte* _next;
    private long _left;
    private readonly object _lock = new();
    private bool _disposed;

    public HugePageArena(long chunkBytes = 64L << 20)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkBytes, HugePage);
        ChunkBytes = chunkBytes;
    }

    /// <summary>Bytes of all chunks.</summary>
    public long ReservedBytes { get { lock (_lock) return _chunks.Sum(c => c.Bytes); } }

    /// <summary>
    /// A block of <paramref name="bytes"/> bytes, 64-byte aligned, valid until the arena is disposed; zeroed unless
    /// <paramref name="clear"/> is false (then its contents are undefined and its pages untouched until written).
    /// </summary>
    public byte* Allocate(long bytes, bool clear = true)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            long need = (bytes + Alignment - 1) / Alignment * Alignment;
            if (need > _left)
            {
                long size = Math.Max(ChunkBytes, (need + HugePage - 1) / HugePage * HugePage);
                var start = (byte*)NativeMemory.AlignedAlloc((nuint)size, (nuint)HugePage);
                MemoryAdvice.UseHugePages(start, (nuint)size);
                _chunks.Add(((IntPtr)start, size));
                _next = start;
                _left = size;
            }
            byte* block = _next;
            _next += need;
            _left -= need;
            if (clear) NativeMemory.Clear(block, (nuint)bytes);
            return block;
        }
    }

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    ~HugePageArena() => Free();

    private void Free()
    {
        lock (_lock)
        {
            _disposed = true;
            foreach (var (start, _) in _chunks) NativeMemory.AlignedFree((void*)start);
            _chunks.Clear();
            _next = null;
            _left = 0;
        }
    }
}
