namespace GRcn.Kernels;

/// <summary>
/// A block of device memory shared by one tensor and its views (reference counted). The last
/// release hands the memory back to the device's allocator, which caches it for reuse.
/// </summary>
internal abstract class DeviceBuffer
{
    private int _refs = 1;

    protected DeviceBuffer(Device device, long bytes)
    {
        Device = device;
        Bytes = bytes;
    }

    public Device Device { get; }
    public long Bytes { get; }

    /// <summary>Address of the first byte (host address on CPU, device address on a GPU).</summary>
    public abstract nint Pointer { get; }

    public bool IsReleased => Volatile.Read(ref _refs) <= 0;

    public DeviceBuffer AddRef()
    {
        int r;
        do
        {
            r = Volatile.Read(ref _refs);
            if (r <= 0) throw new ObjectDisposedException(nameof(Tensor), "the tensor's memory was already released");
        }
        while (Interlocked.CompareExchange(ref _refs, r + 1, r) != r);
        return this;
    }

    public void Release()
    {
        if (Interlocked.Decrement(ref _refs) == 0) Free();
    }

    protected abstract void Free();
}
