// Caching allocator for CPU tensors: blocks are 64-byte aligned native memory, rounded up to
// a size class, and kept on a per-class free list when released, so a training loop that
// allocates the same shapes every step reaches a steady state with no new allocations.
// On Linux, blocks of 2 MiB and more start on a 2 MiB boundary and are advised to use
// transparent huge pages (madvise MADV_HUGEPAGE), so kernels that stride across a large tensor
// (a channel plane apart, a row of a wide matrix apart) do not miss the TLB at every step.
using System.Runtime.InteropServices;

namespace GRcn.Kernels;

internal sealed unsafe class CpuMemoryPool
{
    private const int Alignment = 64;

    /// <summary>Size and alignment of a transparent huge page (x86-64 Linux).</summary>
    internal const long HugePageBytes = 2L << 20;

    /// <summary>madvise(2) from libc.so.6, or null where there is none (not Linux, or not glibc).</summary>
    private static readonly delegate* unmanaged<nint, nuint, int, int> s_madvise = LoadMadvise();

    private const int MadvHugePage = 14;

    /// <summary>
    /// Whether blocks of at least <see cref="HugePageBytes"/> are huge-page aligned and advised
    /// (default: on where madvise exists; <c>GRCN_CPU_HUGE_PAGES=0</c> turns it off).
    /// </summary>
    internal static bool HugePages { get; } =
        s_madvise != null && Environment.GetEnvironmentVariable("GRCN_CPU_HUGE_PAGES") != "0";

    private static delegate* unmanaged<nint, nuint, int, int> LoadMadvise()
    {
        if (!OperatingSystem.IsLinux() || !NativeLibrary.TryLoad("libc.so.6", out nint libc)) return null;
        return NativeLibrary.TryGetExport(libc, "madvise", out nint f) ? (delegate* unmanaged<nint, nuint, int, int>)f : null;
    }
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

    public DeviceBuffer Rent(long bytes)
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
        bool huge = HugePages && size >= HugePageBytes;
        nuint alignment = huge ? (nuint)HugePageBytes : Alignment;
        void* p;
        try
        {
            p = NativeMemory.AlignedAlloc((nuint)size, alignment);
        }
        catch (OutOfMemoryException)
        {
            Trim();
            p = NativeMemory.AlignedAlloc((nuint)size, alignment);
        }
        // Only the whole huge pages inside the block are advised (its tail may share a page with
        // other memory). The advice is a hint: a kernel without THP refuses it (EINVAL) and the
        // block simply keeps 4 KiB pages, so the result is not an error.
        if (huge) s_madvise((nint)p, (nuint)(size & ~(HugePageBytes - 1)), MadvHugePage);
        return new CpuBuffer(_device, this, (nint)p, size);
    }

    public void Return(nint pointer, long size)
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

    public void Trim()
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
