// One named benchmark case: how to make its inputs (once) and what one timed iteration runs.
// An iteration disposes every tensor it creates, so repeating it does not grow memory.
using GRcn.Kernels;

namespace GRcn.Bench.Cases;

/// <summary>A named, reproducible benchmark of one op call (or a forward + backward pair).</summary>
public sealed class OpCase
{
    private readonly Func<CaseInputs, Action> _prepare;

    /// <summary>Defines a case.</summary>
    /// <param name="name">Fixed name, shared with the PyTorch suite (bench/torch_ops.py).</param>
    /// <param name="description">What one iteration computes.</param>
    /// <param name="flops">Floating-point operations of one iteration, or null where GFLOP/s does not apply.</param>
    /// <param name="prepare">Makes the inputs (tracked by the <see cref="CaseInputs"/>) and returns one iteration.</param>
    public OpCase(string name, string description, double? flops, Func<CaseInputs, Action> prepare)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(prepare);
        Name = name;
        Description = description;
        Flops = flops;
        _prepare = prepare;
    }

    /// <summary>Fixed name of the case, e.g. <c>gemm_1024</c>.</summary>
    public string Name { get; }

    /// <summary>What one iteration computes.</summary>
    public string Description { get; }

    /// <summary>Floating-point operations of one iteration, or null where GFLOP/s does not apply.</summary>
    public double? Flops { get; }

    /// <summary>Seed of the case's inputs: FNV-1a of the name, so every run sees the same data.</summary>
    public int Seed
    {
        get
        {
            uint h = 2166136261;
            foreach (char c in Name) h = (h ^ c) * 16777619;
            return (int)(h & 0x7fffffff);
        }
    }

    /// <summary>Allocates the inputs on <paramref name="device"/>; dispose the result to release them.</summary>
    public PreparedCase Prepare(Device device)
    {
        var inputs = new CaseInputs(device, Seed);
        try
        {
            return new PreparedCase(this, inputs, _prepare(inputs));
        }
        catch
        {
            inputs.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>A case with its inputs allocated, ready to run iterations.</summary>
public sealed class PreparedCase : IDisposable
{
    private readonly CaseInputs _inputs;
    private readonly Action _iteration;

    internal PreparedCase(OpCase definition, CaseInputs inputs, Action iteration)
    {
        Case = definition;
        _inputs = inputs;
        _iteration = iteration;
    }

    /// <summary>The case definition.</summary>
    public OpCase Case { get; }

    /// <summary>Runs one iteration and waits for the device to finish it.</summary>
    public void Run()
    {
        _iteration();
        _inputs.Device.Synchronize();
    }

    /// <inheritdoc/>
    public void Dispose() => _inputs.Dispose();
}
