using GRcn.Kernels.Cpu;

namespace GRcn.Kernels.Tests;

/// <summary>The worker pool of the CPU kernels: every item once, errors surface, nested and concurrent calls.</summary>
[Collection(AllocationCollection.Name)]
public sealed unsafe class ParallelismTests
{
    /// <summary>Cost per item well above the inline threshold, so every call below splits.</summary>
    private const long Heavy = 1 << 20;

    private static void WithThreads(int threads, Action body)
    {
        int saved = Parallelism.Threads;
        Parallelism.Threads = threads;
        try
        {
            body();
        }
        finally
        {
            Parallelism.Threads = saved;
        }
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 2)]
    [InlineData(3, 7)]
    [InlineData(4, 1000)]
    [InlineData(8, 5)]
    public void EveryItemRunsOnce(int threads, int count) => WithThreads(threads, () =>
    {
        for (int call = 0; call < 50; call++)
        {
            var hits = new int[count];
            fixed (int* h = hits)
            {
                Parallelism.For(count, Heavy, (nint)h, static (p, start, end) =>
                {
                    for (int i = start; i < end; i++) Interlocked.Increment(ref ((int*)p)[i]);
                });
            }
            Assert.All(hits, h => Assert.Equal(1, h));
        }
    });

    [Fact]
    public void AnExceptionInAChunkReachesTheCaller() => WithThreads(2, () =>
    {
        for (int failing = 0; failing < 2; failing++)
        {
            var e = Assert.Throws<InvalidOperationException>(() => Parallelism.For(2, Heavy, failing, static (f, start, end) =>
            {
                if (start == f) throw new InvalidOperationException($"chunk {f}");
            }));
            Assert.Equal($"chunk {failing}", e.Message);
        }
        // the pool still works afterwards
        int sum = 0;
        Parallelism.For(100, Heavy, (nint)(&sum), static (p, start, end) => Interlocked.Add(ref *(int*)p, end - start));
        Assert.Equal(100, sum);
    });

    [Fact]
    public void NestedAndConcurrentCallsCoverEveryItem() => WithThreads(2, () =>
    {
        const int outer = 6, inner = 40;
        var hits = new int[outer * inner];
        var callers = Enumerable.Range(0, 3).Select(_ => Task.Run(() =>
        {
            for (int call = 0; call < 20; call++)
            {
                fixed (int* h = hits)
                {
                    Parallelism.For(outer, Heavy, (nint)h, static (p, o0, o1) =>
                    {
                        for (int o = o0; o < o1; o++)
                        {
                            Parallelism.For(inner, Heavy, (p, o), static (s, i0, i1) =>
                            {
                                for (int i = i0; i < i1; i++) Interlocked.Increment(ref ((int*)s.p)[s.o * inner + i]);
                            });
                        }
                    });
                }
            }
        })).ToArray();
        Task.WaitAll(callers);
        Assert.All(hits, h => Assert.Equal(60, h));
    });
}
