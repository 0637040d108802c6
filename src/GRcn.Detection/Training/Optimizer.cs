// The optimisers: SGD with momentum and weight decay (PyTorch's torch.optim.SGD semantics:
// d = g + λ·w; v = μ·v + d, v = d on the first step; w −= lr·v) and AdamW (torch.optim.AdamW,
// decoupled weight decay), optional clipping of the global gradient norm, and the
// learning-rate schedule (linear warm-up, then ×γ at each step milestone, or a
// half-cosine decay to zero).
// Updates run on the parameters' device through the kernel library's elementwise ops.
using GRcn.Detection.Autograd;
using GRcn.Kernels;

namespace GRcn.Detection.Training;

/// <summary>Update rule.</summary>
[System.Text.Json.Serialization.JsonConverter(typeof(System.Text.Json.Serialization.JsonStringEnumConverter<OptimizerKind>))]
public enum OptimizerKind
{
    /// <summary>SGD with momentum (the paper's).</summary>
    Sgd,

    /// <summary>AdamW (Loshchilov &amp; Hutter): per-element step sizes from running gradient moments, decoupled weight decay.</summary>
    AdamW,
}

/// <summary>Optimiser and schedule settings.</summary>
public sealed record TrainingOptions
{
    /// <summary>Update rule (default SGD).</summary>
    public OptimizerKind Optimizer { get; init; } = OptimizerKind.Sgd;

    /// <summary>AdamW: decay β₁ of the first moment.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>AdamW: decay β₂ of the second moment.</summary>
    public double Beta2 { get; init; } = 0.999;

    /// <summary>AdamW: ε added to the root of the second moment.</summary>
    public double Epsilon { get; init; } = 1e-8;

    /// <summary>Base learning rate (the paper: 0.001, then 0.0001).</summary>
    public double LearningRate { get; init; } = 0.001;

    /// <summary>SGD: momentum μ.</summary>
    public double Momentum { get; init; } = 0.9;

    /// <summary>Weight decay λ (weights only; biases, norm affine terms and frozen statistics are not decayed); decoupled for AdamW.</summary>
    public double WeightDecay { get; init; } = 5e-4;

    /// <summary>Iterations of linear warm-up from <see cref="WarmupFactor"/>·lr to lr.</summary>
    public int WarmupIterations { get; init; }

    /// <summary>Starting fraction of the learning rate during warm-up.</summary>
    public double WarmupFactor { get; init; } = 1.0 / 3;

    /// <summary>Iterations at which the learning rate is multiplied by <see cref="Gamma"/>.</summary>
    public int[] Steps { get; init; } = [];

    /// <summary>Step decay factor.</summary>
    public double Gamma { get; init; } = 0.1;

    /// <summary>
    /// When positive, the learning rate decays as lr·½(1 + cos(π·t / T)) with T this many iterations (reaching 0 at T)
    /// instead of the <see cref="Steps"/>; the warm-up still applies on top.
    /// </summary>
    public int CosineIterations { get; init; }

    /// <summary>Clip the global L2 norm of the gradients to this value (null: no clipping).</summary>
    public double? ClipGradientNorm { get; init; }

    /// <summary>Learning rate at iteration <paramref name="iteration"/> (0-based).</summary>
    public double LearningRateAt(int iteration)
    {
        double lr = LearningRate;
        if (CosineIterations > 0)
            lr *= 0.5 * (1 + Math.Cos(Math.PI * Math.Min(iteration, CosineIterations) / CosineIterations));
        else
            foreach (var s in Steps)
                if (iteration >= s) lr *= Gamma;
        if (iteration < WarmupIterations)
        {
            double alpha = (double)iteration / WarmupIterations;
            lr *= WarmupFactor * (1 - alpha) + alpha;
        }
        return lr;
    }
}

/// <summary>SGD with momentum or AdamW over a fixed list of named parameters.</summary>
public sealed class Optimizer : IDisposable
{
    private readonly (string Name, Parameter Parameter)[] _parameters;
    private readonly Dictionary<string, Tensor> _state = [];

    /// <summary>Optimises the trainable ones of <paramref name="parameters"/>.</summary>
    public Optimizer(IEnumerable<(string Name, Parameter Parameter)> parameters, TrainingOptions options)
    {
        _parameters = parameters.Where(p => p.Parameter.Trainable).ToArray();
        Options = options;
    }

    /// <summary>Settings.</summary>
    public TrainingOptions Options { get; }

    /// <summary>
    /// Per-parameter state for checkpoints, keyed <c>velocity.NAME</c> (SGD momentum) or
    /// <c>exp_avg.NAME</c> and <c>exp_avg_sq.NAME</c> (AdamW moments).
    /// </summary>
    public IReadOnlyDictionary<string, Tensor> State => _state;

    /// <summary>The global gradient L2 norm, summed on the gradients' device.</summary>
    public double GradientNorm()
    {
        var grads = new List<Tensor>(_parameters.Length);
        foreach (var (_, p) in _parameters)
            if (p.Grad is not null) grads.Add(p.Grad);
        // host copy: the sum of squares, 1 double
        return Math.Sqrt(Loss.SumOfSquares(grads));
    }

    /// <summary>Applies update number <paramref name="step"/> (1-based) with learning rate <paramref name="lr"/>, then zeroes the gradients.</summary>
    public void Step(double lr, int step)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(step, 1);
        float scale = 1f;
        if (Options.ClipGradientNorm is { } clip)
        {
            double norm = GradientNorm();
            if (norm > clip) scale = (float)(clip / (norm + 1e-6));
        }
        float mu = (float)Options.Momentum;
        foreach (var (name, p) in _parameters)
        {
            if (p.Grad is null) continue;
            var grad = p.Grad;
            if (scale != 1f) Elementwise.Scale(grad, scale, grad);
            float wd = p.WeightDecay ? (float)Options.WeightDecay : 0f;
            if (Options.Optimizer == OptimizerKind.AdamW)
            {
                var m = Buffer("exp_avg." + name, grad);
                var v = Buffer("exp_avg_sq." + name, grad);
                Elementwise.AdamWUpdate(p.Value, grad, m, v,
                    new AdamWStep((float)lr, (float)Options.Beta1, (float)Options.Beta2, (float)Options.Epsilon, wd, step));
                grad.Clear();
                continue;
            }
            if (wd != 0f) Elementwise.AddScaled(grad, p.Value, wd);
            if (mu != 0f)
            {
                if (!_state.TryGetValue("velocity." + name, out var v))
                    _state["velocity." + name] = v = grad.Clone();
                else
                {
                    Elementwise.Scale(v, mu, v);
                    Elementwise.AddScaled(v, grad);
                }
                Elementwise.AddScaled(p.Value, v, (float)-lr);
            }
            else Elementwise.AddScaled(p.Value, grad, (float)-lr);
            grad.Clear();
        }
    }

    private Tensor Buffer(string key, Tensor like)
    {
        if (!_state.TryGetValue(key, out var t))
        {
            _state[key] = t = Tensor.Empty(like.Device, DataType.Float32, like.Shape);
            t.Clear();
        }
        return t;
    }

    /// <summary>Restores one entry of <see cref="State"/> (checkpoint load); the optimiser takes ownership.</summary>
    public void SetState(string key, Tensor value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (_state.Remove(key, out var old)) old.Dispose();
        _state[key] = value;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var v in _state.Values) v.Dispose();
        _state.Clear();
    }
}
