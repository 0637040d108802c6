// The CUDA backend: one partial class, one file per op family (as CpuBackend), each
// implementing that op's backend interface from GRcn.Kernels.Ops with kernels from the
// embedded PTX modules. It implements no op interface yet, so an op on a CUDA tensor fails
// with "<op> is not implemented on device cuda:N".
namespace GRcn.Kernels.Cuda;

internal sealed partial class CudaBackend
{
    private readonly Dictionary<string, CudaModule> _modules = [];

    public CudaBackend(CudaDevice device) => Device = device;

    /// <summary>The device whose kernels these are.</summary>
    public CudaDevice Device { get; }

    /// <summary>The embedded PTX module <paramref name="name"/>, loaded into the device's context on first use.</summary>
    public CudaModule Module(string name)
    {
        lock (_modules)
        {
            if (!_modules.TryGetValue(name, out var m)) _modules[name] = m = CudaModule.Load(Device, name);
            return m;
        }
    }
}
