// PTX modules and kernel launches. The PTX that kernels/build.sh writes to kernels/ptx/ is
// embedded in the assembly (resource GRcn.Kernels.ptx.NAME.ptx); CudaModule JIT-compiles it
// for the device at hand through cuModuleLoadDataEx, with an error-log buffer so a failed
// compilation reports the driver's log. KernelArguments packs kernel parameters on the stack
// and CudaFunction.Launch passes one pointer per parameter to cuLaunchKernel.
using System.Runtime.CompilerServices;
using System.Text;

namespace GRcn.Kernels.Cuda;

/// <summary>Grid or block dimensions of a kernel launch.</summary>
/// <param name="X">Extent along x (≥ 1).</param>
/// <param name="Y">Extent along y (≥ 1).</param>
/// <param name="Z">Extent along z (≥ 1).</param>
internal readonly record struct Dim3(uint X, uint Y = 1, uint Z = 1)
{
    /// <summary>A one-dimensional grid of ⌈<paramref name="count"/> / <paramref name="threadsPerBlock"/>⌉ blocks (at least one).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The grid would exceed 2³¹ − 1 blocks.</exception>
    public static Dim3 Cover(long count, uint threadsPerBlock)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfZero(threadsPerBlock);
        long blocks = Math.Max(1, (count + threadsPerBlock - 1) / threadsPerBlock);
        if (blocks > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"{count} elements need {blocks} blocks of {threadsPerBlock}; at most 2^31 - 1 fit in a grid");
        return new Dim3((uint)blocks);
    }

    /// <inheritdoc/>
    public override string ToString() => $"({X}, {Y}, {Z})";
}

/// <summary>One kernel of a loaded module.</summary>
/// <param name="Module">The module that holds it.</param>
/// <param name="Handle">The driver's <c>CUfunction</c>.</param>
/// <param name="Name">Its (unmangled, <c>extern "C"</c>) name.</param>
internal readonly record struct CudaFunction(CudaModule Module, nint Handle, string Name)
{
    /// <summary>Queues the kernel on its device's stream.</summary>
    public void Launch(Dim3 grid, Dim3 block, uint sharedBytes, scoped ref KernelArguments args) =>
        Launch(grid, block, sharedBytes, Module.Device.Stream, ref args);

    /// <summary>Queues the kernel on <paramref name="stream"/>; <paramref name="args"/> holds one value per kernel parameter, in order.</summary>
    /// <exception cref="CudaException">The driver rejected the launch (configuration, resources, arguments).</exception>
    public unsafe void Launch(Dim3 grid, Dim3 block, uint sharedBytes, nint stream, scoped ref KernelArguments args)
    {
        Module.Device.MakeCurrent();
        int n = args.Count;
        void** pointers = stackalloc void*[Math.Max(n, 1)];
        args.FillPointers(pointers);
        CudaDriver.Check(
            CudaDriver.cuLaunchKernel(Handle, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, sharedBytes, stream, n == 0 ? null : pointers, null),
            nameof(CudaDriver.cuLaunchKernel),
            $"kernel {Module.Name}.{Name}, grid {grid}, block {block}, {sharedBytes} bytes shared, {n} arguments");
    }
}

/// <summary>Storage for up to 64 eight-byte argument slots.</summary>
[InlineArray(KernelArguments.SlotCount)]
internal struct KernelArgumentSlots
{
    private ulong _first;
}

/// <summary>Slot index of each argument.</summary>
[InlineArray(KernelArguments.MaxArguments)]
internal struct KernelArgumentStarts
{
    private int _first;
}

/// <summary>
/// Kernel parameter values, packed on the stack: each value takes whole 8-byte slots, and
/// <see cref="FillPointers"/> gives the pointer to each, as <c>cuLaunchKernel</c> wants.
/// </summary>
/// <remarks>
/// A ref struct always lives on the stack, which the garbage collector never moves, so the
/// pointers stay valid while the struct is in scope.
/// </remarks>
internal unsafe ref struct KernelArguments
{
    /// <summary>Most parameters one launch can take.</summary>
    public const int MaxArguments = 32;

    /// <summary>Eight-byte slots of storage (512 bytes).</summary>
    public const int SlotCount = 64;

    private KernelArgumentSlots _slots;
    private KernelArgumentStarts _starts;
    private int _count;
    private int _used;

    /// <summary>Number of values added.</summary>
    public readonly int Count => _count;

    /// <summary>Appends a value passed by value: a scalar (<c>int</c>, <c>float</c>, <c>long</c>), a device pointer, or a small struct.</summary>
    /// <exception cref="InvalidOperationException">More than <see cref="MaxArguments"/> values, or more than 512 bytes in all.</exception>
    public void Add<T>(T value) where T : unmanaged
    {
        int slots = (sizeof(T) + 7) / 8;
        if (_count == MaxArguments || _used + slots > SlotCount)
            throw new InvalidOperationException(
                $"kernel arguments are full: {_count} values in {_used * 8} bytes; at most {MaxArguments} values and {SlotCount * 8} bytes");
        Unsafe.WriteUnaligned(ref Unsafe.As<ulong, byte>(ref _slots[_used]), value);
        _starts[_count++] = _used;
        _used += slots;
    }

    /// <summary>Appends the device address of a CUDA tensor's first element.</summary>
    /// <exception cref="ArgumentException">The tensor is not on a CUDA device.</exception>
    public void Add(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.Device.Kind != DeviceKind.Cuda)
            throw new ArgumentException($"a kernel argument must be a CUDA tensor; {tensor} is on {tensor.Device.Name}", nameof(tensor));
        Add((ulong)tensor.Buffer.Pointer);
    }

    /// <summary>Writes the address of each value to <paramref name="pointers"/>[0 .. Count).</summary>
    public void FillPointers(void** pointers)
    {
        byte* first = (byte*)Unsafe.AsPointer(ref _slots[0]);
        for (int i = 0; i < _count; i++) pointers[i] = first + 8 * _starts[i];
    }
}

/// <summary>A PTX module loaded into one device's context; dispose to unload it.</summary>
internal sealed unsafe class CudaModule : IDisposable
{
    /// <summary>Prefix of the embedded PTX resources: <c>GRcn.Kernels.ptx.NAME.ptx</c>.</summary>
    public const string ResourcePrefix = "GRcn.Kernels.ptx.";

    private const string ResourceSuffix = ".ptx";
    private const int LogBytes = 16 * 1024;

    private readonly Dictionary<string, CudaFunction> _functions = [];
    private nint _handle;

    private CudaModule(CudaDevice device, string name, nint handle)
    {
        Device = device;
        Name = name;
        _handle = handle;
    }

    /// <summary>The device whose context holds the module.</summary>
    public CudaDevice Device { get; }

    /// <summary>Module name (the .cu file's name without extension).</summary>
    public string Name { get; }

    /// <summary>Names of the PTX modules embedded in this assembly, sorted.</summary>
    public static IReadOnlyList<string> EmbeddedModules { get; } = typeof(CudaModule).Assembly.GetManifestResourceNames()
        .Where(r => r.StartsWith(ResourcePrefix, StringComparison.Ordinal) && r.EndsWith(ResourceSuffix, StringComparison.Ordinal))
        .Select(r => r[ResourcePrefix.Length..^ResourceSuffix.Length])
        .Order(StringComparer.Ordinal)
        .ToArray();

    /// <summary>The PTX text of an embedded module.</summary>
    /// <exception cref="ArgumentException">No module of that name is embedded.</exception>
    public static byte[] EmbeddedPtx(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        using var stream = typeof(CudaModule).Assembly.GetManifestResourceStream(ResourcePrefix + name + ResourceSuffix)
            ?? throw new ArgumentException(
                $"no PTX module '{name}' is embedded in GRcn.Kernels (embedded: {(EmbeddedModules.Count == 0 ? "none" : string.Join(", ", EmbeddedModules))}); " +
                "write kernels/NAME.cu, run kernels/build.sh and rebuild", nameof(name));
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    /// <summary>Loads an embedded module into <paramref name="device"/>'s context.</summary>
    public static CudaModule Load(CudaDevice device, string name) => LoadPtx(device, name, EmbeddedPtx(name));

    /// <summary>JIT-compiles PTX text for <paramref name="device"/> and loads it.</summary>
    /// <exception cref="CudaException">The driver rejected the PTX; the message includes the JIT error log.</exception>
    public static CudaModule LoadPtx(CudaDevice device, string name, ReadOnlySpan<byte> ptx)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(name);
        var image = new byte[ptx.Length + 1]; // the driver reads PTX as a NUL-terminated string
        ptx.CopyTo(image);
        var errorLog = new byte[LogBytes];
        var infoLog = new byte[LogBytes];
        CUjit_option* options = stackalloc CUjit_option[4];
        void** values = stackalloc void*[4];
        nint handle;
        CUresult r;
        device.MakeCurrent();
        fixed (byte* pImage = image, pError = errorLog, pInfo = infoLog)
        {
            options[0] = CUjit_option.ErrorLogBuffer;
            values[0] = pError;
            options[1] = CUjit_option.ErrorLogBufferSizeBytes;
            values[1] = (void*)(nuint)LogBytes;
            options[2] = CUjit_option.InfoLogBuffer;
            values[2] = pInfo;
            options[3] = CUjit_option.InfoLogBufferSizeBytes;
            values[3] = (void*)(nuint)LogBytes;
            r = CudaDriver.cuModuleLoadDataEx(&handle, pImage, 4, options, values);
        }
        if (r != CUresult.CUDA_SUCCESS)
        {
            string log = LogText(errorLog);
            CudaDriver.Check(r, nameof(CudaDriver.cuModuleLoadDataEx),
                $"module {name} on {device.Name}: " + (log.Length > 0 ? log : "the driver wrote no error log"));
        }
        return new CudaModule(device, name, handle);
    }

    /// <summary>The text a JIT log buffer holds: up to its first NUL, trimmed.</summary>
    internal static string LogText(ReadOnlySpan<byte> buffer)
    {
        int end = buffer.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? buffer : buffer[..end]).Trim();
    }

    /// <summary>The kernel named <paramref name="name"/> (looked up once, then cached).</summary>
    /// <exception cref="CudaException">The module has no such kernel (<see cref="CUresult.CUDA_ERROR_NOT_FOUND"/>).</exception>
    public CudaFunction Function(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        lock (_functions)
        {
            if (_functions.TryGetValue(name, out var f)) return f;
            nint module = _handle != 0 ? _handle : throw new ObjectDisposedException(nameof(CudaModule), $"module {Name} was unloaded");
            var utf8 = Encoding.UTF8.GetBytes(name + "\0");
            nint h;
            Device.MakeCurrent();
            fixed (byte* p = utf8)
                CudaDriver.Check(CudaDriver.cuModuleGetFunction(&h, module, p), nameof(CudaDriver.cuModuleGetFunction), $"kernel {name} in module {Name}");
            f = new CudaFunction(this, h, name);
            _functions[name] = f;
            return f;
        }
    }

    /// <summary>Unloads the module; its functions must not be launched afterwards.</summary>
    public void Dispose()
    {
        nint h = Interlocked.Exchange(ref _handle, 0);
        if (h == 0) return;
        Device.MakeCurrent();
        CudaDriver.Check(CudaDriver.cuModuleUnload(h), nameof(CudaDriver.cuModuleUnload), $"module {Name}");
    }
}
