// A GPU device on ILGPU: an NVIDIA GPU (cuda:N, ILGPU's CUDA accelerator: kernels compiled to
// PTX at first use and JIT-compiled by the driver) or the emulator (ILGPU's CPU accelerator
// emulating an NVIDIA GPU: warps of 32, groups up to 1024 threads, shared memory, barriers,
// atomics and shuffles, running exactly the kernels that cuda runs, slowly). Each device has one
// stream that all of its work is queued on (work runs in the order it was asked for), a caching
// allocator, and copies, fills and clears on that stream. Host data is complete when a copy
// returns: copies to and from the host synchronise the stream.
using System.Runtime.InteropServices;
using GRcn.Kernels.Gpu;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace GRcn.Kernels;

/// <summary>
/// A GPU: an NVIDIA GPU (<c>cuda:N</c>) or the emulated NVIDIA GPU (<c>emulator</c>), both running
/// the same ILGPU kernels. Get one with <see cref="Device.Cuda"/> or <see cref="Device.Emulator"/>;
/// there is one instance per device, for the life of the process.
/// </summary>
public sealed class GpuDevice : Device
{
    private static readonly Lock s_lock = new();
    private static readonly Dictionary<int, GpuDevice> s_cuda = [];
    private static Context? s_cudaContext;
    private static GpuDevice? s_emulator;

    private readonly GpuBackend _backend;

    private GpuDevice(DeviceKind kind, string name, Context context, Accelerator accelerator, string model)
    {
        Kind = kind;
        Name = name;
        Context = context;
        Accelerator = accelerator;
        ModelName = model;
        Pool = new GpuMemoryPool<MemoryBuffer1D<byte, Stride1D.Dense>>(new AcceleratorMemory(this), name);
        _backend = new GpuBackend(this);
    }

    /// <inheritdoc/>
    public override DeviceKind Kind { get; }

    /// <inheritdoc/>
    public override string Name { get; }

    /// <summary>The GPU's model name, e.g. <c>NVIDIA H100 80GB HBM3</c>; for the emulator, what it emulates.</summary>
    public string ModelName { get; }

    /// <summary>Compute capability (major.minor) of a CUDA device, e.g. 9.0 for Hopper; null for the emulator.</summary>
    public Version? ComputeCapability =>
        Accelerator is CudaAccelerator c ? new Version(c.Architecture.Major, c.Architecture.Minor) : null;

    /// <summary>Number of streaming multiprocessors (emulated ones for the emulator).</summary>
    public int MultiprocessorCount => Accelerator.NumMultiprocessors;

    /// <summary>Device memory in bytes (for the emulator: host memory, unbounded).</summary>
    public long TotalMemory => Accelerator.MemorySize;

    /// <summary>Threads of a warp (32 on NVIDIA GPUs and the emulator).</summary>
    public int WarpSize => Accelerator.WarpSize;

    /// <inheritdoc/>
    public override string Description => Accelerator is CudaAccelerator c
        ? $"{ModelName}, compute capability {ComputeCapability}, {MultiprocessorCount} SMs, " +
          $"{TotalMemory / (double)(1L << 30):0.0} GiB, CUDA driver {c.DriverVersion}, PTX {c.InstructionSet} via ILGPU"
        : $"{ModelName}: ILGPU's CPU accelerator, warps of {WarpSize}, groups up to {Accelerator.MaxNumThreadsPerGroup} threads, " +
          $"{MultiprocessorCount} multiprocessors (runs the cuda kernels on the host, slowly: for tests and debugging)";

    /// <summary>
    /// Whether backward kernels that would scatter with float atomics (the input gradients of RoI
    /// pooling, RoI Align and max pooling) use their deterministic form instead, a gather:
    /// bit-identical gradients run to run, at some cost in speed for the RoI ops (see docs/gpu.md).
    /// Default true. Every other op is deterministic either way.
    /// </summary>
    public bool DeterministicBackward { get; set; } = true;

    /// <summary>Bytes held in the allocation cache, not in use by any tensor.</summary>
    public long CachedBytes => Pool.CachedBytes;

    /// <summary>Bytes obtained from the driver and not yet freed (in use plus cached).</summary>
    public long HeldBytes => Pool.HeldBytes;

    /// <summary>Upper bound on cached bytes (default: none; the cache is emptied when an allocation fails).</summary>
    public long CacheLimit
    {
        get => Pool.Limit;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            Pool.Limit = value;
        }
    }

    /// <summary>Frees every cached block (memory of live tensors is untouched).</summary>
    public void TrimCache() => Pool.Trim();

    /// <summary>Kernels compiled so far on this device, and the seconds their first use took (compile and load).</summary>
    public IReadOnlyDictionary<string, double> CompiledKernels => _backend.CompileSeconds;

    internal Context Context { get; }

    internal Accelerator Accelerator { get; }

    internal GpuMemoryPool<MemoryBuffer1D<byte, Stride1D.Dense>> Pool { get; }

    internal override object Backend => _backend;

    internal GpuBackend Kernels => _backend;

    /// <summary>The CUDA device with the given ordinal, created on first use.</summary>
    /// <exception cref="PlatformNotSupportedException">No driver, no such device, or an unsupported one; the message says which.</exception>
    internal static GpuDevice GetCuda(int ordinal)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ordinal);
        lock (s_lock)
        {
            if (s_cuda.TryGetValue(ordinal, out var device)) return device;
            if (!NativeLibrary.TryLoad(OperatingSystem.IsWindows() ? "nvcuda.dll" : "libcuda.so.1", out nint lib))
                throw new PlatformNotSupportedException(
                    $"{(OperatingSystem.IsWindows() ? "nvcuda.dll" : "libcuda.so.1")} not found: install the NVIDIA driver");
            NativeLibrary.Free(lib);
            Context context;
            try
            {
                context = s_cudaContext ??= Context.Create(b => KernelOptions(b.Cuda()));
            }
            catch (Exception e)
            {
                throw new PlatformNotSupportedException($"the CUDA driver could not be initialised: {e.Message}", e);
            }
            var devices = context.GetCudaDevices();
            if (devices.Count == 0)
            {
                var error = CudaAPI.CurrentAPI.GetDeviceCount(out int count);
                throw new PlatformNotSupportedException(error == CudaError.CUDA_SUCCESS
                    ? $"the NVIDIA driver reports {count} CUDA devices that ILGPU can use"
                    : $"the CUDA driver failed to initialise: {error} ({CudaAPI.CurrentAPI.GetErrorString(error)})");
            }
            if (ordinal >= devices.Count)
                throw new PlatformNotSupportedException($"CUDA device {ordinal} requested but {devices.Count} present");
            var cuda = devices[ordinal];
            if (cuda.Architecture is null || cuda.Architecture.Value < CudaArchitecture.SM_70)
                throw new PlatformNotSupportedException(
                    $"unsupported GPU {cuda.Name}: compute capability {(cuda.Architecture?.ToString() ?? "unknown to ILGPU 1.5.3")}; " +
                    "GRcn.Kernels needs 7.0 (Volta) or newer");
            Accelerator accelerator;
            try
            {
                accelerator = cuda.CreateCudaAccelerator(context);
            }
            catch (Exception e)
            {
                throw new PlatformNotSupportedException($"CUDA device {ordinal} ({cuda.Name}) could not be opened: {e.Message}", e);
            }
            device = new GpuDevice(DeviceKind.Cuda, $"cuda:{ordinal}", context, accelerator, cuda.Name);
            s_cuda[ordinal] = device;
            return device;
        }
    }

    /// <summary>
    /// The ILGPU context options every device (and the PTX compile test) uses: ILGPU.Algorithms'
    /// math intrinsics, and float32 math kept as written (no fast-math rewrites).
    /// </summary>
    internal static Context.Builder KernelOptions(Context.Builder builder) => builder.EnableAlgorithms().Math(MathMode.Default);

    /// <summary>The emulated NVIDIA GPU, created on first use.</summary>
    internal static GpuDevice GetEmulator()
    {
        lock (s_lock)
        {
            if (s_emulator is not null) return s_emulator;
            var context = Context.Create(b => KernelOptions(b.CPU(CPUDeviceKind.Nvidia)));
            var accelerator = context.GetCPUDevice(0).CreateAccelerator(context);
            return s_emulator = new GpuDevice(DeviceKind.Emulator, "emulator", context, accelerator, "emulated NVIDIA GPU");
        }
    }

    /// <summary>Makes this device's accelerator current on the calling thread (ILGPU's CUDA calls need its context).</summary>
    internal void Enter()
    {
        if (!ReferenceEquals(Accelerator.Current, Accelerator)) Accelerator.Bind();
    }

    /// <inheritdoc/>
    /// <exception cref="GpuException">A kernel queued since the last synchronisation failed; the message names the last kernel launched.</exception>
    public override void Synchronize()
    {
        Enter();
        try
        {
            Accelerator.Synchronize();
        }
        catch (Exception e) when (e is not GpuException)
        {
            throw new GpuException($"{Name}: work queued on the device failed (last kernel launched: {_backend.LastKernel ?? "none"}): {e.Message}", e);
        }
    }

    internal override DeviceBuffer Allocate(long bytes)
    {
        Enter();
        var block = Pool.Rent(bytes, out long size);
        return new GpuBuffer(this, block, size);
    }

    internal override unsafe void CopyFromHost(void* source, DeviceBuffer destination, long offset, long bytes)
    {
        var view = Bytes(destination, offset, bytes);
        if (bytes == 0) return;
        Enter();
        // Synchronous: the caller may reuse or free the host memory as soon as this returns.
        view.CopyFromCPU(Accelerator.DefaultStream, ref *(byte*)source, bytes);
        Synchronize();
    }

    internal override unsafe void CopyToHost(DeviceBuffer source, long offset, void* destination, long bytes)
    {
        var view = Bytes(source, offset, bytes);
        if (bytes == 0) return;
        Enter();
        view.CopyToCPU(Accelerator.DefaultStream, ref *(byte*)destination, bytes);
        Synchronize();
    }

    internal override void Clear(DeviceBuffer buffer, long offset, long bytes)
    {
        var view = Bytes(buffer, offset, bytes);
        if (bytes == 0) return;
        Enter();
        view.MemSetToZero(Accelerator.DefaultStream);
    }

    internal override void Fill(DeviceBuffer buffer, long offset, long count, float value)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (offset % sizeof(float) != 0) throw new ArgumentException($"float32 fill at byte offset {offset} is not 4-byte aligned", nameof(offset));
        var view = Bytes(buffer, offset, count * sizeof(float));
        if (count == 0) return;
        _backend.Fill(view.Cast<float>(), value);
    }

    internal override void Copy(DeviceBuffer source, long sourceOffset, DeviceBuffer destination, long destinationOffset, long bytes)
    {
        var from = Bytes(source, sourceOffset, bytes);
        var to = Bytes(destination, destinationOffset, bytes);
        if (bytes == 0) return;
        Enter();
        from.CopyTo(Accelerator.DefaultStream, to);
    }

    /// <summary>The bytes [offset, offset + bytes) of a buffer of this device, after checking the range.</summary>
    internal ArrayView<byte> Bytes(DeviceBuffer buffer, long offset, long bytes)
    {
        if (buffer.Device != this)
            throw new ArgumentException($"buffer is on {buffer.Device.Name}, not {Name}", nameof(buffer));
        if (offset < 0 || bytes < 0 || offset > buffer.Bytes - bytes)
            throw new ArgumentOutOfRangeException(nameof(bytes), $"bytes [{offset}, {offset} + {bytes}) outside a buffer of {buffer.Bytes}");
        return ((GpuBuffer)buffer).View.SubView(offset, bytes);
    }

    /// <summary>Accelerator allocations for the pool; a CUDA out-of-memory error becomes <see cref="OutOfMemoryException"/>.</summary>
    private sealed class AcceleratorMemory(GpuDevice device) : IDeviceMemory<MemoryBuffer1D<byte, Stride1D.Dense>>
    {
        public MemoryBuffer1D<byte, Stride1D.Dense> Allocate(long bytes)
        {
            device.Enter();
            try
            {
                return device.Accelerator.Allocate1D<byte>(bytes);
            }
            catch (CudaException e) when (e.Error.Contains("OUT_OF_MEMORY", StringComparison.Ordinal))
            {
                throw new OutOfMemoryException($"out of memory on {device.Name}: {bytes} bytes requested", e);
            }
        }

        public void Free(MemoryBuffer1D<byte, Stride1D.Dense> block)
        {
            device.Enter();
            block.Dispose();
        }

        public void Synchronize() => device.Synchronize();
    }

    /// <summary>A block of device memory from the pool; the last release hands it back.</summary>
    private sealed class GpuBuffer : DeviceBuffer
    {
        private readonly GpuMemoryPool<MemoryBuffer1D<byte, Stride1D.Dense>> _pool;
        private MemoryBuffer1D<byte, Stride1D.Dense>? _block;

        public GpuBuffer(GpuDevice device, MemoryBuffer1D<byte, Stride1D.Dense> block, long bytes) : base(device, bytes)
        {
            _pool = device.Pool;
            _block = block;
            View = block.View.SubView(0, bytes);
        }

        public ArrayView<byte> View { get; }

        public override nint Pointer => _block?.NativePtr ?? 0;

        protected override void Free()
        {
            var b = Interlocked.Exchange(ref _block, null);
            if (b is not null) _pool.Return(b, Bytes, finalizing: false);
            GC.SuppressFinalize(this);
        }

        // A tensor that was never disposed still gives its memory back (without driver calls on the finalizer thread).
        ~GpuBuffer()
        {
            var b = Interlocked.Exchange(ref _block, null);
            if (b is not null) _pool.Return(b, Bytes, finalizing: true);
        }
    }
}
