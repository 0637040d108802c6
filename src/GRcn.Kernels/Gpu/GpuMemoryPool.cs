// Caching allocator for GPU memory (a CUDA device or the emulator). Blocks are rounded up to a
// size class and kept on a per-class free list when released, so a loop that allocates the
// same shapes every step stops asking the driver (slow, and synchronising) after its first step.
//
// Stream order: all work of a GpuDevice is queued on its one stream, so a block released while
// kernels that use it are still queued can be handed out again at once: whatever the next owner
// queues runs after those kernels. Only giving a block back to the driver needs the queued work
// to finish first, so the pool synchronises the stream before freeing.
//
// The pool owns every block it obtained until it frees it (a strong reference in _owned): a block
// object with a finalizer of its own (ILGPU's buffers free their memory when finalized) must never
// become unreachable while a tensor uses it or while it is cached, or a tensor finalized in the
// same collection would hand the cache a block whose memory was already freed.
namespace GRcn.Kernels.Gpu;

/// <summary>The raw device-memory operations the pool builds on (ILGPU on a device, a fake in tests).</summary>
internal interface IDeviceMemory<TBlock> where TBlock : notnull
{
    /// <summary>Allocates <paramref name="bytes"/> bytes of device memory.</summary>
    /// <exception cref="OutOfMemoryException">Device memory is exhausted.</exception>
    TBlock Allocate(long bytes);

    /// <summary>Returns a block to the driver; the stream has been synchronised.</summary>
    void Free(TBlock block);

    /// <summary>Waits until all work queued on the device's stream has finished.</summary>
    void Synchronize();
}

/// <summary>Size-class cache of device memory blocks over an <see cref="IDeviceMemory{TBlock}"/>.</summary>
internal sealed class GpuMemoryPool<TBlock> where TBlock : notnull
{
    /// <summary>Smallest block and rounding step of small blocks (cuMemAlloc aligns to at least 256 bytes).</summary>
    public const long Granularity = 512;

    private const long SmallLimit = 64 * 1024;

    private readonly Lock _lock = new();
    private readonly Dictionary<long, Stack<TBlock>> _free = [];
    private readonly List<(TBlock Block, long Size)> _deferred = [];
    private readonly HashSet<TBlock> _owned = [];
    private readonly IDeviceMemory<TBlock> _memory;
    private readonly string _deviceName;
    private long _cachedBytes;
    private long _heldBytes;

    public GpuMemoryPool(IDeviceMemory<TBlock> memory, string deviceName)
    {
        _memory = memory;
        _deviceName = deviceName;
    }

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
    /// <exception cref="OutOfMemoryException">Device memory is exhausted even after emptying the cache; the message gives the size asked for.</exception>
    public TBlock Rent(long bytes, out long size)
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
        TBlock block;
        try
        {
            block = _memory.Allocate(size);
        }
        catch (OutOfMemoryException)
        {
            Trim();
            try
            {
                block = _memory.Allocate(size);
            }
            catch (OutOfMemoryException e)
            {
                throw new OutOfMemoryException(
                    $"out of memory on {_deviceName}: {bytes} bytes requested ({size} with rounding), {HeldBytes} bytes held by live tensors", e);
            }
        }
        lock (_lock)
        {
            _heldBytes += size;
            _owned.Add(block);
        }
        return block;
    }

    /// <summary>
    /// Takes back a block from <see cref="Rent"/>. From a finalizer (<paramref name="finalizing"/>)
    /// no driver call is made: a block the cache cannot keep is freed by the next Rent or Trim.
    /// </summary>
    public void Return(TBlock block, long size, bool finalizing)
    {
        lock (_lock)
        {
            if (_cachedBytes + size <= Limit)
            {
                if (!_free.TryGetValue(size, out var stack)) _free[size] = stack = new Stack<TBlock>();
                stack.Push(block);
                _cachedBytes += size;
                return;
            }
            if (finalizing)
            {
                _deferred.Add((block, size));
                return;
            }
        }
        _memory.Synchronize();
        _memory.Free(block);
        lock (_lock)
        {
            _heldBytes -= size;
            _owned.Remove(block);
        }
    }

    /// <summary>Frees every cached block (memory of live tensors is untouched).</summary>
    public void Trim()
    {
        var blocks = new List<(TBlock Block, long Size)>();
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
        List<(TBlock Block, long Size)> blocks;
        lock (_lock)
        {
            if (_deferred.Count == 0) return;
            blocks = [.. _deferred];
            _deferred.Clear();
        }
        FreeAll(blocks);
    }

    private void FreeAll(List<(TBlock Block, long Size)> blocks)
    {
        if (blocks.Count == 0) return;
        _memory.Synchronize();
        for (int i = 0; i < blocks.Count; i++)
        {
            try
            {
                _memory.Free(blocks[i].Block);
            }
            catch
            {
                // Keep the blocks not yet freed, so a later Trim can try again.
                lock (_lock) _deferred.AddRange(blocks.Skip(i + 1));
                throw;
            }
            finally
            {
                lock (_lock)
                {
                    _heldBytes -= blocks[i].Size;
                    _owned.Remove(blocks[i].Block);
                }
            }
        }
    }
}
