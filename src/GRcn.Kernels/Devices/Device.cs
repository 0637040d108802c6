namespace GRcn.Kernels;

/// <summary>Kind of compute device.</summary>
public enum DeviceKind
{
    /// <summary>The host processor: managed kernels with AVX2/FMA intrinsics and worker threads.</summary>
    Cpu,
    /// <summary>An NVIDIA GPU, running the ILGPU kernels compiled to PTX.</summary>
    Cuda,
    /// <summary>ILGPU's CPU accelerator emulating an NVIDIA GPU: the same kernels as <see cref="Cuda"/>, run on the host (slow; for tests and debugging).</summary>
    Emulator,
}

/// <summary>
/// A place where tensors live and kernels run. Every op dispatches on the device of its
/// inputs, so callers write the same code for every device.
/// </summary>
/// <remarks>
/// A device owns a caching allocator (tensors handed back on <see cref="Tensor.Dispose"/> are
/// reused by later allocations of the same size) and one backend object that implements the
/// per-op kernel interfaces (<c>IConv2dBackend</c>, <c>IRoiAlignBackend</c>, ...).
/// </remarks>
public abstract class Device
{
    private protected Device() { }

    /// <summary>The host CPU device (one per process).</summary>
    public static CpuDevice Cpu => CpuDevice.Instance;

    /// <summary>Kind of device.</summary>
    public abstract DeviceKind Kind { get; }

    /// <summary>Short name, as used on the command line: <c>cpu</c>, <c>cuda:0</c>.</summary>
    public abstract string Name { get; }

    /// <summary>Human-readable description (processor or GPU model, memory, features).</summary>
    public abstract string Description { get; }

    /// <summary>
    /// Returns the CUDA device with the given ordinal (one instance per ordinal, created on first use).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="ordinal"/> is negative.</exception>
    /// <exception cref="PlatformNotSupportedException">No NVIDIA driver, no such GPU, or an unsupported one; the message says why.</exception>
    public static GpuDevice Cuda(int ordinal = 0) => GpuDevice.GetCuda(ordinal);

    /// <summary>The emulated NVIDIA GPU: ILGPU's CPU accelerator running the same kernels as <see cref="Cuda"/> (one per process).</summary>
    public static GpuDevice Emulator => GpuDevice.GetEmulator();

    /// <summary>Parses a device name: <c>cpu</c>, <c>cuda</c>, <c>cuda:N</c> or <c>emulator</c>.</summary>
    /// <exception cref="ArgumentException">The name is not a device name.</exception>
    public static Device Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        string n = name.Trim().ToLowerInvariant();
        if (n == "cpu") return Cpu;
        if (n == "cuda") return Cuda(0);
        if (n == "emulator") return Emulator;
        if (n.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(n.AsSpan(5), out int ordinal) && ordinal >= 0)
            return Cuda(ordinal);
        throw new ArgumentException($"unknown device '{name}'; expected 'cpu', 'cuda', 'cuda:N' or 'emulator'", nameof(name));
    }

    /// <summary>Every device usable in this process, with a reason for each kind that is not.</summary>
    public static IReadOnlyList<DeviceInfo> List()
    {
        var list = new List<DeviceInfo> { new(Cpu.Name, DeviceKind.Cpu, true, Cpu.Description) };
        try
        {
            var cuda = Cuda(0);
            list.Add(new(cuda.Name, DeviceKind.Cuda, true, cuda.Description));
        }
        catch (PlatformNotSupportedException e)
        {
            list.Add(new("cuda", DeviceKind.Cuda, false, "no CUDA device: " + e.Message));
        }
        list.Add(new("emulator", DeviceKind.Emulator, true,
            "ILGPU's CPU accelerator emulating an NVIDIA GPU (warps of 32): runs the cuda kernels on the host, slowly"));
        return list;
    }

    /// <summary>Allocates uninitialised memory for <paramref name="bytes"/> bytes.</summary>
    internal abstract DeviceBuffer Allocate(long bytes);

    /// <summary>Copies <paramref name="bytes"/> bytes from host memory into the buffer at a byte offset.</summary>
    internal abstract unsafe void CopyFromHost(void* source, DeviceBuffer destination, long offset, long bytes);

    /// <summary>Copies <paramref name="bytes"/> bytes from the buffer at a byte offset into host memory.</summary>
    internal abstract unsafe void CopyToHost(DeviceBuffer source, long offset, void* destination, long bytes);

    /// <summary>Sets <paramref name="bytes"/> bytes of the buffer to zero.</summary>
    internal abstract void Clear(DeviceBuffer buffer, long offset, long bytes);

    /// <summary>Fills <paramref name="count"/> float32 elements with a value.</summary>
    internal abstract void Fill(DeviceBuffer buffer, long offset, long count, float value);

    /// <summary>Copies between two buffers of this device.</summary>
    internal abstract void Copy(DeviceBuffer source, long sourceOffset, DeviceBuffer destination, long destinationOffset, long bytes);

    /// <summary>Waits until all work queued on the device has finished.</summary>
    public abstract void Synchronize();

    /// <summary>The object that implements this device's kernels.</summary>
    internal abstract object Backend { get; }

    /// <summary>The device's implementation of one op family.</summary>
    /// <exception cref="NotSupportedException">The device does not implement <typeparamref name="TBackend"/>.</exception>
    internal TBackend Kernels<TBackend>(string op) where TBackend : class =>
        Backend as TBackend ?? throw new NotSupportedException($"{op} is not implemented on device {Name}");

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>One row of <see cref="Device.List"/>.</summary>
/// <param name="Name">Device name (<c>cpu</c>, <c>cuda:0</c>).</param>
/// <param name="Kind">Device kind.</param>
/// <param name="Available">Whether the device can be used.</param>
/// <param name="Description">Model and features, or why the device is unavailable.</param>
public sealed record DeviceInfo(string Name, DeviceKind Kind, bool Available, string Description);
