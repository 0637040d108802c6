// The tape of one forward pass: every recorded op appends a node; Backward walks the tape in
// reverse, each node turning its output's gradient into gradients of its inputs, which are
// summed where a variable feeds several ops (branches, shared weights). The graph owns every
// intermediate tensor and frees them all on Dispose (memory returns to the device's cache, so
// steady-state training steps reuse the same blocks).
using GRcn.Kernels;

namespace GRcn.Detection.Autograd;

/// <summary>One forward (and optionally backward) pass: records ops, owns intermediates.</summary>
public sealed class Graph : IDisposable
{
    private readonly List<Node> _tape = [];
    private readonly List<Variable> _owned = [];
    private readonly List<IDisposable> _resources = [];
    private bool _disposed;

    /// <summary>Creates a graph on <paramref name="device"/>.</summary>
    /// <param name="device">Where the ops run.</param>
    /// <param name="training">Training mode (dropout active).</param>
    /// <param name="recordGradients">Whether ops are recorded for <see cref="Backward"/>.</param>
    /// <param name="seed">Seed of this pass's random numbers (dropout), for determinism.</param>
    public Graph(Device device, bool training, bool recordGradients, ulong seed = 0)
    {
        Device = device ?? throw new ArgumentNullException(nameof(device));
        Training = training;
        RecordGradients = recordGradients;
        Random = new SplitMix64(seed);
    }

    /// <summary>Device of every op.</summary>
    public Device Device { get; }

    /// <summary>Training mode.</summary>
    public bool Training { get; }

    /// <summary>Whether ops are recorded.</summary>
    public bool RecordGradients { get; }

    /// <summary>The pass's random stream.</summary>
    public SplitMix64 Random { get; }

    /// <summary>A constant input (no gradient); the graph takes ownership of <paramref name="value"/> when <paramref name="owned"/>.</summary>
    public Variable Constant(Tensor value, bool owned = true)
    {
        var v = new Variable(value, false);
        if (owned) _owned.Add(v);
        return v;
    }

    /// <summary>An input variable; with <paramref name="requiresGrad"/> its gradient is kept after <see cref="Backward"/>.</summary>
    public Variable Input(Tensor value, bool requiresGrad, bool owned = true)
    {
        var v = new Variable(value, requiresGrad && RecordGradients);
        if (owned) _owned.Add(v);
        return v;
    }

    /// <summary>Registers a disposable to be freed with the graph (saved masks, indices).</summary>
    internal T Keep<T>(T resource) where T : IDisposable
    {
        _resources.Add(resource);
        return resource;
    }

    /// <summary>Whether an op over <paramref name="inputs"/> gets a gradient (and so a backward node) in this pass.</summary>
    internal bool NeedsGradient(params ReadOnlySpan<Variable> inputs)
    {
        bool requires = false;
        if (RecordGradients)
            foreach (var i in inputs) requires |= i.RequiresGrad;
        return requires;
    }

    /// <summary>A new graph-owned result of an op over <paramref name="inputs"/>.</summary>
    internal Variable Result(Tensor value, params ReadOnlySpan<Variable> inputs)
    {
        var v = new Variable(value, NeedsGradient(inputs));
        _owned.Add(v);
        return v;
    }

    /// <summary>Appends the node that produced <paramref name="output"/>, when gradients flow to it.</summary>
    internal void Record(Variable output, Action<Tensor> backward)
    {
        if (output.RequiresGrad) _tape.Add(new Node(output, backward));
    }

    /// <summary>Back-propagates from a scalar <paramref name="loss"/> (one element), seeding dLoss/dLoss = 1.</summary>
    public void Backward(Variable loss)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(loss);
        if (loss.Value.Length != 1)
            throw new ArgumentException($"loss must have one element; got shape {loss.Value.ShapeString}", nameof(loss));
        if (!RecordGradients) throw new InvalidOperationException("this graph was built without recordGradients");
        if (!loss.RequiresGrad) return;
        var seed = Tensor.Empty(Device, DataType.Float32, loss.Value.Shape);
        seed.Fill(1f);
        Accumulate(loss, seed);
        for (int i = _tape.Count - 1; i >= 0; i--)
        {
            var node = _tape[i];
            if (node.Output.Grad is { } grad) node.Backward(grad);
        }
        _tape.Clear();
    }

    /// <summary>Adds <paramref name="grad"/> into v's gradient; takes ownership of <paramref name="grad"/>.</summary>
    internal void Accumulate(Variable v, Tensor grad)
    {
        if (!v.RequiresGrad)
        {
            grad.Dispose();
            return;
        }
        if (v.Grad is null)
        {
            v.Grad = grad;
            return;
        }
        Elementwise.AddScaled(v.Grad, grad);
        grad.Dispose();
    }

    /// <summary>Frees every intermediate value and gradient of the pass.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var v in _owned)
        {
            v.Value.Dispose();
            v.Grad?.Dispose();
            v.Grad = null;
        }
        foreach (var r in _resources) r.Dispose();
        _owned.Clear();
        _resources.Clear();
        _tape.Clear();
    }

    private readonly record struct Node(Variable Output, Action<Tensor> Backward);
}

/// <summary>SplitMix64: a small, fast, seedable generator (deterministic across platforms).</summary>
public sealed class SplitMix64(ulong seed)
{
    private ulong _state = seed;

    /// <summary>The next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>
    /// Skips <paramref name="count"/> outputs and returns the state before them: output i (1-based) of
    /// the skipped run is mix(state + i·0x9E3779B97F4A7C15), which device kernels draw in parallel.
    /// </summary>
    public ulong Skip(long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ulong before = _state;
        _state += (ulong)count * 0x9E3779B97F4A7C15UL;
        return before;
    }

    /// <summary>Uniform in [0, 1) with 24 bits.</summary>
    public float NextFloat() => (NextUInt64() >> 40) * (1f / (1 << 24));

    /// <summary>Uniform in [0, 1) with 53 bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform integer in [0, n).</summary>
    public int NextInt(int n)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(n, 0);
        return (int)((NextUInt64() >> 33) % (ulong)n);
    }

    /// <summary>Standard normal (Box–Muller).</summary>
    public double NextGaussian()
    {
        double u1 = 1.0 - NextDouble(), u2 = NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    /// <summary>An independent generator derived from this one's next output.</summary>
    public SplitMix64 Fork() => new(NextUInt64());
}
