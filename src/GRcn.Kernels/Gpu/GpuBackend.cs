// The GPU backend: one partial class, one file per op family (RoiAlignGpu.cs, ...), each
// implementing that op's backend interface from GRcn.Kernels.Ops by launching the ILGPU kernels
// of kernels/NAME.cs. Arguments arrive validated and outputs pre-allocated by the public entry
// points. This file holds what every op needs: the per-device kernel cache (a kernel is compiled
// ILGPU → PTX → driver JIT on its first use and kept for the life of the device), launch
// helpers, and tensor → ArrayView conversion.
using System.Collections.Concurrent;
using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

internal sealed partial class GpuBackend
{
    private readonly Lock _loadLock = new();
    private readonly ConcurrentDictionary<string, double> _compileSeconds = new();

    public GpuBackend(GpuDevice device) => Device = device;

    /// <summary>The device whose kernels these are.</summary>
    public GpuDevice Device { get; }

    private Accelerator Accelerator => Device.Accelerator;

    /// <summary>Name of the kernel launched last (named in errors that surface at synchronisation).</summary>
    public string? LastKernel { get; private set; }

    /// <summary>Kernels loaded so far and the seconds their first use took.</summary>
    public IReadOnlyDictionary<string, double> CompileSeconds => _compileSeconds;

    /// <summary>
    /// The kernel in <paramref name="slot"/>, loaded with <paramref name="load"/> on first use.
    /// Use one slot field per kernel: <c>Kernel(ref _reluKernel, "relu", a => a.LoadAutoGroupedStreamKernel&lt;...&gt;(EltwiseKernels.Relu))</c>.
    /// </summary>
    /// <exception cref="GpuException">The kernel could not be compiled or loaded; the message names it.</exception>
    public T Kernel<T>(ref T? slot, string name, Func<Accelerator, T> load) where T : Delegate
    {
        var k = Volatile.Read(ref slot);
        if (k is not null)
        {
            LastKernel = name;
            return k;
        }
        lock (_loadLock)
        {
            if (slot is null)
            {
                Device.Enter();
                var watch = Stopwatch.StartNew();
                try
                {
                    Volatile.Write(ref slot, load(Accelerator));
                }
                catch (Exception e)
                {
                    // ILGPU leaves its context unable to load more kernels after a failed compile
                    // (a process restart is needed); the message says which kernel broke it.
                    throw new GpuException($"kernel {name} failed to compile for {Device.Name}: {e.GetType().Name}: {e.Message}", e) { Kernel = name };
                }
                _compileSeconds[name] = watch.Elapsed.TotalSeconds;
            }
        }
        LastKernel = name;
        return slot!;
    }

    /// <summary>Thread-groups of <paramref name="threads"/> covering <paramref name="count"/> items (at least one group).</summary>
    public static KernelConfig Cover(long count, int threads)
    {
        long groups = Math.Max(1, (count + threads - 1) / threads);
        if (groups > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(count), $"{count} items need {groups} groups of {threads}; at most {int.MaxValue}");
        return new KernelConfig((int)groups, threads);
    }

    /// <summary>
    /// The launches covering <paramref name="total"/> flat items, at most int.MaxValue each (an
    /// Index1D's limit), none when total is 0: <c>foreach (var (start, count) in Chunks(n)) k(count, p with { Start = start }, …)</c>.
    /// </summary>
    public static LaunchChunks Chunks(long total) => new(total);

    private Action<Index1D, ArrayView<float>, float>? _fill;

    /// <summary>Sets every element of <paramref name="y"/> to <paramref name="value"/>.</summary>
    public void Fill(ArrayView<float> y, float value)
    {
        var k = Kernel(ref _fill, "fill", a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, float>(MemoryKernels.Fill));
        foreach (var (start, count) in Chunks(y.Length)) k(count, y.SubView(start, count), value);
    }
}

/// <summary>The (start, count) launches of <see cref="GpuBackend.Chunks"/>; a struct enumerable, so a launch loop allocates nothing.</summary>
internal readonly struct LaunchChunks(long total)
{
    public Enumerator GetEnumerator() => new(total);

    public struct Enumerator(long total)
    {
        private long _next;

        public (long Start, int Count) Current { get; private set; }

        public bool MoveNext()
        {
            if (_next >= total) return false;
            Current = (_next, (int)Math.Min(int.MaxValue, total - _next));
            _next += int.MaxValue;
            return true;
        }
    }
}

/// <summary>Tensors of a GPU device as ILGPU views.</summary>
internal static class GpuTensors
{
    /// <summary>The float32 elements of a tensor on a GPU device.</summary>
    public static ArrayView<float> Floats(this Tensor t) => Bytes(t).Cast<float>();

    /// <summary>The int64 elements of a tensor on a GPU device.</summary>
    public static ArrayView<long> Longs(this Tensor t) => Bytes(t).Cast<long>();

    /// <summary>The float32 elements of an optional tensor, or an empty view.</summary>
    public static ArrayView<float> FloatsOrEmpty(this Tensor? t) => t is null ? ArrayView<float>.Empty : t.Floats();

    /// <summary>The int64 elements of an optional tensor, or an empty view.</summary>
    public static ArrayView<long> LongsOrEmpty(this Tensor? t) => t is null ? ArrayView<long>.Empty : t.Longs();

    private static ArrayView<byte> Bytes(Tensor t)
    {
        var device = (GpuDevice)t.Device;
        return device.Bytes(t.Buffer, 0, t.ByteCount);
    }
}
