// The host CPU device: 64-byte-aligned native memory from a size-keyed cache, copies with
// Buffer.MemoryCopy, and the managed kernels of GRcn.Kernels.Cpu.
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using GRcn.Kernels.Cpu;

namespace GRcn.Kernels;

/// <summary>The host CPU. Kernels use AVX2/FMA where the processor has them and run on worker threads.</summary>
public sealed class CpuDevice : Device
{
    internal static readonly CpuDevice Instance = new();
    private readonly CpuBackend _backend;

    private CpuDevice()
    {
        Pool = new CpuMemoryPool(this);
        _backend = new CpuBackend();
    }

    /// <inheritdoc/>
    public override DeviceKind Kind => DeviceKind.Cpu;

    /// <inheritdoc/>
    public override string Name => "cpu";

    /// <inheritdoc/>
    public override string Description =>
        $"{Environment.ProcessorCount} logical cores, {RuntimeInformation.ProcessArchitecture}, " +
        $"AVX2 {(Avx2.IsSupported ? "yes" : "no")}, FMA {(Fma.IsSupported ? "yes" : "no")}, " +
        $"AVX-512 {(Avx512F.IsSupported ? "yes" : "no")}";

    /// <summary>Most threads <see cref="Threads"/> accepts: 8 per logical core, at least 64 (more only adds switching, and a
    /// pool of tens of thousands of threads exhausts the process).</summary>
    public static int MaxThreads { get; } = Math.Max(64, 8 * Environment.ProcessorCount);

    /// <summary>Threads the kernels use (defaults to the number of logical cores).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is below 1 or above <see cref="MaxThreads"/>.</exception>
    public int Threads
    {
        get => Parallelism.Threads;
        set
        {
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, MaxThreads);
            Parallelism.Threads = value;
        }
    }

    /// <summary>The cache of freed tensor memory.</summary>
    internal CpuMemoryPool Pool { get; }

    /// <summary>Bytes held in the allocation cache, not in use by any tensor.</summary>
    public long CachedBytes => Pool.CachedBytes;

    /// <summary>Frees every cached block (memory of live tensors is untouched).</summary>
    public void TrimCache() => Pool.Trim();

    internal override object Backend => _backend;

    internal override DeviceBuffer Allocate(long bytes) => Pool.Rent(bytes);

    internal override unsafe void CopyFromHost(void* source, DeviceBuffer destination, long offset, long bytes) =>
        Buffer.MemoryCopy(source, (byte*)destination.Pointer + offset, bytes, bytes);

    internal override unsafe void CopyToHost(DeviceBuffer source, long offset, void* destination, long bytes) =>
        Buffer.MemoryCopy((byte*)source.Pointer + offset, destination, bytes, bytes);

    internal override unsafe void Clear(DeviceBuffer buffer, long offset, long bytes) =>
        NativeMemory.Clear((byte*)buffer.Pointer + offset, (nuint)bytes);

    internal override unsafe void Fill(DeviceBuffer buffer, long offset, long count, float value)
    {
        float* p = (float*)((byte*)buffer.Pointer + offset);
        while (count > 0)
        {
            int chunk = (int)Math.Min(count, int.MaxValue);
            new Span<float>(p, chunk).Fill(value);
            p += chunk;
            count -= chunk;
        }
    }

    internal override unsafe void Copy(DeviceBuffer source, long sourceOffset, DeviceBuffer destination, long destinationOffset, long bytes) =>
        Buffer.MemoryCopy((byte*)source.Pointer + sourceOffset, (byte*)destination.Pointer + destinationOffset, bytes, bytes);

    /// <inheritdoc/>
    public override void Synchronize() { }
}
