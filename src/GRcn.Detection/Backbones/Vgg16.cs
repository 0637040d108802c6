// VGG16 feature extractor in torchvision's layout: features[0..31) are conv 3×3 p1 (+bias) at
// indices 0,2,5,7,10,12,14,17,19,21,24,26,28, each followed by a ReLU, and 2×2/s2 max pools at
// 4,9,16,23,30; parameters are named "features.{i}.weight/bias" so torchvision state dicts load.
// Optionally (for training from scratch) a group norm follows every convolution, before its
// ReLU; its weight and bias are named after the ReLU's index, "features.{i+1}.weight/bias".
// Forward runs any index range features[start:end) on x (N, 3, H, W); a pool index may be
// overridden per call (kept, skipped, another max pool, or a caller's module) for the detection
// variants that drop or soften pool4. CloneRange copies a range's convs into an independent
// module (a split branch with its own weights). Work is parallelised inside the kernel ops.
using GRcn.Detection.Autograd;
using GRcn.Detection.Nn;
using GRcn.Kernels;
using GRcn.Kernels.Serialization;

namespace GRcn.Detection.Backbones;

/// <summary>What a VGG max-pool index does in a forward pass.</summary>
public abstract record VggPool
{
    private VggPool() { }

    /// <summary>torchvision's 2×2 stride-2 max pool.</summary>
    public sealed record Standard : VggPool;

    /// <summary>No pooling: the input passes through.</summary>
    public sealed record Skip : VggPool;

    /// <summary>Max pooling with other options (e.g. 2×2 stride 1).</summary>
    public sealed record MaxPool(MaxPool2dOptions Options) : VggPool;

    /// <summary>A caller-supplied operation (e.g. a learned module's forward).</summary>
    public sealed record Custom(Func<Graph, Variable, Variable> Forward) : VggPool;

    /// <summary>2×2 stride-1 max pooling (the feature map shrinks by one row and column).</summary>
    public static VggPool MaxPoolStride1 { get; } = new MaxPool(MaxPool2dOptions.Create(2, 1));
}

/// <summary>The fixed index layout of torchvision's <c>vgg16().features</c>.</summary>
public static class Vgg16Layout
{
    /// <summary>Number of entries in <c>features</c> (31).</summary>
    public const int Length = 31;

    /// <summary>Indices of the 13 convolutions.</summary>
    public static IReadOnlyList<int> ConvIndices => Convs;

    /// <summary>Indices of the 5 max pools (pool1 … pool5).</summary>
    public static IReadOnlyList<int> PoolIndices { get; } = [4, 9, 16, 23, 30];

    private static readonly int[] Convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28];

    /// <summary>Output channels of each convolution at width 1.</summary>
    internal static readonly int[] BaseChannels = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512];

    /// <summary>Whether index <paramref name="i"/> is a convolution.</summary>
    public static bool IsConv(int i) => ConvSlot(i) >= 0;

    /// <summary>Whether index <paramref name="i"/> is a max pool.</summary>
    public static bool IsPool(int i) => i is 4 or 9 or 16 or 23 or 30;

    /// <summary>Position of index <paramref name="i"/> among the convolutions, or −1.</summary>
    internal static int ConvSlot(int i) => Array.IndexOf(Convs, i);

    internal static void CheckRange(int start, int end)
    {
        if (start < 0 || end > Length || start > end)
            throw new ArgumentOutOfRangeException(nameof(start), $"range [{start}, {end}) must lie within [0, {Length}]");
    }

    /// <summary>Runs features[start:end) with <paramref name="conv"/> giving the convolution at each conv index.</summary>
    internal static Variable Run(Graph g, Variable x, int start, int end, Func<int, Conv2dLayer> conv, Func<int, GroupNorm2d?> norm,
        IReadOnlyDictionary<int, VggPool>? pools)
    {
        if (pools is not null)
            foreach (var key in pools.Keys)
                if (!IsPool(key))
                    throw new ArgumentException($"pool overrides must be keyed by pool indices {string.Join(", ", PoolIndices)}; got {key}", nameof(pools));
        for (int i = start; i < end; i++)
        {
            if (IsConv(i))
            {
                x = conv(i).Forward(g, x);
                if (norm(i) is { } gn) x = gn.Forward(g, x);
            }
            else if (IsPool(i))
            {
                var mode = pools is not null && pools.TryGetValue(i, out var m) ? m : Standard;
                x = mode switch
                {
                    VggPool.Standard => g.MaxPool2d(x, MaxPool2dOptions.Create(2, 2)),
                    VggPool.Skip => x,
                    VggPool.MaxPool mp => g.MaxPool2d(x, mp.Options),
                    VggPool.Custom c => c.Forward(g, x),
                    _ => throw new ArgumentException($"unknown pool mode {mode}", nameof(pools)),
                };
            }
            else x = g.Relu(x); // i = conv index + 1
        }
        return x;
    }

    private static readonly VggPool Standard = new VggPool.Standard();
}

/// <summary>torchvision's VGG16 <c>features</c> with a width multiplier.</summary>
public sealed class Vgg16 : Module
{
    private readonly Conv2dLayer[] _convs = new Conv2dLayer[13];
    private readonly GroupNorm2d?[] _norms = new GroupNorm2d?[13];
    private readonly int[] _outChannelsAt = new int[Vgg16Layout.Length + 1];

    /// <summary>
    /// Creates the network: every convolution's output channels are round(base·<paramref name="width"/>)
    /// (at least 1), input channels 3; weights Kaiming normal (fan_out, ReLU), biases zero, as torchvision.
    /// With <paramref name="groupNormGroups"/> &gt; 0 a group norm with that many groups (or the largest
    /// divisor of the channels below it) follows every convolution.
    /// </summary>
    public Vgg16(Device device, SplitMix64 rng, double width = 1.0, int groupNormGroups = 0) : base(device)
    {
        ArgumentNullException.ThrowIfNull(rng);
        if (!(width > 0) || double.IsInfinity(width))
            throw new ArgumentOutOfRangeException(nameof(width), width, "width multiplier must be positive and finite");
        ArgumentOutOfRangeException.ThrowIfNegative(groupNormGroups);
        Width = width;
        GroupNormGroups = groupNormGroups;
        int channels = 3;
        _outChannelsAt[0] = channels;
        for (int i = 0; i < Vgg16Layout.Length; i++)
        {
            int slot = Vgg16Layout.ConvSlot(i);
            if (slot >= 0)
            {
                int outChannels = Math.Max(1, (int)Math.Round(Vgg16Layout.BaseChannels[slot] * width, MidpointRounding.AwayFromZero));
                _convs[slot] = AddModule($"features.{i}", new Conv2dLayer(device, rng, channels, outChannels, 3, padding: 1));
                if (groupNormGroups > 0)
                    _norms[slot] = AddModule($"features.{i + 1}", new GroupNorm2d(device, GroupNorm2d.GroupsFor(outChannels, groupNormGroups), outChannels));
                channels = outChannels;
            }
            _outChannelsAt[i + 1] = channels;
        }
    }

    /// <summary>The width multiplier.</summary>
    public double Width { get; }

    /// <summary>Groups of the group norm after each convolution (0: none).</summary>
    public int GroupNormGroups { get; }

    /// <summary>Channels of the output of features[..<paramref name="index"/>) (3 for index 0).</summary>
    public int OutChannelsAt(int index)
    {
        if (index < 0 || index > Vgg16Layout.Length)
            throw new ArgumentOutOfRangeException(nameof(index), index, $"index must be in [0, {Vgg16Layout.Length}]");
        return _outChannelsAt[index];
    }

    /// <summary>The convolution at features index <paramref name="index"/> (one of <see cref="Vgg16Layout.ConvIndices"/>).</summary>
    public Conv2dLayer Conv(int index)
    {
        int slot = Vgg16Layout.ConvSlot(index);
        if (slot < 0)
            throw new ArgumentOutOfRangeException(nameof(index), index, $"not a conv index; conv indices are {string.Join(", ", Vgg16Layout.ConvIndices)}");
        return _convs[slot];
    }

    /// <summary>The group norm after the convolution at features index <paramref name="index"/>, or null without group norm.</summary>
    public GroupNorm2d? Norm(int index)
    {
        Conv(index);
        return _norms[Vgg16Layout.ConvSlot(index)];
    }

    /// <summary>
    /// Runs features[<paramref name="start"/>:<paramref name="end"/>) on x (N, C, H, W), C = <see cref="OutChannelsAt"/>(start).
    /// <paramref name="pools"/> overrides what pool indices do (keys must be pool indices; ones outside the range are unused).
    /// </summary>
    public Variable Forward(Graph g, Variable x, int start, int end, IReadOnlyDictionary<int, VggPool>? pools = null)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(x);
        Vgg16Layout.CheckRange(start, end);
        CheckInput(x, _outChannelsAt[start]);
        return Vgg16Layout.Run(g, x, start, end, Conv, Norm, pools);
    }

    /// <summary>A separate module with copies of the convolutions in [<paramref name="start"/>, <paramref name="end"/>), under the same names.</summary>
    public Vgg16Block CloneRange(int start, int end)
    {
        Vgg16Layout.CheckRange(start, end);
        return new Vgg16Block(this, start, end);
    }

    /// <summary>
    /// Loads a torchvision VGG16 state dict (<c>features.*</c>; <c>classifier.*</c> and features indices
    /// past the last one are ignored). Strict: a missing or unexpected entry throws <see cref="StateDictException"/>.
    /// </summary>
    public StateDictLoadResult LoadTorchvision(string path, bool strict = true) => LoadTorchvision(SafeTensorsFile.Read(path), strict);

    /// <inheritdoc cref="LoadTorchvision(string, bool)"/>
    public StateDictLoadResult LoadTorchvision(SafeTensorsFile file, bool strict = true) =>
        StateDict.Load(this, file, "", strict, IgnoredTorchvisionKey);

    private static bool IgnoredTorchvisionKey(string name)
    {
        if (name.StartsWith("classifier.", StringComparison.Ordinal)) return true;
        if (!name.StartsWith("features.", StringComparison.Ordinal)) return false;
        int dot = name.IndexOf('.', "features.".Length);
        return dot > 0 && int.TryParse(name.AsSpan("features.".Length, dot - "features.".Length), out int i) && i >= Vgg16Layout.Length;
    }

    internal static void CheckInput(Variable x, int channels)
    {
        if (x.Value.Rank != 4 || x.Dim(1) != channels)
            throw new ArgumentException($"x must have shape (N, {channels}, H, W); got {x.Value.ShapeString}", nameof(x));
    }
}

/// <summary>Copies of a range of <see cref="Vgg16"/>'s convolutions (and group norms) with their own parameters, named as in the source.</summary>
public sealed class Vgg16Block : Module
{
    private readonly Dictionary<int, Conv2dLayer> _convs = [];
    private readonly Dictionary<int, GroupNorm2d> _norms = [];

    internal Vgg16Block(Vgg16 source, int start, int end) : base(source.Device)
    {
        Start = start;
        End = end;
        InChannels = source.OutChannelsAt(start);
        OutChannels = source.OutChannelsAt(end);
        for (int i = start; i < end; i++)
        {
            if (!Vgg16Layout.IsConv(i)) continue;
            var src = source.Conv(i);
            var copy = new Conv2dLayer(Device, new SplitMix64(0), src.InChannels, src.OutChannels, src.Kernel, bias: src.Bias is not null,
                init: new Init.Zeros()) { Options = src.Options };
            copy.Weight.Value.CopyFrom(src.Weight.Value);
            copy.Bias?.Value.CopyFrom(src.Bias!.Value);
            _convs[i] = AddModule($"features.{i}", copy);
            if (source.Norm(i) is { } srcNorm)
            {
                var norm = new GroupNorm2d(Device, srcNorm.Groups, srcNorm.Channels, srcNorm.Epsilon);
                norm.Weight.Value.CopyFrom(srcNorm.Weight.Value);
                norm.Bias.Value.CopyFrom(srcNorm.Bias.Value);
                _norms[i] = AddModule($"features.{i + 1}", norm);
            }
        }
    }

    /// <summary>First features index of the range.</summary>
    public int Start { get; }

    /// <summary>One past the last features index of the range.</summary>
    public int End { get; }

    /// <summary>Channels of the input.</summary>
    public int InChannels { get; }

    /// <summary>Channels of the output.</summary>
    public int OutChannels { get; }

    /// <summary>The convolution at features index <paramref name="index"/> (inside the range).</summary>
    public Conv2dLayer Conv(int index) =>
        _convs.TryGetValue(index, out var c) ? c : throw new ArgumentOutOfRangeException(nameof(index), index, $"no convolution at index {index} in [{Start}, {End})");

    /// <summary>Runs features[Start:End) with this block's weights; see <see cref="Vgg16.Forward"/>.</summary>
    public Variable Forward(Graph g, Variable x, IReadOnlyDictionary<int, VggPool>? pools = null)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(x);
        Vgg16.CheckInput(x, InChannels);
        return Vgg16Layout.Run(g, x, Start, End, Conv, i => _norms.GetValueOrDefault(i), pools);
    }
}
