// Caching allocator for CPU tensors: blocks are 64-byte aligned native memory, rounded up to
// a size class, and kept on a per-class free list when released, so a training loop that
// allocates the same shapes every step reaches a steady state with no new allocations.
using System.Runtime.InteropServices;

namespace GRcn.Kernels;

internal sealed class CpuMemoryPool
{
    private const int Alignment = 64;
    private readonly Dictionary<long, Stack<nint>> _free = new();
    private readonly Device _device;
    private long _cachedBytes;

    public CpuMemoryPool(Device device) => _device = device;

    /// <summary>Upper bound on bytes kept in the cache; a release beyond it frees the block instead.</summary>
    public long Limit { get; set; } = 4L << 30;

    public long CachedBytes => Interlocked.Read(ref _cachedBytes);

    /// <summary>
    /// Size classes: 64-byte granularity up to 4 KiB, then four classes per power of two
    /// (at most 25 % slack), so similar shapes share blocks without wasting much memory.
    /// </summary>
    internal static long SizeClass(long bytes)
    {
        if (bytes <= 0) return Alignment;
        if (bytes <= 4096) return (bytes + Alignment - 1) & ~(long)(Alignment - 1);
        int log = 63 - System.Numerics.BitOperations.LeadingZeroCount((ulong)(bytes - 1));
        long step = 1L << (log - 2);
        return (bytes + step - 1) / step * step;
    }

    public unsafe DeviceBuffer Rent(long bytes)
    {
        if (bytes < 0) throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "byte count must be non-negative");
        long size = SizeClass(bytes);
        lock (_free)
        {
            if (_free.TryGetValue(size, out var stack) && stack.Count > 0)
            {
                _cachedBytes -= size;
                return new CpuBuffer(_device, this, stack.Pop(), size);
            }
        }
        void* p;
        try
        {
            p = NativeMemory.AlignedAlloc((nuint)size, Alignment);
        }
        catch (OutOfMemoryException)
        {
            Trim();
            p = NativeMemory.AlignedAlloc((nuint)size, Alignment);
        }
        return new CpuBuffer(_device, this, (nint)p, size);
    }

    public unsafe void Return(nint pointer, long size)
    {
        lock (_free)
        {
            if (_cachedBytes + size <= Limit)
            {
                if (!_free.TryGetValue(size, out var stack)) _free[size] = stack = new Stack<nint>();
                stack.Push(pointer);
                _cachedBytes += size;
                return;
            }
        }
        NativeMemory.AlignedFree((void*)pointer);
    }

    public unsafe void Trim()
    {
        lock (_free)
        {
            foreach (var stack in _free.Values)
                while (stack.Count > 0) NativeMemory.AlignedFree((void*)stack.Pop());
            _free.Clear();
            _cachedBytes = 0;
        }
    }

    private sealed class CpuBuffer : DeviceBuffer
    {
        private readonly CpuMemoryPool _pool;
        private nint _pointer;

        public CpuBuffer(Device device, CpuMemoryPool pool, nint pointer, long bytes) : base(device, bytes)
        {
            _pool = pool;
            _pointer = pointer;
        }

        public override nint Pointer => _pointer;

        protected override void Free()
        {
            nint p = Interlocked.Exchange(ref _pointer, 0);
            if (p != 0) _pool.Return(p, Bytes);
            GC.SuppressFinalize(this);
        }

        // A tensor that was never disposed still gives its memory back.
        ~CpuBuffer()
        {
            nint p = Interlocked.Exchange(ref _pointer, 0);
            if (p != 0) _pool.Return(p, Bytes);
        }
    }
}
