// A CUDA GPU driven through the driver API: the device's primary context, one non-blocking
// stream that all of the device's work is queued on (so work runs in the order it was asked
// for), a caching allocator, and copies, fills and clears queued on that stream. Host data
// is complete when a copy returns: copies to and from the host synchronise the stream.
using GRcn.Kernels.Cuda;

namespace GRcn.Kernels;

/// <summary>An NVIDIA GPU. Get one with <see cref="Device.Cuda"/>; there is one instance per ordinal, for the life of the process.</summary>
public sealed unsafe class CudaDevice : Device
{
    private static readonly Lock s_lock = new();
    private static readonly Dictionary<int, CudaDevice> s_devices = [];

    private readonly int _device;
    private readonly nint _context;
    private readonly nint _stream;
    private readonly CudaBackend _backend;

    private CudaDevice(int ordinal)
    {
        Ordinal = ordinal;
        int dev;
        CudaDriver.Check(CudaDriver.cuDeviceGet(&dev, ordinal), nameof(CudaDriver.cuDeviceGet), $"ordinal {ordinal}");
        _device = dev;

        const int NameBytes = 256;
        byte* name = stackalloc byte[NameBytes];
        CudaDriver.Check(CudaDriver.cuDeviceGetName(name, NameBytes, dev), nameof(CudaDriver.cuDeviceGetName));
        ModelName = CudaModule.LogText(new ReadOnlySpan<byte>(name, NameBytes));

        nuint memory;
        CudaDriver.Check(CudaDriver.cuDeviceTotalMem_v2(&memory, dev), nameof(CudaDriver.cuDeviceTotalMem_v2));
        TotalMemory = (long)memory;
        ComputeCapability = new Version(Attribute(CUdevice_attribute.ComputeCapabilityMajor), Attribute(CUdevice_attribute.ComputeCapabilityMinor));
        MultiprocessorCount = Attribute(CUdevice_attribute.MultiprocessorCount);
        int driver = CudaDriver.DriverVersion();
        DriverVersion = new Version(driver / 1000, driver % 1000 / 10);

        nint context;
        CudaDriver.Check(CudaDriver.cuDevicePrimaryCtxRetain(&context, dev), nameof(CudaDriver.cuDevicePrimaryCtxRetain));
        try
        {
            CudaDriver.Check(CudaDriver.cuCtxSetCurrent(context), nameof(CudaDriver.cuCtxSetCurrent));
            nint stream;
            CudaDriver.Check(CudaDriver.cuStreamCreate(&stream, CudaDriver.StreamNonBlocking), nameof(CudaDriver.cuStreamCreate));
            _stream = stream;
        }
        catch
        {
            // The device is unusable; the release's own result cannot improve on the error being thrown.
            _ = CudaDriver.cuDevicePrimaryCtxRelease_v2(dev);
            throw;
        }
        _context = context;
        Pool = new CudaMemoryPool(new DriverMemory(this));
        _backend = new CudaBackend(this);
    }

    /// <summary>The device's ordinal (N in <c>cuda:N</c>).</summary>
    public int Ordinal { get; }

    /// <inheritdoc/>
    public override DeviceKind Kind => DeviceKind.Cuda;

    /// <inheritdoc/>
    public override string Name => $"cuda:{Ordinal}";

    /// <summary>The GPU's model name, e.g. <c>NVIDIA H100 80GB HBM3</c>.</summary>
    public string ModelName { get; }

    /// <summary>Compute capability (major.minor), e.g. 9.0 for Hopper.</summary>
    public Version ComputeCapability { get; }

    /// <summary>Number of streaming multiprocessors.</summary>
    public int MultiprocessorCount { get; }

    /// <summary>Device memory in bytes.</summary>
    public long TotalMemory { get; }

    /// <summary>CUDA version the installed driver supports (major.minor), e.g. 12.4.</summary>
    public Version DriverVersion { get; }

    /// <inheritdoc/>
    public override string Description =>
        $"{ModelName}, compute capability {ComputeCapability}, {MultiprocessorCount} SMs, " +
        $"{TotalMemory / (double)(1L << 30):0.0} GiB, CUDA driver {DriverVersion}";

    /// <summary>The cache of freed device memory.</summary>
    internal CudaMemoryPool Pool { get; }

    /// <summary>Bytes held in the allocation cache, not in use by any tensor.</summary>
    public long CachedBytes => Pool.CachedBytes;

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

    /// <summary>The stream that all of this device's work is queued on.</summary>
    internal nint Stream => _stream;

    internal override object Backend => _backend;

    /// <summary>The device with the given ordinal, created on first use.</summary>
    /// <exception cref="PlatformNotSupportedException">No driver, cuInit failed, or no such device; the message says which.</exception>
    internal static CudaDevice Get(int ordinal)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ordinal);
        lock (s_lock)
        {
            if (s_devices.TryGetValue(ordinal, out var device)) return device;
            CudaDriver.EnsureInitialized();
            int count;
            try
            {
                count = CudaDriver.DeviceCount();
            }
            catch (CudaException e)
            {
                throw new PlatformNotSupportedException(e.Message, e);
            }
            if (ordinal >= count)
                throw new PlatformNotSupportedException($"CUDA device {ordinal} requested but {count} present");
            try
            {
                device = new CudaDevice(ordinal);
            }
            catch (CudaException e)
            {
                throw new PlatformNotSupportedException($"CUDA device {ordinal} could not be opened: {e.Message}", e);
            }
            s_devices[ordinal] = device;
            return device;
        }
    }

    /// <summary>Makes this device's context current on the calling thread (every driver call needs it).</summary>
    internal void MakeCurrent() =>
        CudaDriver.Check(CudaDriver.cuCtxSetCurrent(_context), nameof(CudaDriver.cuCtxSetCurrent));

    /// <inheritdoc/>
    public override void Synchronize()
    {
        MakeCurrent();
        CudaDriver.Check(CudaDriver.cuStreamSynchronize(_stream), nameof(CudaDriver.cuStreamSynchronize), Name);
    }

    /// <summary>
    /// Milliseconds of GPU time taken by the work that <paramref name="work"/> queues on this
    /// device, measured by events recorded on the stream before and after it.
    /// </summary>
    public double MeasureMilliseconds(Action work)
    {
        ArgumentNullException.ThrowIfNull(work);
        MakeCurrent();
        using var start = new CudaEvent();
        using var end = new CudaEvent();
        start.Record(_stream);
        work();
        MakeCurrent();
        end.Record(_stream);
        end.Synchronize();
        return CudaEvent.ElapsedMilliseconds(start, end);
    }

    internal override DeviceBuffer Allocate(long bytes)
    {
        ulong p = Pool.Rent(bytes, out long size);
        return new CudaBuffer(this, p, size);
    }

    internal override void CopyFromHost(void* source, DeviceBuffer destination, long offset, long bytes)
    {
        ulong dst = Address(destination, offset, bytes);
        if (bytes == 0) return;
        MakeCurrent();
        CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync_v2(dst, source, (nuint)bytes, _stream), nameof(CudaDriver.cuMemcpyHtoDAsync_v2), $"{bytes} bytes to {Name}");
        // The caller may reuse or free the host memory as soon as this returns.
        CudaDriver.Check(CudaDriver.cuStreamSynchronize(_stream), nameof(CudaDriver.cuStreamSynchronize), Name);
    }

    internal override void CopyToHost(DeviceBuffer source, long offset, void* destination, long bytes)
    {
        ulong src = Address(source, offset, bytes);
        if (bytes == 0) return;
        MakeCurrent();
        CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync_v2(destination, src, (nuint)bytes, _stream), nameof(CudaDriver.cuMemcpyDtoHAsync_v2), $"{bytes} bytes from {Name}");
        CudaDriver.Check(CudaDriver.cuStreamSynchronize(_stream), nameof(CudaDriver.cuStreamSynchronize), Name);
    }

    internal override void Clear(DeviceBuffer buffer, long offset, long bytes)
    {
        ulong dst = Address(buffer, offset, bytes);
        if (bytes == 0) return;
        MakeCurrent();
        CudaDriver.Check(CudaDriver.cuMemsetD8Async(dst, 0, (nuint)bytes, _stream), nameof(CudaDriver.cuMemsetD8Async), $"{bytes} bytes on {Name}");
    }

    internal override void Fill(DeviceBuffer buffer, long offset, long count, float value)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ulong dst = Address(buffer, offset, count * sizeof(float));
        if ((dst & 3) != 0) throw new ArgumentException($"float32 fill at byte offset {offset} is not 4-byte aligned", nameof(offset));
        if (count == 0) return;
        MakeCurrent();
        CudaDriver.Check(CudaDriver.cuMemsetD32Async(dst, BitConverter.SingleToUInt32Bits(value), (nuint)count, _stream),
            nameof(CudaDriver.cuMemsetD32Async), $"{count} float32 elements on {Name}");
    }

    internal override void Copy(DeviceBuffer source, long sourceOffset, DeviceBuffer destination, long destinationOffset, long bytes)
    {
        ulong src = Address(source, sourceOffset, bytes);
        ulong dst = Address(destination, destinationOffset, bytes);
        if (bytes == 0) return;
        MakeCurrent();
        CudaDriver.Check(CudaDriver.cuMemcpyDtoDAsync_v2(dst, src, (nuint)bytes, _stream), nameof(CudaDriver.cuMemcpyDtoDAsync_v2), $"{bytes} bytes on {Name}");
    }

    /// <summary>Device address of <paramref name="offset"/> in a buffer of this device, after checking the range.</summary>
    private ulong Address(DeviceBuffer buffer, long offset, long bytes)
    {
        if (buffer.Device != this)
            throw new ArgumentException($"buffer is on {buffer.Device.Name}, not {Name}", nameof(buffer));
        if (offset < 0 || bytes < 0 || offset > buffer.Bytes - bytes)
            throw new ArgumentOutOfRangeException(nameof(bytes), $"bytes [{offset}, {offset} + {bytes}) outside a buffer of {buffer.Bytes}");
        return (ulong)buffer.Pointer + (ulong)offset;
    }

    private int Attribute(CUdevice_attribute attribute)
    {
        int v;
        CudaDriver.Check(CudaDriver.cuDeviceGetAttribute(&v, attribute, _device), nameof(CudaDriver.cuDeviceGetAttribute), attribute.ToString());
        return v;
    }

    /// <summary>cuMemAlloc / cuMemFree in this device's context, for the pool.</summary>
    private sealed class DriverMemory(CudaDevice device) : IDeviceMemory
    {
        public ulong Allocate(long bytes)
        {
            device.MakeCurrent();
            ulong p;
            CudaDriver.Check(CudaDriver.cuMemAlloc_v2(&p, (nuint)bytes), nameof(CudaDriver.cuMemAlloc_v2), $"{bytes} bytes on {device.Name}");
            return p;
        }

        public void Free(ulong pointer)
        {
            device.MakeCurrent();
            CudaDriver.Check(CudaDriver.cuMemFree_v2(pointer), nameof(CudaDriver.cuMemFree_v2), device.Name);
        }

        public void Synchronize() => device.Synchronize();
    }

    /// <summary>A block of device memory from the pool; the last release hands it back.</summary>
    private sealed class CudaBuffer : DeviceBuffer
    {
        private readonly CudaMemoryPool _pool;
        private ulong _pointer;

        public CudaBuffer(CudaDevice device, ulong pointer, long bytes) : base(device, bytes)
        {
            _pool = device.Pool;
            _pointer = pointer;
        }

        public override nint Pointer => (nint)Volatile.Read(ref _pointer);

        protected override void Free()
        {
            ulong p = Interlocked.Exchange(ref _pointer, 0);
            if (p != 0) _pool.Return(p, Bytes, finalizing: false);
            GC.SuppressFinalize(this);
        }

        // A tensor that was never disposed still gives its memory back (without driver calls on the finalizer thread).
        ~CudaBuffer()
        {
            ulong p = Interlocked.Exchange(ref _pointer, 0);
            if (p != 0) _pool.Return(p, Bytes, finalizing: true);
        }
    }
}
