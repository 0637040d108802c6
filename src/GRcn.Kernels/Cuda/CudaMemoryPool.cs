// Caching allocator for CUDA device memory. Blocks are rounded up to a size class and kept on
// a per-class free list when released, so a loop that allocates the same shapes every step
// stops calling cuMemAlloc (which is slow and synchronising) after its first step.
//
// Stream order: all work of a CudaDevice is queued on its one stream, so a block released
// while kernels that use it are still queued can be handed out again at once: whatever the
// next owner queues runs after those kernels. Only giving a block back to the driver needs
// the queued work to finish first, so the pool synchronises the stream before cuMemFree.
namespace GRcn.Kernels.Cuda;

/// <summary>The raw device-memory operations the pool builds on (the driver on a GPU, a fake in tests).</summary>
internal interface IDeviceMemory
{
    /// <summary>Allocates <paramref name="bytes"/> bytes of device memory.</summary>
    /// <exception cref="CudaException">The driver failed; <see cref="CUresult.CUDA_ERROR_OUT_OF_MEMORY"/> when memory is exhausted.</exception>
    ulong Allocate(long bytes);

    /// <summary>Returns a block to the driver; the stream has been synchronised.</summary>
    void Free(ulong pointer);

    /// <summary>Waits until all work queued on the device's stream has finished.</summary>
    void Synchronize();
}

/// <summary>Size-class cache of device memory blocks over an <see cref="IDeviceMemory"/>.</summary>
internal sealed class CudaMemoryPool
{
    /// <summary>Smallest block and rounding step of small blocks (cuMemAlloc aligns to at least 256 bytes).</summary>
    public const long Granularity = 512;

    private const long SmallLimit = 64 * 1024;

    private readonly Lock _lock = new();
    private readonly Dictionary<long, Stack<ulong>> _free = [];
    private readonly List<(ulong Pointer, long Size)> _deferred = [];
    private readonly IDeviceMemory _memory;
    private long _cachedBytes;
    private long _heldBytes;

    public CudaMemoryPool(IDeviceMemory memory) => _memory = memory;

    /// <summary>
    /// Upper bound on bytes kept in the cache; a release beyond it frees the block. By default
    /// there is none: when an allocation fails the cache is emptied and the allocation retried.
    /// </summary>
    public long Limit { get; set; } = long.MaxValue;

    /// <summary>Bytes in cached blocks, not in use by any tensor.</summary>
    public long CachedBytes
    {
        get { lock (_lock) return _cachedBytes; }
    }

    /// <summary>Bytes obtained from the driver and not yet freed (in use plus cached).</summary>
    public long HeldBytes
    {
        get { lock (_lock) return _heldBytes; }
    }

    /// <summary>
    /// Size classes: multiples of 512 bytes up to 64 KiB, then four classes per power of two
    /// (at most 25 % slack), so similar shapes share blocks without wasting much memory.
    /// </summary>
    internal static long SizeClass(long bytes)
    {
        if (bytes <= Granularity) return Granularity;
        if (bytes <= SmallLimit) return (bytes + Granularity - 1) / Granularity * Granularity;
        int log = 63 - System.Numerics.BitOperations.LeadingZeroCount((ulong)(bytes - 1));
        long step = 1L << (log - 2);
        return (bytes + step - 1) / step * step;
    }

    /// <summary>A block of at least <paramref name="bytes"/> bytes; <paramref name="size"/> is its size class.</summary>
    /// <exception cref="CudaException">Device memory is exhausted even after emptying the cache.</exception>
    public ulong Rent(long bytes, out long size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        size = SizeClass(bytes);
        lock (_lock)
        {
            if (_free.TryGetValue(size, out var stack) && stack.Count > 0)
            {
                _cachedBytes -= size;
                return stack.Pop();
            }
        }
        FreeDeferred();
        ulong p;
        try
        {
            p = _memory.Allocate(size);
        }
        catch (CudaException e) when (e.Result == CUresult.CUDA_ERROR_OUT_OF_MEMORY)
        {
            Trim();
            p = _memory.Allocate(size);
        }
        lock (_lock) _heldBytes += size;
        return p;
    }

    /// <summary>
    /// Takes back a block from <see cref="Rent"/>. From a finalizer (<paramref name="finalizing"/>)
    /// no driver call is made: a block the cache cannot keep is freed by the next Rent or Trim.
    /// </summary>
    public void Return(ulong pointer, long size, bool finalizing)
    {
        lock (_lock)
        {
            if (_cachedBytes + size <= Limit)
            {
                if (!_free.TryGetValue(size, out var stack)) _free[size] = stack = new Stack<ulong>();
                stack.Push(pointer);
                _cachedBytes += size;
                return;
            }
            if (finalizing)
            {
                _deferred.Add((pointer, size));
                return;
            }
        }
        _memory.Synchronize();
        _memory.Free(pointer);
        lock (_lock) _heldBytes -= size;
    }

    /// <summary>Frees every cached block (memory of live tensors is untouched).</summary>
    public void Trim()
    {
        var blocks = new List<(ulong Pointer, long Size)>();
        lock (_lock)
        {
            foreach (var (size, stack) in _free)
                while (stack.Count > 0) blocks.Add((stack.Pop(), size));
            _free.Clear();
            _cachedBytes = 0;
            blocks.AddRange(_deferred);
            _deferred.Clear();
        }
        FreeAll(blocks);
    }

    private void FreeDeferred()
    {
        List<(ulong Pointer, long Size)> blocks;
        lock (_lock)
        {
            if (_deferred.Count == 0) return;
            blocks = [.. _deferred];
            _deferred.Clear();
        }
        FreeAll(blocks);
    }

    private void FreeAll(List<(ulong Pointer, long Size)> blocks)
    {
        if (blocks.Count == 0) return;
        _memory.Synchronize();
        for (int i = 0; i < blocks.Count; i++)
        {
            try
            {
                _memory.Free(blocks[i].Pointer);
            }
            catch
            {
                // Keep the blocks not yet freed, so a later Trim can try again.
                lock (_lock) _deferred.AddRange(blocks.Skip(i + 1));
                throw;
            }
            finally
            {
                lock (_lock) _heldBytes -= blocks[i].Size;
            }
        }
    }
}
