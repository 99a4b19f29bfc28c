using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace BitMoe.Kernels;

/// <summary>
/// Measures the machine's memory read bandwidth: the physical limit of decoding, which reads every
/// active weight once per token (docs/performance.md). A buffer much larger than the last-level cache
/// (1 GiB by default) is written once, then read end to end with the widest vector loads the CPU has
/// (four independent accumulators, so the loop waits on memory, not on adds), split into contiguous
/// shares over <c>threads</c> threads of a <see cref="WorkerPool"/>. The result is the best of a few
/// passes (the least disturbed one on a shared machine), in GB/s (10^9 bytes per second).
/// One 1 GiB pass takes about 0.1 s at 10 GB/s; writing the buffer (page faults) takes longer than a pass.
/// </summary>
public sealed unsafe class MemoryBandwidth : IDisposable
{
    /// <summary>1 GiB: far past the L3 of any current CPU (260 MiB on the development machine).</summary>
    public const long DefaultBytes = 1L << 30;

    private const int ChunkBytes = 1 << 20;
    private const int VectorBytes = 64;

    private byte* _buffer;
    private readonly HugePageArena _arena = new();
    private readonly long _chunks;
    private long _sum;
    private WorkerPool? _pool;
    private RowJob? _job;

    /// <summary>Bytes read per pass (a whole number of 1 MiB chunks).</summary>
    public long Bytes { get; }

    /// <summary>Allocates and writes <paramref name="bytes"/> bytes (rounded down to whole MiB, at least 1 MiB).</summary>
    public MemoryBandwidth(long bytes = DefaultBytes)
    {
        _chunks = Math.Max(1, bytes / ChunkBytes);
        Bytes = _chunks * ChunkBytes;
        // 2 MiB pages, from the same arena as the engine's weights and KV cache: with 4 KiB pages the best pass read
        // 2-5% less here, and the bound would flatter the engine by as much.
        _buffer = _arena.Allocate(Bytes, clear: false);
        // Non-zero contents: every page really backed, and no shared zero page that reads from cache.
        for (long c = 0; c < _chunks; c++) new Span<byte>(_buffer + c * ChunkBytes, ChunkBytes).Fill((byte)(c * 31 + 7));
    }

    /// <summary>
    /// Read bandwidth in GB/s with <paramref name="threads"/> threads: the best of <paramref name="passes"/>
    /// passes over the whole buffer (after one untimed pass that warms the threads and the TLB).
    /// </summary>
    public double Measure(int threads, int passes = 5)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(passes, 1);
        ObjectDisposedException.ThrowIf(_buffer == null, this);
        using var pool = new WorkerPool(threads);
        _pool = pool;
        _job ??= ReadChunks;
        int count = (int)_chunks;
        double best = double.MaxValue;
        try
        {
            Pass(count);
            for (int p = 0; p < passes; p++)
            {
                long t0 = Stopwatch.GetTimestamp();
                Pass(count);
                best = Math.Min(best, Stopwatch.GetElapsedTime(t0).TotalSeconds);
            }
        }
        finally { _pool = null; }
        return Bytes / best / 1e9;
    }

    /// <summary>Convenience: allocates, measures with <paramref name="threads"/> threads, frees.</summary>
    public static double MeasureOnce(int threads, long bytes = DefaultBytes, int passes = 5)
    {
        using var m = new MemoryBandwidth(bytes);
        return m.Measure(threads, passes);
    }

    /// <summary>The sum of every 64-bit word of the buffer, from the last pass (keeps the reads observable).</summary>
    public ulong Checksum { get; private set; }

    private void Pass(int count)
    {
        _sum = 0;
        _pool!.For(count, _job!, minRowsPerShare: 1);
        Checksum = (ulong)Volatile.Read(ref _sum);
    }

    private void ReadChunks(int start, int end)
    {
        ulong sum = Read(_buffer + (long)start * ChunkBytes, (long)(end - start) * ChunkBytes);
        Interlocked.Add(ref _sum, (long)sum);
    }

    /// <summary>Sums <paramref name="length"/> bytes (a multiple of 256) as 64-bit lanes with four independent accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static ulong Read(byte* p, long length)
    {
        byte* end = p + length;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<ulong> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; p < end; p += 4 * VectorBytes)
            {
                a0 += Vector512.Load((ulong*)p);
                a1 += Vector512.Load((ulong*)(p + 64));
                a2 += Vector512.Load((ulong*)(p + 128));
                a3 += Vector512.Load((ulong*)(p + 192));
            }
            return Vector512.Sum(a0 + a1 + a2 + a3);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<ulong> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; p < end; p += 128)
            {
                a0 += Vector256.Load((ulong*)p);
                a1 += Vector256.Load((ulong*)(p + 32));
                a2 += Vector256.Load((ulong*)(p + 64));
                a3 += Vector256.Load((ulong*)(p + 96));
            }
            return Vector256.Sum(a0 + a1 + a2 + a3);
        }
        {
            Vector128<ulong> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; p < end; p += 64)
            {
                a0 += Vector128.Load((ulong*)p);
                a1 += Vector128.Load((ulong*)(p + 16));
                a2 += Vector128.Load((ulong*)(p + 32));
                a3 += Vector128.Load((ulong*)(p + 48));
            }
            return Vector128.Sum(a0 + a1 + a2 + a3);
        }
    }

    public void Dispose()
    {
        if (_buffer == null) return;
        _arena.Dispose();
        _buffer = null;
    }
}
