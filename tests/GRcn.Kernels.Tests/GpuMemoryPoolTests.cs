// The GPU caching allocator's bookkeeping, run on a fake device memory that records every
// call: reuse by size class, the cache limit, emptying the cache when memory runs out,
// synchronising before any block goes back to the driver, and finalizer-safe releases.
using GRcn.Kernels.Gpu;

namespace GRcn.Kernels.Tests;

public class GpuMemoryPoolTests
{
    /// <summary>Device memory of a fixed capacity; logs "alloc N", "free P" and "sync".</summary>
    private sealed class FakeMemory(long capacity) : IDeviceMemory<ulong>
    {
        private ulong _next = 0x1_0000_0000;
        private readonly Dictionary<ulong, long> _live = [];

        public List<string> Log { get; } = [];

        public long LiveBytes => _live.Values.Sum();

        public ulong Allocate(long bytes)
        {
            if (LiveBytes + bytes > capacity) throw new OutOfMemoryException($"{bytes} bytes");
            ulong p = _next;
            _next += (ulong)bytes;
            _live[p] = bytes;
            Log.Add($"alloc {bytes}");
            return p;
        }

        public void Free(ulong pointer)
        {
            Assert.True(_live.Remove(pointer), $"free of {pointer:x}, which is not live");
            Log.Add($"free {pointer:x}");
        }

        public void Synchronize() => Log.Add("sync");
    }

    [Fact]
    public void SizeClassesCoverTheRequestWithLittleSlack()
    {
        long previous = 0;
        for (long bytes = 0; bytes < 1L << 34; bytes = bytes < 5000 ? bytes + 1 : bytes * 17 / 16)
        {
            long c = GpuMemoryPool<ulong>.SizeClass(bytes);
            Assert.True(c >= bytes && c >= GpuMemoryPool<ulong>.Granularity, $"{bytes} -> {c}");
            Assert.Equal(0, c % GpuMemoryPool<ulong>.Granularity);
            Assert.True(c >= previous, $"size classes must not shrink: {bytes} -> {c} after {previous}");
            Assert.Equal(c, GpuMemoryPool<ulong>.SizeClass(c));
            if (bytes > 64 * 1024) Assert.True(c - bytes <= bytes / 4, $"{bytes} -> {c}: more than 25 % slack");
            previous = c;
        }
        Assert.Equal(512, GpuMemoryPool<ulong>.SizeClass(0));
        Assert.Equal(1024, GpuMemoryPool<ulong>.SizeClass(513));
        Assert.Equal(65536, GpuMemoryPool<ulong>.SizeClass(65536));
        Assert.Equal(81920, GpuMemoryPool<ulong>.SizeClass(65537));
    }

    [Fact]
    public void ReleasedBlockIsReusedForTheSameSizeClass()
    {
        var memory = new FakeMemory(1 << 20);
        var pool = new GpuMemoryPool<ulong>(memory, "fake:0");
        ulong a = pool.Rent(1000, out long size);
        Assert.Equal(1024, size);
        pool.Return(a, size, finalizing: false);
        Assert.Equal(1024, pool.CachedBytes);
        Assert.Equal(a, pool.Rent(600, out size));
        Assert.Equal(1024, size);
        Assert.Equal(0, pool.CachedBytes);
        ulong b = pool.Rent(2000, out _);
        Assert.NotEqual(a, b);
        Assert.Equal(["alloc 1024", "alloc 2048"], memory.Log);
        Assert.Equal(3072, pool.HeldBytes);
    }

    [Fact]
    public void BlocksBeyondTheLimitAreFreedAfterASynchronize()
    {
        var memory = new FakeMemory(1 << 20);
        var pool = new GpuMemoryPool<ulong>(memory, "fake:0") { Limit = 2048 };
        ulong[] blocks = [pool.Rent(1024, out _), pool.Rent(1024, out _), pool.Rent(1024, out _)];
        foreach (var p in blocks) pool.Return(p, 1024, finalizing: false);
        Assert.Equal(2048, pool.CachedBytes);
        Assert.Equal(["alloc 1024", "alloc 1024", "alloc 1024", "sync", $"free {blocks[2]:x}"], memory.Log);
        Assert.Equal(2048, memory.LiveBytes);
    }

    [Fact]
    public void OutOfMemoryEmptiesTheCacheAndRetries()
    {
        var memory = new FakeMemory(4096);
        var pool = new GpuMemoryPool<ulong>(memory, "fake:0");
        ulong a = pool.Rent(2048, out _);
        ulong b = pool.Rent(2048, out _);
        pool.Return(a, 2048, finalizing: false);
        pool.Return(b, 2048, finalizing: false);
        ulong c = pool.Rent(4096, out long size);
        Assert.Equal(4096, size);
        Assert.Equal(0, pool.CachedBytes);
        Assert.Equal(4096, pool.HeldBytes);
        Assert.Equal(["alloc 2048", "alloc 2048", "sync", $"free {b:x}", $"free {a:x}", "alloc 4096"], memory.Log);
        pool.Return(c, size, finalizing: false);
    }

    [Fact]
    public void OutOfMemoryWithNothingCachedPropagates()
    {
        var pool = new GpuMemoryPool<ulong>(new FakeMemory(4096), "fake:0");
        pool.Rent(4096, out _);
        var e = Assert.Throws<OutOfMemoryException>(() => pool.Rent(100, out _));
        Assert.Equal("out of memory on fake:0: 100 bytes requested (512 with rounding), 4096 bytes held by live tensors", e.Message);
    }

    [Fact]
    public void FinalizerReleaseBeyondTheLimitIsFreedByTheNextAllocation()
    {
        var memory = new FakeMemory(1 << 20);
        var pool = new GpuMemoryPool<ulong>(memory, "fake:0") { Limit = 0 };
        ulong a = pool.Rent(512, out _);
        pool.Return(a, 512, finalizing: true);
        Assert.Equal(["alloc 512"], memory.Log); // no driver call from the finalizer thread
        Assert.Equal(512, pool.HeldBytes);
        pool.Rent(1024, out _);
        Assert.Equal(["alloc 512", "sync", $"free {a:x}", "alloc 1024"], memory.Log);
        Assert.Equal(1024, pool.HeldBytes);
    }

    [Fact]
    public void TrimSynchronizesThenFreesEveryCachedBlock()
    {
        var memory = new FakeMemory(1 << 20);
        var pool = new GpuMemoryPool<ulong>(memory, "fake:0");
        ulong a = pool.Rent(512, out _);
        ulong b = pool.Rent(100_000, out long bSize);
        ulong live = pool.Rent(512, out _);
        pool.Return(a, 512, finalizing: false);
        pool.Return(b, bSize, finalizing: true);
        pool.Trim();
        Assert.Equal(0, pool.CachedBytes);
        Assert.Equal(512, pool.HeldBytes);
        Assert.Equal("sync", memory.Log[3]);
        Assert.Equal(new[] { $"free {a:x}", $"free {b:x}" }.Order(), memory.Log.Skip(4).Order());
        Assert.Equal(512, memory.LiveBytes);
        pool.Trim();
        Assert.Equal(6, memory.Log.Count); // nothing cached: no synchronize, no free
        pool.Return(live, 512, finalizing: false);
    }
}

/// <summary>The pool keeps every block it obtained reachable until it frees it.</summary>
public class GpuMemoryPoolOwnershipTests
{
    private sealed class Block(long bytes)
    {
        public long Bytes { get; } = bytes;
    }

    private sealed class BlockMemory : IDeviceMemory<Block>
    {
        public Block Allocate(long bytes) => new(bytes);

        public void Free(Block block) { }

        public void Synchronize() { }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static WeakReference RentAndForget(GpuMemoryPool<Block> pool, bool giveBack)
    {
        var block = pool.Rent(1000, out long size);
        if (giveBack) pool.Return(block, size, finalizing: true);
        return new WeakReference(block);
    }

    [Fact]
    public void BlocksStayReachableWhileInUseOrCachedAndAreReleasedWhenFreed()
    {
        var pool = new GpuMemoryPool<Block>(new BlockMemory(), "fake:0");
        // A block whose tensor was lost without a Dispose (still in use, as far as the pool knows),
        // and one handed back from a finalizer into the cache: neither may be collected, or a block
        // with a finalizer of its own (ILGPU's buffers) would free memory the pool still hands out.
        var inUse = RentAndForget(pool, giveBack: false);
        var cached = RentAndForget(pool, giveBack: true);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        Assert.True(inUse.IsAlive);
        Assert.True(cached.IsAlive);
        pool.Trim();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        Assert.False(cached.IsAlive);
        Assert.True(inUse.IsAlive);
    }
}
