namespace GRcn.Kernels;

/// <summary>
/// A GPU operation failed: a kernel that could not be compiled or loaded (the message names it),
/// or queued work that failed on the device (the message names the last kernel launched).
/// </summary>
public sealed class GpuException : Exception
{
    /// <summary>Creates the exception with a message and the ILGPU or driver error behind it.</summary>
    public GpuException(string message, Exception? inner = null) : base(message, inner) { }

    /// <summary>The kernel concerned, when one is known.</summary>
    public string? Kernel { get; init; }
}
