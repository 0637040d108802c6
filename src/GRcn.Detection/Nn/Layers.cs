// The parameterised layers: 2-D convolution, linear (fully connected), group norm and frozen
// batch norm, named like torchvision's modules (weight, bias, running_mean, running_var) so
// state dicts load.
using GRcn.Detection.Autograd;
using GRcn.Kernels;

namespace GRcn.Detection.Nn;

/// <summary>2-D convolution: weight (out, in, k, k), optional bias (out).</summary>
public sealed class Conv2dLayer : Module
{
    /// <summary>Creates the layer, drawing weights with <paramref name="init"/> (bias zero).</summary>
    public Conv2dLayer(Device device, SplitMix64 rng, int inChannels, int outChannels, int kernel, int stride = 1, int padding = 0,
        int dilation = 1, bool bias = true, Init? init = null) : base(device)
    {
        if (inChannels < 1 || outChannels < 1 || kernel < 1)
            throw new ArgumentException($"channels and kernel must be positive; got in {inChannels}, out {outChannels}, kernel {kernel}");
        InChannels = inChannels;
        OutChannels = outChannels;
        Kernel = kernel;
        Options = Conv2dOptions.Create(stride, padding, dilation);
        Weight = AddParameter("weight", (init ?? new Init.KaimingNormal()).Create(device, rng, outChannels, inChannels, kernel, kernel));
        Bias = bias ? AddParameter("bias", Tensor.Zeros(device, outChannels), weightDecay: false) : null;
    }

    /// <summary>Input channels.</summary>
    public int InChannels { get; }

    /// <summary>Output channels.</summary>
    public int OutChannels { get; }

    /// <summary>Kernel size (square).</summary>
    public int Kernel { get; }

    /// <summary>Stride, padding and dilation.</summary>
    public Conv2dOptions Options { get; set; }

    /// <summary>Weight (out, in, k, k).</summary>
    public Parameter Weight { get; }

    /// <summary>Bias (out), or null.</summary>
    public Parameter? Bias { get; }

    /// <summary>y = conv(x) (N, out, H', W').</summary>
    public Variable Forward(Graph g, Variable x) => g.Conv2d(x, Weight, Bias, Options);
}

/// <summary>Fully connected layer: weight (out, in), bias (out).</summary>
public sealed class Linear : Module
{
    /// <summary>Creates the layer with weights drawn by <paramref name="init"/> and zero bias.</summary>
    public Linear(Device device, SplitMix64 rng, int inFeatures, int outFeatures, Init? init = null) : base(device)
    {
        if (inFeatures < 1 || outFeatures < 1)
            throw new ArgumentException($"features must be positive; got in {inFeatures}, out {outFeatures}");
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Weight = AddParameter("weight", (init ?? new Init.Normal(0.01f)).Create(device, rng, outFeatures, inFeatures));
        Bias = AddParameter("bias", Tensor.Zeros(device, outFeatures), weightDecay: false);
    }

    /// <summary>Input features.</summary>
    public int InFeatures { get; }

    /// <summary>Output features.</summary>
    public int OutFeatures { get; }

    /// <summary>Weight (out, in).</summary>
    public Parameter Weight { get; }

    /// <summary>Bias (out).</summary>
    public Parameter Bias { get; }

    /// <summary>y = x·Wᵀ + b for x (N, in) — or (N, ...) flattened to (N, in).</summary>
    public Variable Forward(Graph g, Variable x)
    {
        if (x.Value.Rank != 2) x = g.Reshape(x, x.Dim(0), -1);
        if (x.Dim(1) != InFeatures)
            throw new ArgumentException($"x must have shape (N, {InFeatures}); got {x.Value.ShapeString}", nameof(x));
        return g.Linear(x, Weight, Bias);
    }
}

/// <summary>Group normalisation (torch.nn.GroupNorm, affine): weight (C) initialised to 1, bias (C) to 0.</summary>
public sealed class GroupNorm2d : Module
{
    /// <summary>Creates the layer over <paramref name="channels"/> in <paramref name="groups"/> groups (a divisor of the channels).</summary>
    public GroupNorm2d(Device device, int groups, int channels, float epsilon = 1e-5f) : base(device)
    {
        if (channels < 1 || groups < 1 || channels % groups != 0)
            throw new ArgumentException($"groups ({groups}) must be a positive divisor of the channels ({channels})", nameof(groups));
        Groups = groups;
        Channels = channels;
        Epsilon = epsilon;
        Weight = AddParameter("weight", Ones(device, channels), weightDecay: false);
        Bias = AddParameter("bias", Tensor.Zeros(device, channels), weightDecay: false);
    }

    /// <summary>Groups the channels are split into.</summary>
    public int Groups { get; }

    /// <summary>Channels.</summary>
    public int Channels { get; }

    /// <summary>ε added to the variance.</summary>
    public float Epsilon { get; }

    /// <summary>γ (C).</summary>
    public Parameter Weight { get; }

    /// <summary>β (C).</summary>
    public Parameter Bias { get; }

    /// <summary>The largest divisor of <paramref name="channels"/> that is at most <paramref name="groups"/> (32 groups of a 16-channel layer: 16).</summary>
    public static int GroupsFor(int channels, int groups)
    {
        for (int g = Math.Min(groups, channels); g > 1; g--)
            if (channels % g == 0) return g;
        return 1;
    }

    /// <summary>y = group_norm(x) for x (N, C, ...).</summary>
    public Variable Forward(Graph g, Variable x)
    {
        if (x.Value.Rank < 2 || x.Dim(1) != Channels)
            throw new ArgumentException($"x must have shape (N, {Channels}, ...); got {x.Value.ShapeString}", nameof(x));
        return g.GroupNorm(x, Groups, Weight, Bias, Epsilon);
    }
}

/// <summary>
/// Batch norm with fixed statistics and affine terms (torchvision's FrozenBatchNorm2d):
/// y = (x − running_mean) / √(running_var + ε) · weight + bias, nothing trainable.
/// </summary>
public sealed class FrozenBatchNorm2d : Module
{
    private Tensor? _scale, _shift;
    private long _version = -1;

    /// <summary>Creates an identity-initialised frozen batch norm over <paramref name="channels"/>.</summary>
    public FrozenBatchNorm2d(Device device, int channels, float epsilon = 1e-5f) : base(device)
    {
        Channels = channels;
        Epsilon = epsilon;
        Weight = AddParameter("weight", Ones(device, channels), buffer: true);
        Bias = AddParameter("bias", Tensor.Zeros(device, channels), buffer: true);
        RunningMean = AddParameter("running_mean", Tensor.Zeros(device, channels), buffer: true);
        RunningVar = AddParameter("running_var", Ones(device, channels), buffer: true);
    }

    /// <summary>Channels.</summary>
    public int Channels { get; }

    /// <summary>ε added to the variance (torchvision: 1e-5).</summary>
    public float Epsilon { get; }

    /// <summary>γ.</summary>
    public Parameter Weight { get; }

    /// <summary>β.</summary>
    public Parameter Bias { get; }

    /// <summary>Running mean.</summary>
    public Parameter RunningMean { get; }

    /// <summary>Running variance.</summary>
    public Parameter RunningVar { get; }

    /// <summary>Call after loading new statistics so the folded scale and shift are recomputed.</summary>
    public void Invalidate() => _version = -1;

    /// <summary>y = x·scale + shift per channel, x (N, C, H, W).</summary>
    public Variable Forward(Graph g, Variable x)
    {
        if (x.Value.Rank != 4 || x.Dim(1) != Channels)
            throw new ArgumentException($"x must have shape (N, {Channels}, H, W); got {x.Value.ShapeString}", nameof(x));
        if (_version != StateVersion.Current || _scale is null)
        {
            // folded as torchvision does: scale = w · rsqrt(var + eps), shift = b − mean · scale
            var w = Weight.Value.ToArray<float>();
            var b = Bias.Value.ToArray<float>();
            var m = RunningMean.Value.ToArray<float>();
            var v = RunningVar.Value.ToArray<float>();
            var scale = new float[Channels];
            var shift = new float[Channels];
            for (int c = 0; c < Channels; c++)
            {
                scale[c] = w[c] * (1f / MathF.Sqrt(v[c] + Epsilon));
                shift[c] = b[c] - m[c] * scale[c];
            }
            _scale ??= Tensor.Empty(Device, DataType.Float32, Channels);
            _shift ??= Tensor.Empty(Device, DataType.Float32, Channels);
            _scale.CopyFrom<float>(scale);
            _shift.CopyFrom<float>(shift);
            _version = StateVersion.Current;
        }
        return g.ChannelAffine(x, _scale, _shift!);
    }
}

/// <summary>A global counter bumped whenever parameters are loaded from outside, so cached folds refresh.</summary>
public static class StateVersion
{
    private static long _current;

    /// <summary>The current version.</summary>
    public static long Current => Interlocked.Read(ref _current);

    /// <summary>Marks every cached fold stale.</summary>
    public static void Bump() => Interlocked.Increment(ref _current);
}
