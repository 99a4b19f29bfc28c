using System.Diagnostics;

namespace BitMoe.Kernels;

/// <summary>Work on rows [start, end) of some matrix; the pool calls it once per share.</summary>
public delegate void RowJob(int start, int end);

/// <summary>
/// Persistent worker threads that split a range of rows. The caller's thread takes the first
/// share, so a pool of one thread runs everything inline. Nothing is allocated per call: callers
/// keep their <see cref="RowJob"/> delegate in a field.
///
/// Decoding one token hands out ~200 jobs of 10-100 microseconds each, so waking a thread through the
/// kernel (tens of microseconds) would cost as much as the work. Idle workers therefore spin on a job
/// counter for <see cref="SpinMicroseconds"/> after their last job (what llama.cpp's OpenMP threads do)
/// and only then sleep on an event; the caller sets the event only for workers that went to sleep.
/// </summary>
public sealed class WorkerPool : IDisposable
{
    /// <summary>How long an idle worker polls for the next job before it sleeps.</summary>
    public static int SpinMicroseconds { get; set; } = 2000;

    private readonly Thread[] _workers;
    private readonly ManualResetEventSlim[] _wake;
    private readonly int[] _sleeping;
    private RowJob? _job;
    private int _count, _parts, _pieces, _pending;
    // per share: the next piece of its own run (low 32 bits) and the end of what is left of that run (high 32 bits)
    private readonly long[] _runs;
    private int _generation;
    private volatile bool _stopping;
    private Exception? _failure;

    public int Threads { get; }

    public WorkerPool(int threads)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), "at least one thread");
        Threads = threads;
        _workers = new Thread[threads - 1];
        _wake = new ManualResetEventSlim[threads - 1];
        _sleeping = new int[threads - 1];
        _runs = new long[threads];
        for (int i = 0; i < _workers.Length; i++)
        {
            int share = i + 1;
            _wake[i] = new ManualResetEventSlim(false, spinCount: 0);
            _workers[i] = new Thread(() => WorkerLoop(share)) { IsBackground = true, Name = $"bitmoe-worker-{share}" };
            _workers[i].Start();
        }
    }

    /// <summary>
    /// Runs <paramref name="job"/> over [0, count) cut into contiguous pieces (none smaller than
    /// <paramref name="minRowsPerShare"/>; at most one thread per such share) and waits for all of them.
    /// </summary>
    public void For(int count, RowJob job, int minRowsPerShare = 1)
    {
        int parts = Math.Min(Threads, Math.Max(1, count / Math.Max(1, minRowsPerShare)));
        // a job that itself splits work (an MoE expert run on one thread while another runs on the next) does it inline
        if (parts <= 1 || _insideJob)
        {
            job(0, count);
            return;
        }
        // More pieces than threads: share p owns a run of consecutive pieces and works through it front to back (one
        // stream through memory), then takes what is left of the other runs from their ends. A thread that runs
        // slower (a busy core, a worker that was asleep) ends up with fewer pieces instead of holding everyone up.
        // Handing out pieces from one shared counter instead started a new stream at every piece: decoding at 2
        // threads took 1.02-1.05x as long (docs/performance.md, change 24).
        int pieces = Math.Max(parts, Math.Min(parts * PiecesPerThread, count / Math.Max(1, minRowsPerShare)));
        _job = job; _count = count; _parts = parts; _pieces = pieces; _failure = null;
        for (int p = 0; p < parts; p++) _runs[p] = Run(pieces * p / parts, pieces * (p + 1) / parts);
        // Every worker reports back, even one without a share this time, so that none can still be
        // reading this job's fields when the next job overwrites them.
        Volatile.Write(ref _pending, _workers.Length);
        // A full fence: a worker that has just announced it sleeps is either seen here or sees the new job.
        Interlocked.Increment(ref _generation);
        for (int i = 0; i < _workers.Length; i++)
            if (Volatile.Read(ref _sleeping[i]) != 0) _wake[i].Set();
        try
        {
            RunPieces(job, 0);
        }
        catch (Exception e)
        {
            _failure = e; // reported below, once every worker has stopped touching this job
        }
        var spin = new SpinWait();
        while (Volatile.Read(ref _pending) != 0) spin.SpinOnce(sleep1Threshold: -1);
        _job = null;
        if (_failure != null) throw new AggregateException(_failure);
    }

    /// <summary>Pieces per participating thread that <see cref="For"/> cuts the rows into.</summary>
    public const int PiecesPerThread = 4;

    private void RunPieces(RowJob job, int share)
    {
        int pieces = _pieces, count = _count, parts = _parts;
        int piece;
        _insideJob = true;
        try
        {
            while ((piece = TakeFront(share)) >= 0) RunPiece(job, piece, pieces, count);
            for (int i = 1; i < parts; i++)
            {
                int other = (share + i) % parts;
                while ((piece = TakeBack(other)) >= 0) RunPiece(job, piece, pieces, count);
            }
        }
        finally
        {
            _insideJob = false;
        }
    }

    /// <summary>Rows [count * piece / pieces, count * (piece + 1) / pieces): piece <paramref name="piece"/> of <paramref name="pieces"/>.</summary>
    private static void RunPiece(RowJob job, int piece, int pieces, int count) =>
        job((int)((long)count * piece / pieces), (int)((long)count * (piece + 1) / pieces));

    private static long Run(int next, int end) => (uint)next | ((long)end << 32);

    /// <summary>The next piece of share <paramref name="p"/>'s run, or -1 when none is left.</summary>
    private int TakeFront(int p)
    {
        while (true)
        {
            long v = Volatile.Read(ref _runs[p]);
            int next = (int)v, end = (int)(v >> 32);
            if (next >= end) return -1;
            if (Interlocked.CompareExchange(ref _runs[p], Run(next + 1, end), v) == v) return next;
        }
    }

    /// <summary>The last piece of share <paramref name="p"/>'s run, or -1 when none is left.</summary>
    private int TakeBack(int p)
    {
        while (true)
        {
            long v = Volatile.Read(ref _runs[p]);
            int next = (int)v, end = (int)(v >> 32);
            if (next >= end) return -1;
            if (Interlocked.CompareExchange(ref _runs[p], Run(next, end - 1), v) == v) return end - 1;
        }
    }

    /// <summary>Whether this thread is running a piece of some pool's job (nested <see cref="For"/> calls then run inline).</summary>
    [ThreadStatic] private static bool _insideJob;

    private void WorkerLoop(int share)
    {
        int seen = 0;
        while (true)
        {
            seen = WaitForJob(share - 1, seen);
            if (_stopping) return;
            if (share < _parts)
            {
                try
                {
                    RunPieces(_job!, share);
                }
                catch (Exception e)
                {
                    _failure = e;
                }
            }
            Interlocked.Decrement(ref _pending);
        }
    }

    /// <summary>Returns the new generation once it differs from <paramref name="seen"/>: polls first, then sleeps.</summary>
    private int WaitForJob(int worker, int seen)
    {
        long deadline = Stopwatch.GetTimestamp() + SpinMicroseconds * Stopwatch.Frequency / 1_000_000;
        int polls = 0;
        while (true)
        {
            int g = Volatile.Read(ref _generation);
            if (g != seen || _stopping) return g;
            Thread.SpinWait(8);
            if ((++polls & 63) == 0 && Stopwatch.GetTimestamp() > deadline) break;
        }
        var wake = _wake[worker];
        while (true)
        {
            wake.Reset();
            Interlocked.Exchange(ref _sleeping[worker], 1); // full fence before re-reading the generation
            int g = Volatile.Read(ref _generation);
            if (g != seen || _stopping)
            {
                Volatile.Write(ref _sleeping[worker], 0);
                return g;
            }
            wake.Wait();
            Volatile.Write(ref _sleeping[worker], 0);
        }
    }

    public void Dispose()
    {
        _stopping = true;
        for (int i = 0; i < _wake.Length; i++) _wake[i].Set();
        foreach (var w in _workers) w.Join();
        foreach (var g in _wake) g.Dispose();
    }
}
