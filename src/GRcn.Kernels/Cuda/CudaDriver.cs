// P/Invoke bindings to the CUDA driver API (libcuda.so.1, installed with the NVIDIA driver)
// and one checking helper through which every call goes. Loading the library is probed once:
// a machine without the driver gets a reason, never a crash.
using System.Runtime.InteropServices;

namespace GRcn.Kernels.Cuda;

/// <summary>Device attributes queried through <c>cuDeviceGetAttribute</c> (values from <c>cuda.h</c>).</summary>
internal enum CUdevice_attribute
{
    MaxThreadsPerBlock = 1,
    MaxSharedMemoryPerBlock = 8,
    WarpSize = 10,
    MultiprocessorCount = 16,
    ComputeCapabilityMajor = 75,
    ComputeCapabilityMinor = 76,
}

/// <summary>Options of <c>cuModuleLoadDataEx</c> (values from <c>cuda.h</c>).</summary>
internal enum CUjit_option
{
    InfoLogBuffer = 3,
    InfoLogBufferSizeBytes = 4,
    ErrorLogBuffer = 5,
    ErrorLogBufferSizeBytes = 6,
}

/// <summary>
/// The driver API entry points GRcn.Kernels uses. Methods carry the exported names (the
/// <c>_v2</c> ones where <c>cuda.h</c> maps the plain name to them); call them through
/// <see cref="Check"/> so every failure becomes a <see cref="CudaException"/>.
/// </summary>
internal static unsafe partial class CudaDriver
{
    /// <summary>The driver library's name on Linux.</summary>
    public const string Library = "libcuda.so.1";

    /// <summary><c>CU_STREAM_NON_BLOCKING</c>: no implicit synchronisation with the legacy default stream.</summary>
    public const uint StreamNonBlocking = 1;

    /// <summary><c>CU_EVENT_DEFAULT</c>: an event that records timing.</summary>
    public const uint EventDefault = 0;

    /// <summary>Every export the bindings below need; a driver lacking one is reported too old.</summary>
    internal static readonly string[] RequiredExports =
    [
        "cuInit", "cuDriverGetVersion", "cuDeviceGetCount", "cuDeviceGet", "cuDeviceGetName",
        "cuDeviceTotalMem_v2", "cuDeviceGetAttribute", "cuDevicePrimaryCtxRetain", "cuDevicePrimaryCtxRelease_v2",
        "cuCtxSetCurrent", "cuCtxSynchronize", "cuModuleLoadDataEx", "cuModuleGetFunction", "cuModuleUnload",
        "cuLaunchKernel", "cuMemAlloc_v2", "cuMemFree_v2", "cuMemcpyHtoDAsync_v2", "cuMemcpyDtoHAsync_v2",
        "cuMemcpyDtoDAsync_v2", "cuMemsetD8Async", "cuMemsetD32Async", "cuStreamCreate", "cuStreamSynchronize",
        "cuStreamDestroy_v2", "cuEventCreate", "cuEventRecord", "cuEventSynchronize", "cuEventElapsedTime",
        "cuEventDestroy_v2", "cuGetErrorName", "cuGetErrorString",
    ];

    /// <summary>Exports used when present: drivers for CUDA 12.8 and later have <c>cuEventElapsedTime_v2</c>.</summary>
    internal static readonly string[] OptionalExports = ["cuEventElapsedTime_v2"];

    private static readonly Lazy<LibraryState> s_library = new(ProbeLibrary, LazyThreadSafetyMode.ExecutionAndPublication);
    private static readonly Lazy<string?> s_init = new(Initialize, LazyThreadSafetyMode.ExecutionAndPublication);

    private sealed record LibraryState(bool Loaded, string? Failure, bool HasElapsedTimeV2);

    /// <summary>Whether libcuda.so.1 was loaded and exports every entry point needed (cuInit may still fail).</summary>
    public static bool LibraryLoaded => s_library.Value.Loaded;

    /// <summary>Why CUDA cannot be used in this process, or null when cuInit succeeded.</summary>
    public static string? UnavailableReason => s_init.Value;

    /// <summary>Throws when CUDA cannot be used: no driver, a driver too old, or cuInit failed.</summary>
    /// <exception cref="PlatformNotSupportedException">The message says why.</exception>
    public static void EnsureInitialized()
    {
        if (s_init.Value is { } reason) throw new PlatformNotSupportedException(reason);
    }

    /// <summary>Throws <see cref="CudaException"/> unless <paramref name="result"/> is success.</summary>
    /// <param name="result">What the driver returned.</param>
    /// <param name="call">The entry point, e.g. <c>nameof(cuMemAlloc_v2)</c>.</param>
    /// <param name="detail">Context for the message (sizes, names), or null.</param>
    public static void Check(CUresult result, string call, string? detail = null)
    {
        if (result != CUresult.CUDA_SUCCESS) throw new CudaException(call, result, detail);
    }

    /// <summary>
    /// The code's name from <c>cuGetErrorName</c>; without the driver (or for a code the
    /// driver does not know), the enum member's name, or <c>CUresult N</c> for an unknown code.
    /// </summary>
    public static string ErrorName(CUresult result)
    {
        if (LibraryLoaded)
        {
            byte* p = null;
            if (cuGetErrorName(result, &p) == CUresult.CUDA_SUCCESS && p != null)
                return Marshal.PtrToStringUTF8((nint)p) ?? FallbackName(result);
        }
        return FallbackName(result);
    }

    /// <summary>
    /// The code's description from <c>cuGetErrorString</c>; without the driver, the text the
    /// driver gives for the common codes, else a note that there is no description.
    /// </summary>
    public static string ErrorText(CUresult result)
    {
        if (LibraryLoaded)
        {
            byte* p = null;
            if (cuGetErrorString(result, &p) == CUresult.CUDA_SUCCESS && p != null && Marshal.PtrToStringUTF8((nint)p) is { } text)
                return text;
            return FallbackText(result) ?? "a code this driver does not know";
        }
        return FallbackText(result) ?? "no description: driver not loaded";
    }

    /// <summary>The enum member's name, or <c>CUresult N</c> for a code the enum lacks.</summary>
    internal static string FallbackName(CUresult result) =>
        Enum.IsDefined(result) ? result.ToString() : $"CUresult {(int)result}";

    /// <summary>The driver's text for the common codes (what cuGetErrorString returns), for use without the driver; null for others.</summary>
    internal static string? FallbackText(CUresult result) => result switch
    {
        CUresult.CUDA_SUCCESS => "no error",
        CUresult.CUDA_ERROR_INVALID_VALUE => "invalid argument",
        CUresult.CUDA_ERROR_OUT_OF_MEMORY => "out of memory",
        CUresult.CUDA_ERROR_NOT_INITIALIZED => "initialization error",
        CUresult.CUDA_ERROR_DEINITIALIZED => "driver shutting down",
        CUresult.CUDA_ERROR_STUB_LIBRARY => "CUDA driver is a stub library",
        CUresult.CUDA_ERROR_DEVICE_UNAVAILABLE => "CUDA-capable device(s) is/are busy or unavailable",
        CUresult.CUDA_ERROR_NO_DEVICE => "no CUDA-capable device is detected",
        CUresult.CUDA_ERROR_INVALID_DEVICE => "invalid device ordinal",
        CUresult.CUDA_ERROR_INVALID_IMAGE => "device kernel image is invalid",
        CUresult.CUDA_ERROR_INVALID_CONTEXT => "invalid device context",
        CUresult.CUDA_ERROR_NO_BINARY_FOR_GPU => "no kernel image is available for execution on the device",
        CUresult.CUDA_ERROR_INVALID_PTX => "a PTX JIT compilation failed",
        CUresult.CUDA_ERROR_UNSUPPORTED_PTX_VERSION => "the provided PTX was compiled with an unsupported toolchain.",
        CUresult.CUDA_ERROR_INVALID_HANDLE => "invalid resource handle",
        CUresult.CUDA_ERROR_NOT_FOUND => "named symbol not found",
        CUresult.CUDA_ERROR_NOT_READY => "device not ready",
        CUresult.CUDA_ERROR_ILLEGAL_ADDRESS => "an illegal memory access was encountered",
        CUresult.CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES => "too many resources requested for launch",
        CUresult.CUDA_ERROR_LAUNCH_TIMEOUT => "the launch timed out and was terminated",
        CUresult.CUDA_ERROR_ASSERT => "device-side assert triggered",
        CUresult.CUDA_ERROR_ILLEGAL_INSTRUCTION => "an illegal instruction was encountered",
        CUresult.CUDA_ERROR_MISALIGNED_ADDRESS => "misaligned address",
        CUresult.CUDA_ERROR_LAUNCH_FAILED => "unspecified launch failure",
        CUresult.CUDA_ERROR_NOT_SUPPORTED => "operation not supported",
        CUresult.CUDA_ERROR_SYSTEM_DRIVER_MISMATCH => "system has unsupported display driver / cuda driver combination",
        CUresult.CUDA_ERROR_UNKNOWN => "unknown error",
        _ => null,
    };

    /// <summary>Elapsed time between two recorded events, through <c>cuEventElapsedTime_v2</c> where the driver has it.</summary>
    public static float EventElapsedMilliseconds(nint start, nint end)
    {
        float ms;
        if (s_library.Value.HasElapsedTimeV2) Check(cuEventElapsedTime_v2(&ms, start, end), nameof(cuEventElapsedTime_v2));
        else Check(cuEventElapsedTime(&ms, start, end), nameof(cuEventElapsedTime));
        return ms;
    }

    /// <summary>Driver version as <c>cuDriverGetVersion</c> gives it: 1000 × major + 10 × minor.</summary>
    public static int DriverVersion()
    {
        int v;
        Check(cuDriverGetVersion(&v), nameof(cuDriverGetVersion));
        return v;
    }

    /// <summary>Number of CUDA devices.</summary>
    public static int DeviceCount()
    {
        int n;
        Check(cuDeviceGetCount(&n), nameof(cuDeviceGetCount));
        return n;
    }

    private static LibraryState ProbeLibrary()
    {
        try
        {
            return Probe();
        }
        catch (Exception e) when (e is BadImageFormatException or DllNotFoundException or EntryPointNotFoundException)
        {
            return new(false, $"{Library} could not be loaded: {e.Message}", false);
        }
    }

    private static LibraryState Probe()
    {
        if (!OperatingSystem.IsLinux())
            return new(false, $"the CUDA backend loads {Library} and runs on Linux only; this is {RuntimeInformation.OSDescription}", false);
        if (!NativeLibrary.TryLoad(Library, out nint handle))
            return new(false, $"{Library} not found: install the NVIDIA driver", false);
        var missing = RequiredExports.Where(name => !NativeLibrary.TryGetExport(handle, name, out _)).ToArray();
        if (missing.Length > 0)
            return new(false, $"{Library} lacks {string.Join(", ", missing)}: the NVIDIA driver is too old (a driver for CUDA 11.0 or newer is needed)", false);
        // The handle stays open for the life of the process, as the bindings' own load does.
        return new(true, null, NativeLibrary.TryGetExport(handle, "cuEventElapsedTime_v2", out _));
    }

    private static string? Initialize()
    {
        var lib = s_library.Value;
        if (!lib.Loaded) return lib.Failure;
        try
        {
            var r = cuInit(0);
            if (r != CUresult.CUDA_SUCCESS) return CudaException.Format(nameof(cuInit), r);
            if (DeviceCount() == 0) return "no CUDA device present (cuDeviceGetCount returned 0)";
            return null;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return $"{Library} could not be bound: {e.Message}";
        }
        catch (CudaException e)
        {
            return e.Message;
        }
    }

    [LibraryImport(Library)] internal static partial CUresult cuInit(uint flags);
    [LibraryImport(Library)] internal static partial CUresult cuDriverGetVersion(int* version);
    [LibraryImport(Library)] internal static partial CUresult cuDeviceGetCount(int* count);
    [LibraryImport(Library)] internal static partial CUresult cuDeviceGet(int* device, int ordinal);
    [LibraryImport(Library)] internal static partial CUresult cuDeviceGetName(byte* name, int length, int device);
    [LibraryImport(Library)] internal static partial CUresult cuDeviceTotalMem_v2(nuint* bytes, int device);
    [LibraryImport(Library)] internal static partial CUresult cuDeviceGetAttribute(int* value, CUdevice_attribute attribute, int device);
    [LibraryImport(Library)] internal static partial CUresult cuDevicePrimaryCtxRetain(nint* context, int device);
    [LibraryImport(Library)] internal static partial CUresult cuDevicePrimaryCtxRelease_v2(int device);
    [LibraryImport(Library)] internal static partial CUresult cuCtxSetCurrent(nint context);
    [LibraryImport(Library)] internal static partial CUresult cuCtxSynchronize();
    [LibraryImport(Library)] internal static partial CUresult cuModuleLoadDataEx(nint* module, void* image, uint optionCount, CUjit_option* options, void** optionValues);
    [LibraryImport(Library)] internal static partial CUresult cuModuleGetFunction(nint* function, nint module, byte* name);
    [LibraryImport(Library)] internal static partial CUresult cuModuleUnload(nint module);
    [LibraryImport(Library)]
    internal static partial CUresult cuLaunchKernel(nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
        uint sharedMemBytes, nint stream, void** kernelParams, void** extra);
    [LibraryImport(Library)] internal static partial CUresult cuMemAlloc_v2(ulong* pointer, nuint bytes);
    [LibraryImport(Library)] internal static partial CUresult cuMemFree_v2(ulong pointer);
    [LibraryImport(Library)] internal static partial CUresult cuMemcpyHtoDAsync_v2(ulong destination, void* source, nuint bytes, nint stream);
    [LibraryImport(Library)] internal static partial CUresult cuMemcpyDtoHAsync_v2(void* destination, ulong source, nuint bytes, nint stream);
    [LibraryImport(Library)] internal static partial CUresult cuMemcpyDtoDAsync_v2(ulong destination, ulong source, nuint bytes, nint stream);
    [LibraryImport(Library)] internal static partial CUresult cuMemsetD8Async(ulong destination, byte value, nuint count, nint stream);
    [LibraryImport(Library)] internal static partial CUresult cuMemsetD32Async(ulong destination, uint value, nuint count, nint stream);
    [LibraryImport(Library)] internal static partial CUresult cuStreamCreate(nint* stream, uint flags);
    [LibraryImport(Library)] internal static partial CUresult cuStreamSynchronize(nint stream);
    [LibraryImport(Library)] internal static partial CUresult cuStreamDestroy_v2(nint stream);
    [LibraryImport(Library)] internal static partial CUresult cuEventCreate(nint* evt, uint flags);
    [LibraryImport(Library)] internal static partial CUresult cuEventRecord(nint evt, nint stream);
    [LibraryImport(Library)] internal static partial CUresult cuEventSynchronize(nint evt);
    [LibraryImport(Library)] internal static partial CUresult cuEventElapsedTime(float* milliseconds, nint start, nint end);
    [LibraryImport(Library)] internal static partial CUresult cuEventElapsedTime_v2(float* milliseconds, nint start, nint end);
    [LibraryImport(Library)] internal static partial CUresult cuEventDestroy_v2(nint evt);
    [LibraryImport(Library)] internal static partial CUresult cuGetErrorName(CUresult error, byte** name);
    [LibraryImport(Library)] internal static partial CUresult cuGetErrorString(CUresult error, byte** text);
}
