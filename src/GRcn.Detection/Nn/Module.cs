// Modules own parameters and child modules under dotted names (torchvision's state-dict
// naming: "layer1.0.conv1.weight"); the forward computation lives in each module's own
// method over a Graph. A module registered under two names shares its weights.
using GRcn.Detection.Autograd;
using GRcn.Kernels;

namespace GRcn.Detection.Nn;

/// <summary>A container of named parameters and child modules.</summary>
public abstract class Module : IDisposable
{
    private readonly List<(string Name, Parameter Parameter)> _parameters = [];
    private readonly List<(string Name, Module Module)> _children = [];

    /// <summary>Creates a module whose parameters live on <paramref name="device"/>.</summary>
    protected Module(Device device) => Device = device ?? throw new ArgumentNullException(nameof(device));

    /// <summary>Device of the parameters.</summary>
    public Device Device { get; }

    /// <summary>Registers a parameter initialised from <paramref name="value"/> (ownership passes to the module).</summary>
    protected Parameter AddParameter(string name, Tensor value, bool weightDecay = true, bool buffer = false)
    {
        var p = new Parameter(value, trainable: !buffer, weightDecay && !buffer) { IsBuffer = buffer };
        _parameters.Add((name, p));
        return p;
    }

    /// <summary>Registers a child module.</summary>
    protected T AddModule<T>(string name, T module) where T : Module
    {
        _children.Add((name, module));
        return module;
    }

    /// <summary>Every parameter and buffer with its full dotted name; shared ones once, under their first name.</summary>
    public IReadOnlyList<(string Name, Parameter Parameter)> NamedParameters()
    {
        var list = new List<(string, Parameter)>();
        var seen = new HashSet<Parameter>(ReferenceEqualityComparer.Instance);
        Collect("", list, seen);
        return list;
    }

    private void Collect(string prefix, List<(string, Parameter)> list, HashSet<Parameter> seen)
    {
        foreach (var (n, p) in _parameters)
            if (seen.Add(p)) list.Add((prefix + n, p));
        foreach (var (n, m) in _children) m.Collect(prefix + n + ".", list, seen);
    }

    /// <summary>The parameters the optimiser updates.</summary>
    public IEnumerable<Parameter> TrainableParameters() => NamedParameters().Select(p => p.Parameter).Where(p => p.Trainable);

    /// <summary>Freezes (or unfreezes) every parameter of this module and its children; buffers stay frozen.</summary>
    public void SetTrainable(bool trainable)
    {
        foreach (var (_, p) in NamedParameters())
            if (!p.IsBuffer) p.Trainable = trainable;
    }

    /// <summary>Zeroes every gradient.</summary>
    public void ZeroGrad()
    {
        foreach (var (_, p) in NamedParameters()) p.ZeroGrad();
    }

    /// <summary>Number of elements over all parameters (trainable or not, buffers excluded).</summary>
    public long ParameterCount() => NamedParameters().Where(p => !p.Parameter.IsBuffer).Sum(p => p.Parameter.Value.Length);

    /// <summary>Frees the parameters' memory and what the module keeps between passes.</summary>
    public void Dispose()
    {
        foreach (var (_, p) in NamedParameters())
        {
            p.Value.Dispose();
            p.Grad?.Dispose();
        }
        DisposeState();
        GC.SuppressFinalize(this);
    }

    /// <summary>A float32 vector of <paramref name="length"/> ones (the initial scale of a norm layer).</summary>
    protected static Tensor Ones(Device device, int length)
    {
        var t = Tensor.Empty(device, DataType.Float32, length);
        t.Fill(1f);
        return t;
    }

    /// <summary>Frees memory a module keeps between passes besides its parameters (none by default).</summary>
    protected virtual void DisposeState()
    {
    }
}
