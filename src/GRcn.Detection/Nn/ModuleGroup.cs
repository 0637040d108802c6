// A plain container that names a set of modules (e.g. a branch's own copies of backbone blocks).
using GRcn.Kernels;

namespace GRcn.Detection.Nn;

/// <summary>A named group of child modules with no computation of its own.</summary>
public sealed class ModuleGroup(Device device) : Module(device)
{
    /// <summary>Registers <paramref name="module"/> under <paramref name="name"/> and returns it.</summary>
    public T Add<T>(string name, T module) where T : Module => AddModule(name, module);
}
