// A CUDA event: a marker queued on a stream, used to time GPU work (cuEventElapsedTime) and
// to wait for the work queued before it. The owning device's context must be current.
namespace GRcn.Kernels.Cuda;

/// <summary>A timing event in the current context; dispose to destroy it.</summary>
internal sealed unsafe class CudaEvent : IDisposable
{
    private nint _handle;

    /// <summary>Creates an event that records timing (<c>CU_EVENT_DEFAULT</c>).</summary>
    public CudaEvent()
    {
        nint e;
        CudaDriver.Check(CudaDriver.cuEventCreate(&e, CudaDriver.EventDefault), nameof(CudaDriver.cuEventCreate));
        _handle = e;
    }

    /// <summary>The driver's handle.</summary>
    public nint Handle => _handle != 0 ? _handle : throw new ObjectDisposedException(nameof(CudaEvent));

    /// <summary>Queues the event on <paramref name="stream"/>: it completes when the work queued before it has.</summary>
    public void Record(nint stream) =>
        CudaDriver.Check(CudaDriver.cuEventRecord(Handle, stream), nameof(CudaDriver.cuEventRecord));

    /// <summary>Waits until the event has completed.</summary>
    public void Synchronize() =>
        CudaDriver.Check(CudaDriver.cuEventSynchronize(Handle), nameof(CudaDriver.cuEventSynchronize));

    /// <summary>Milliseconds of GPU time between two completed events (resolution about half a microsecond).</summary>
    public static float ElapsedMilliseconds(CudaEvent start, CudaEvent end) =>
        CudaDriver.EventElapsedMilliseconds(start.Handle, end.Handle);

    /// <inheritdoc/>
    public void Dispose()
    {
        nint h = Interlocked.Exchange(ref _handle, 0);
        if (h != 0) CudaDriver.Check(CudaDriver.cuEventDestroy_v2(h), nameof(CudaDriver.cuEventDestroy_v2));
    }
}
