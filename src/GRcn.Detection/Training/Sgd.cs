// SGD with momentum and weight decay (PyTorch's torch.optim.SGD semantics: d = g + λ·w;
// v = μ·v + d, v = d on the first step; w −= lr·v), optional clipping of the global gradient
// norm, and the learning-rate schedule (linear warm-up, then ×γ at each step milestone).
// Updates run on the parameters' device through the kernel library's elementwise ops.
using GRcn.Detection.Autograd;
using GRcn.Kernels;

namespace GRcn.Detection.Training;

/// <summary>Optimiser and schedule settings.</summary>
public sealed record TrainingOptions
{
    /// <summary>Base learning rate (the paper: 0.001, then 0.0001).</summary>
    public double LearningRate { get; init; } = 0.001;

    /// <summary>Momentum μ.</summary>
    public double Momentum { get; init; } = 0.9;

    /// <summary>Weight decay λ (weights only; biases and frozen statistics are not decayed).</summary>
    public double WeightDecay { get; init; } = 5e-4;

    /// <summary>Iterations of linear warm-up from <see cref="WarmupFactor"/>·lr to lr.</summary>
    public int WarmupIterations { get; init; }

    /// <summary>Starting fraction of the learning rate during warm-up.</summary>
    public double WarmupFactor { get; init; } = 1.0 / 3;

    /// <summary>Iterations at which the learning rate is multiplied by <see cref="Gamma"/>.</summary>
    public int[] Steps { get; init; } = [];

    /// <summary>Step decay factor.</summary>
    public double Gamma { get; init; } = 0.1;

    /// <summary>Clip the global L2 norm of the gradients to this value (null: no clipping).</summary>
    public double? ClipGradientNorm { get; init; }

    /// <summary>Learning rate at iteration <paramref name="iteration"/> (0-based).</summary>
    public double LearningRateAt(int iteration)
    {
        double lr = LearningRate;
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

/// <summary>SGD with momentum over a fixed list of named parameters.</summary>
public sealed class Sgd : IDisposable
{
    private readonly (string Name, Parameter Parameter)[] _parameters;
    private readonly Dictionary<string, Tensor> _velocity = [];

    /// <summary>Optimises the trainable ones of <paramref name="parameters"/>.</summary>
    public Sgd(IEnumerable<(string Name, Parameter Parameter)> parameters, TrainingOptions options)
    {
        _parameters = parameters.Where(p => p.Parameter.Trainable).ToArray();
        Options = options;
    }

    /// <summary>Settings.</summary>
    public TrainingOptions Options { get; }

    /// <summary>Momentum buffers by parameter name (for checkpoints).</summary>
    public IReadOnlyDictionary<string, Tensor> Velocity => _velocity;

    /// <summary>The global gradient L2 norm (computed on the host).</summary>
    public double GradientNorm()
    {
        double sum = 0;
        foreach (var (_, p) in _parameters)
        {
            if (p.Grad is null) continue;
            foreach (var v in p.Grad.Device.Kind == DeviceKind.Cpu ? p.Grad.AsSpan<float>() : p.Grad.ToArray<float>()) sum += (double)v * v;
        }
        return Math.Sqrt(sum);
    }

    /// <summary>Applies one update with learning rate <paramref name="lr"/>, then zeroes the gradients.</summary>
    public void Step(double lr)
    {
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
            if (wd != 0f) Elementwise.AddScaled(grad, p.Value, wd);
            if (mu != 0f)
            {
                if (!_velocity.TryGetValue(name, out var v))
                    _velocity[name] = v = grad.Clone();
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

    /// <summary>Restores a momentum buffer (checkpoint load).</summary>
    public void SetVelocity(string name, Tensor value)
    {
        if (_velocity.Remove(name, out var old)) old.Dispose();
        _velocity[name] = value;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var v in _velocity.Values) v.Dispose();
        _velocity.Clear();
    }
}
