namespace BitMoe.Kernels;

/// <summary>Work on rows [start, end) of some matrix; the pool calls it once per share.</summary>
public delegate void RowJob(int start, int end);

/// <summary>
/// Persistent worker threads that split a range of rows. The caller's thread takes the first
/// share, so a pool of one thread runs everything inline. Nothing is allocated per call: callers
/// keep their <see cref="RowJob"/> delegate in a field.
/// </summary>
public sealed class WorkerPool : IDisposable
{
    private readonly Thread[] _workers;
    private readonly ManualResetEventSlim[] _go;
    private readonly ManualResetEventSlim _finished = new(false, spinCount: 2000);
    private RowJob? _job;
    private int _count, _parts, _pending;
    private volatile bool _stopping;
    private Exception? _failure;

    public int Threads { get; }

    public WorkerPool(int threads)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), "at least one thread");
        Threads = threads;
        _workers = new Thread[threads - 1];
        _go = new ManualResetEventSlim[threads - 1];
        for (int i = 0; i < _workers.Length; i++)
        {
            int share = i + 1;
            _go[i] = new ManualResetEventSlim(false, spinCount: 2000);
            _workers[i] = new Thread(() => WorkerLoop(share)) { IsBackground = true, Name = $"bitmoe-worker-{share}" };
            _workers[i].Start();
        }
    }

    /// <summary>
    /// Runs <paramref name="job"/> over [0, count) cut into contiguous shares (at most one per
    /// thread, none smaller than <paramref name="minRowsPerShare"/>) and waits for all of them.
    /// </summary>
    public void For(int count, RowJob job, int minRowsPerShare = 1)
    {
        int parts = Math.Min(Threads, Math.Max(1, count / Math.Max(1, minRowsPerShare)));
        if (parts <= 1)
        {
            job(0, count);
            return;
        }
        _job = job; _count = count; _parts = parts; _failure = null;
        _finished.Reset();
        Volatile.Write(ref _pending, parts - 1);
        for (int i = 0; i < parts - 1; i++) _go[i].Set();
        var (start, end) = Share(0);
        job(start, end);
        _finished.Wait();
        _job = null;
        if (_failure != null) throw new AggregateException(_failure);
    }

    private (int Start, int End) Share(int index) =>
        ((int)((long)_count * index / _parts), (int)((long)_count * (index + 1) / _parts));

    private void WorkerLoop(int share)
    {
        var go = _go[share - 1];
        while (true)
        {
            go.Wait();
            go.Reset();
            if (_stopping) return;
            try
            {
                var (start, end) = Share(share);
                _job!(start, end);
            }
            catch (Exception e)
            {
                _failure = e;
            }
            if (Interlocked.Decrement(ref _pending) == 0) _finished.Set();
        }
    }

    public void Dispose()
    {
        _stopping = true;
        foreach (var g in _go) g.Set();
        foreach (var w in _workers) w.Join();
        foreach (var g in _go) g.Dispose();
        _finished.Dispose();
    }
}
