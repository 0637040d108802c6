// CUresult, the status codes of the CUDA driver API, and CudaException, which every failed
// driver call becomes: its message names the call, the code's name and the driver's text.
using GRcn.Kernels.Cuda;

namespace GRcn.Kernels;

/// <summary>
/// Status codes of the CUDA driver API. Member names and values are those of <c>cuda.h</c>,
/// so a code's name reads the same whether it comes from the driver or from this enum.
/// </summary>
public enum CUresult
{
    /// <summary>No error.</summary>
    CUDA_SUCCESS = 0,
    /// <summary>An argument is out of range.</summary>
    CUDA_ERROR_INVALID_VALUE = 1,
    /// <summary>Device memory (or another resource) is exhausted.</summary>
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    /// <summary><c>cuInit</c> has not been called, or failed.</summary>
    CUDA_ERROR_NOT_INITIALIZED = 3,
    /// <summary>The driver is shutting down.</summary>
    CUDA_ERROR_DEINITIALIZED = 4,
    /// <summary>libcuda is a stub library (the toolkit's link stub, not the real driver).</summary>
    CUDA_ERROR_STUB_LIBRARY = 34,
    /// <summary>The device is busy or unavailable (for example in exclusive-process mode).</summary>
    CUDA_ERROR_DEVICE_UNAVAILABLE = 46,
    /// <summary>No CUDA-capable device was found.</summary>
    CUDA_ERROR_NO_DEVICE = 100,
    /// <summary>The device ordinal is not valid.</summary>
    CUDA_ERROR_INVALID_DEVICE = 101,
    /// <summary>The kernel image is invalid.</summary>
    CUDA_ERROR_INVALID_IMAGE = 200,
    /// <summary>No context is current, or the context is invalid.</summary>
    CUDA_ERROR_INVALID_CONTEXT = 201,
    /// <summary>No kernel image fits the device.</summary>
    CUDA_ERROR_NO_BINARY_FOR_GPU = 209,
    /// <summary>An uncorrectable ECC error was detected.</summary>
    CUDA_ERROR_ECC_UNCORRECTABLE = 214,
    /// <summary>PTX JIT compilation failed.</summary>
    CUDA_ERROR_INVALID_PTX = 218,
    /// <summary>The PTX JIT compiler library was not found.</summary>
    CUDA_ERROR_JIT_COMPILER_NOT_FOUND = 221,
    /// <summary>The PTX was produced by a toolchain newer than the driver supports.</summary>
    CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222,
    /// <summary>The source is invalid.</summary>
    CUDA_ERROR_INVALID_SOURCE = 300,
    /// <summary>A file was not found.</summary>
    CUDA_ERROR_FILE_NOT_FOUND = 301,
    /// <summary>An operating-system call failed.</summary>
    CUDA_ERROR_OPERATING_SYSTEM = 304,
    /// <summary>A handle (stream, event, module, ...) is invalid.</summary>
    CUDA_ERROR_INVALID_HANDLE = 400,
    /// <summary>A named symbol (for example a kernel function) was not found.</summary>
    CUDA_ERROR_NOT_FOUND = 500,
    /// <summary>Queued work has not completed yet (not an error for query calls).</summary>
    CUDA_ERROR_NOT_READY = 600,
    /// <summary>A kernel accessed an illegal address; the context is unusable afterwards.</summary>
    CUDA_ERROR_ILLEGAL_ADDRESS = 700,
    /// <summary>The launch asked for more resources (registers, shared memory, threads) than the device has.</summary>
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
    /// <summary>A kernel ran past the watchdog time limit.</summary>
    CUDA_ERROR_LAUNCH_TIMEOUT = 702,
    /// <summary>A device-side assertion failed.</summary>
    CUDA_ERROR_ASSERT = 710,
    /// <summary>A kernel hit a hardware stack error.</summary>
    CUDA_ERROR_HARDWARE_STACK_ERROR = 714,
    /// <summary>A kernel executed an illegal instruction.</summary>
    CUDA_ERROR_ILLEGAL_INSTRUCTION = 715,
    /// <summary>A kernel made a misaligned memory access.</summary>
    CUDA_ERROR_MISALIGNED_ADDRESS = 716,
    /// <summary>A kernel failed for an unspecified reason.</summary>
    CUDA_ERROR_LAUNCH_FAILED = 719,
    /// <summary>The operation is not permitted.</summary>
    CUDA_ERROR_NOT_PERMITTED = 800,
    /// <summary>The operation is not supported.</summary>
    CUDA_ERROR_NOT_SUPPORTED = 801,
    /// <summary>The kernel-mode driver does not match the user-mode driver (libcuda).</summary>
    CUDA_ERROR_SYSTEM_DRIVER_MISMATCH = 803,
    /// <summary>Forward compatibility was attempted on hardware that does not support it.</summary>
    CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE = 804,
    /// <summary>An operation timed out.</summary>
    CUDA_ERROR_TIMEOUT = 909,
    /// <summary>An unknown error.</summary>
    CUDA_ERROR_UNKNOWN = 999,
}

/// <summary>A CUDA driver call failed; the message names the call, the error code and the driver's text for it.</summary>
public sealed class CudaException : Exception
{
    /// <summary>Creates the exception for a failed call.</summary>
    /// <param name="call">Driver entry point that failed, e.g. <c>cuMemAlloc_v2</c>.</param>
    /// <param name="result">The code it returned.</param>
    /// <param name="detail">What the call was doing (sizes, kernel name, JIT log), or null.</param>
    public CudaException(string call, CUresult result, string? detail = null)
        : base(Format(call, result, detail))
    {
        Call = call;
        Result = result;
        ErrorName = CudaDriver.ErrorName(result);
    }

    /// <summary>Driver entry point that failed.</summary>
    public string Call { get; }

    /// <summary>The code it returned.</summary>
    public CUresult Result { get; }

    /// <summary>Name of <see cref="Result"/>, e.g. <c>CUDA_ERROR_OUT_OF_MEMORY</c>.</summary>
    public string ErrorName { get; }

    /// <summary>
    /// The message for a failed call: <c>cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)</c>,
    /// followed by <c>: detail</c> when there is one.
    /// </summary>
    public static string Format(string call, CUresult result, string? detail = null)
    {
        ArgumentNullException.ThrowIfNull(call);
        string message = $"{call} failed: {CudaDriver.ErrorName(result)} ({CudaDriver.ErrorText(result)})";
        return string.IsNullOrEmpty(detail) ? message : message + ": " + detail;
    }
}
