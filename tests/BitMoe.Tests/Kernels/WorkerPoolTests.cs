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
    public void AWorkerFailureReachesTheCaller()
    {
        using var pool = new WorkerPool(2);
        Assert.Throws<AggregateException>(() => pool.For(10, (s, e) => { if (s > 0) throw new InvalidOperationException("boom"); }));
        pool.For(10, (_, _) => { }); // the pool still works afterwards
    }
}
