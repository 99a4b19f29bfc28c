using BitMoe.Kernels;

namespace BitMoe.Tests.Kernels;

public class WorkerPoolTests
{
    [Theory]
    [InlineData(1, 10)] [InlineData(2, 1)] [InlineData(2, 7)] [InlineData(3, 1000)] [InlineData(4, 5)]
    public void EveryRowIsVisitedExactlyOnce(int threads, int count)
    {
        using var pool = new WorkerPool(threads);
        var hits = new int[count];
        for (int repeat = 0; repeat < 50; repeat++)
            pool.For(count, (s, e) => { for (int i = s; i < e; i++) Interlocked.Increment(ref hits[i]); });
        Assert.All(hits, h => Assert.Equal(50, h));
    }

    [Fact]
    public void ThreadsWorkThroughTheirOwnRunsInOrderAndTakeOverASlowThreadsRest()
    {
        using var pool = new WorkerPool(2);
        int caller = Environment.CurrentManagedThreadId;
        const int count = 64; // 8 pieces of 8 rows: the caller's run is [0, 32), the worker's [32, 64)
        var hits = new int[count];
        var callerPieces = new List<int>();
        pool.For(count, (s, e) =>
        {
            for (int i = s; i < e; i++) Interlocked.Increment(ref hits[i]);
            if (Environment.CurrentManagedThreadId == caller) lock (callerPieces) callerPieces.Add(s);
            else Thread.Sleep(100); // a slow worker: the caller finishes its own run, then takes the worker's from the end
        });
        Assert.All(hits, h => Assert.Equal(1, h));
        Assert.Equal([0, 8, 16, 24], callerPieces.Take(4));
        Assert.True(callerPieces.Count >= 5, $"the caller ran {callerPieces.Count} of 8 pieces");
        Assert.Equal(callerPieces.Skip(4).OrderByDescending(s => s), callerPieces.Skip(4));
    }

    [Fact]
    public void AWorkerFailureReachesTheCaller()
    {
        using var pool = new WorkerPool(2);
        Assert.Throws<AggregateException>(() => pool.For(10, (s, e) => { if (s > 0) throw new InvalidOperationException("boom"); }));
        pool.For(10, (_, _) => { }); // the pool still works afterwards
    }
}
