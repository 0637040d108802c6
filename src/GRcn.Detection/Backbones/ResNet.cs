// ResNet-50/101/152 in torchvision's v1.5 layout (stride on the 3×3 conv2 of a bottleneck) with
// frozen batch norm everywhere, as detection backbones run it. Names follow torchvision
// ("conv1.weight", "bn1.running_mean", "layer3.5.conv2.weight", "layer2.0.downsample.0.weight")
// so its state dicts load. Shapes: stem (N, 3, H, W) → (N, 64w, ⌈H/4⌉, ⌈W/4⌉); layer k multiplies
// the stride by 2 (k ≥ 2) and outputs 256w·2^(k−1) channels. A layer can run a block range and
// override its first block's stride with the same weights (the G-RCN localisation branch runs
// layer3 at stride 1). Work is parallelised inside the kernel ops.
using GRcn.Detection.Autograd;
using GRcn.Detection.Nn;
using GRcn.Kernels;
using GRcn.Kernels.Serialization;

namespace GRcn.Detection.Backbones;

/// <summary>
/// torchvision's Bottleneck: relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x))))))) + identity), identity =
/// downsample(x) (1×1 conv with the block's stride, then batch norm) or x.
/// </summary>
public sealed class Bottleneck : Module
{
    /// <summary>Output channels per unit of <see cref="Planes"/>.</summary>
    public const int Expansion = 4;

    /// <summary>
    /// Creates a block from <paramref name="inChannels"/> to 4·<paramref name="planes"/> channels with convs drawn
    /// Kaiming normal (fan_out, ReLU) and identity batch norms.
    /// </summary>
    /// <param name="device">Where the parameters live.</param>
    /// <param name="rng">Weight generator.</param>
    /// <param name="inChannels">Input channels.</param>
    /// <param name="planes">Width of the 1×1 and 3×3 convs (output is <see cref="Expansion"/>·planes).</param>
    /// <param name="stride">Stride of conv2 and of the downsample conv.</param>
    /// <param name="downsample">Whether the identity path has a 1×1 conv + batch norm (needed when stride ≠ 1 or channels change).</param>
    public Bottleneck(Device device, SplitMix64 rng, int inChannels, int planes, int stride = 1, bool downsample = false)
        : this(device, rng, inChannels, planes, stride, downsample, new Init.KaimingNormal())
    {
    }

    private Bottleneck(Device device, SplitMix64 rng, int inChannels, int planes, int stride, bool downsample, Init init) : base(device)
    {
        ArgumentNullException.ThrowIfNull(rng);
        if (inChannels < 1 || planes < 1)
            throw new ArgumentOutOfRangeException(nameof(planes), $"channels must be positive; got in {inChannels}, planes {planes}");
        ArgumentOutOfRangeException.ThrowIfLessThan(stride, 1);
        int outChannels = planes * Expansion;
        if (!downsample && (stride != 1 || inChannels != outChannels))
            throw new ArgumentException($"a block with stride {stride} from {inChannels} to {outChannels} channels needs a downsample path", nameof(downsample));
        InChannels = inChannels;
        Planes = planes;
        OutChannels = outChannels;
        Stride = stride;
        Conv1 = AddModule("conv1", new Conv2dLayer(device, rng, inChannels, planes, 1, bias: false, init: init));
        Bn1 = AddModule("bn1", new FrozenBatchNorm2d(device, planes));
        Conv2 = AddModule("conv2", new Conv2dLayer(device, rng, planes, planes, 3, stride, padding: 1, bias: false, init: init));
        Bn2 = AddModule("bn2", new FrozenBatchNorm2d(device, planes));
        Conv3 = AddModule("conv3", new Conv2dLayer(device, rng, planes, outChannels, 1, bias: false, init: init));
        Bn3 = AddModule("bn3", new FrozenBatchNorm2d(device, outChannels));
        if (downsample)
        {
            DownsampleConv = AddModule("downsample.0", new Conv2dLayer(device, rng, inChannels, outChannels, 1, stride, bias: false, init: init));
            DownsampleBn = AddModule("downsample.1", new FrozenBatchNorm2d(device, outChannels));
        }
    }

    /// <summary>Input channels.</summary>
    public int InChannels { get; }

    /// <summary>Width of conv1 and conv2.</summary>
    public int Planes { get; }

    /// <summary>Output channels (4·planes).</summary>
    public int OutChannels { get; }

    /// <summary>Stride of conv2 and the downsample conv.</summary>
    public int Stride { get; }

    /// <summary>1×1 reduction.</summary>
    public Conv2dLayer Conv1 { get; }

    /// <summary>Batch norm after conv1.</summary>
    public FrozenBatchNorm2d Bn1 { get; }

    /// <summary>3×3 conv carrying the stride.</summary>
    public Conv2dLayer Conv2 { get; }

    /// <summary>Batch norm after conv2.</summary>
    public FrozenBatchNorm2d Bn2 { get; }

    /// <summary>1×1 expansion.</summary>
    public Conv2dLayer Conv3 { get; }

    /// <summary>Batch norm after conv3.</summary>
    public FrozenBatchNorm2d Bn3 { get; }

    /// <summary>Identity-path 1×1 conv ("downsample.0"), or null.</summary>
    public Conv2dLayer? DownsampleConv { get; }

    /// <summary>Identity-path batch norm ("downsample.1"), or null.</summary>
    public FrozenBatchNorm2d? DownsampleBn { get; }

    /// <summary>
    /// The block on x (N, InChannels, H, W) → (N, OutChannels, ⌈H/s⌉, ⌈W/s⌉), s = <paramref name="strideOverride"/> ?? <see cref="Stride"/>
    /// (same weights; another stride needs a downsample path).
    /// </summary>
    public Variable Forward(Graph g, Variable x, int? strideOverride = null)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(x);
        if (x.Value.Rank != 4 || x.Dim(1) != InChannels)
            throw new ArgumentException($"x must have shape (N, {InChannels}, H, W); got {x.Value.ShapeString}", nameof(x));
        int stride = strideOverride ?? Stride;
        if (stride < 1) throw new ArgumentOutOfRangeException(nameof(strideOverride), stride, "stride must be at least 1");
        if (stride != 1 && DownsampleConv is null)
            throw new ArgumentException($"stride {stride} needs a downsample path, which this block lacks", nameof(strideOverride));

        var y = Bn1.Forward(g, Conv1.Forward(g, x));
        y = g.Relu(y);
        y = g.Conv2d(y, Conv2.Weight, Conv2.Bias, Conv2.Options with { StrideH = stride, StrideW = stride });
        y = g.Relu(Bn2.Forward(g, y));
        y = Bn3.Forward(g, Conv3.Forward(g, y));
        var identity = x;
        if (DownsampleConv is not null)
        {
            identity = g.Conv2d(x, DownsampleConv.Weight, DownsampleConv.Bias, DownsampleConv.Options with { StrideH = stride, StrideW = stride });
            identity = DownsampleBn!.Forward(g, identity);
        }
        return g.Relu(g.Add(y, identity));
    }

    /// <summary>A copy with the same values and its own parameters.</summary>
    public Bottleneck Clone()
    {
        var copy = new Bottleneck(Device, new SplitMix64(0), InChannels, Planes, Stride, DownsampleConv is not null, new Init.Zeros());
        var dst = copy.NamedParameters();
        var src = NamedParameters();
        for (int i = 0; i < src.Count; i++) dst[i].Parameter.Value.CopyFrom(src[i].Parameter.Value);
        return copy;
    }
}

/// <summary>torchvision's ResNet-50/101/152 trunk (no avgpool/fc) with frozen batch norm and a width multiplier.</summary>
public sealed class ResNet : Module
{
    private readonly Bottleneck[][] _layers = new Bottleneck[4][];

    /// <summary>
    /// Creates the network: stem width round(64·<paramref name="width"/>), layer k planes round(64·2^(k−1)·width) (at least 1);
    /// convs Kaiming normal (fan_out, ReLU); batch norms weight 1, bias 0, mean 0, var 1 (torchvision's init, no zero-init of bn3).
    /// </summary>
    /// <param name="device">Where the parameters live.</param>
    /// <param name="rng">Weight generator.</param>
    /// <param name="depth">50, 101 or 152.</param>
    /// <param name="width">Width multiplier.</param>
    public ResNet(Device device, SplitMix64 rng, int depth = 50, double width = 1.0) : base(device)
    {
        ArgumentNullException.ThrowIfNull(rng);
        int[] blocks = depth switch
        {
            50 => [3, 4, 6, 3],
            101 => [3, 4, 23, 3],
            152 => [3, 8, 36, 3],
            _ => throw new ArgumentOutOfRangeException(nameof(depth), depth, "depth must be 50, 101 or 152"),
        };
        if (!(width > 0) || double.IsInfinity(width))
            throw new ArgumentOutOfRangeException(nameof(width), width, "width multiplier must be positive and finite");
        Depth = depth;
        Width = width;
        StemChannels = Scaled(64, width);
        Conv1 = AddModule("conv1", new Conv2dLayer(device, rng, 3, StemChannels, 7, stride: 2, padding: 3, bias: false));
        Bn1 = AddModule("bn1", new FrozenBatchNorm2d(device, StemChannels));
        int channels = StemChannels;
        for (int k = 0; k < 4; k++)
        {
            int planes = Scaled(64 << k, width);
            int stride = k == 0 ? 1 : 2;
            _layers[k] = new Bottleneck[blocks[k]];
            for (int m = 0; m < blocks[k]; m++)
            {
                // as torchvision's _make_layer: only the first block strides and (if shapes change) downsamples
                bool first = m == 0;
                bool downsample = first && (stride != 1 || channels != planes * Bottleneck.Expansion);
                _layers[k][m] = AddModule($"layer{k + 1}.{m}", new Bottleneck(device, rng, channels, planes, first ? stride : 1, downsample));
                channels = planes * Bottleneck.Expansion;
            }
        }
    }

    private static int Scaled(int channels, double width) => Math.Max(1, (int)Math.Round(channels * width, MidpointRounding.AwayFromZero));

    /// <summary>50, 101 or 152.</summary>
    public int Depth { get; }

    /// <summary>The width multiplier.</summary>
    public double Width { get; }

    /// <summary>Output channels of the stem.</summary>
    public int StemChannels { get; }

    /// <summary>7×7 stride-2 stem convolution.</summary>
    public Conv2dLayer Conv1 { get; }

    /// <summary>Stem batch norm.</summary>
    public FrozenBatchNorm2d Bn1 { get; }

    /// <summary>The blocks of layer <paramref name="k"/> (1 … 4).</summary>
    public IReadOnlyList<Bottleneck> Layer(int k) => _layers[CheckLayer(k) - 1];

    /// <summary>Output channels of layer <paramref name="k"/> (1 … 4).</summary>
    public int OutChannels(int k) => _layers[CheckLayer(k) - 1][^1].OutChannels;

    /// <summary>conv1 (7×7 s2 p3), bn1, ReLU, max pool 3×3 s2 p1: x (N, 3, H, W) → (N, StemChannels, ⌈H/4⌉, ⌈W/4⌉).</summary>
    public Variable Stem(Graph g, Variable x)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(x);
        if (x.Value.Rank != 4 || x.Dim(1) != 3)
            throw new ArgumentException($"x must have shape (N, 3, H, W); got {x.Value.ShapeString}", nameof(x));
        var y = g.Relu(Bn1.Forward(g, Conv1.Forward(g, x)));
        return g.MaxPool2d(y, MaxPool2dOptions.Create(3, 2, 1));
    }

    /// <summary>
    /// Runs blocks [<paramref name="fromBlock"/>, <paramref name="toBlock"/>) of layer <paramref name="k"/> (toBlock is clamped
    /// to the block count); <paramref name="firstStride"/> overrides the stride of the layer's first block (only when
    /// fromBlock is 0), with the same weights.
    /// </summary>
    public Variable ForwardLayer(Graph g, Variable x, int k, int fromBlock = 0, int toBlock = int.MaxValue, int? firstStride = null)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(x);
        var layer = _layers[CheckLayer(k) - 1];
        int to = Math.Min(toBlock, layer.Length);
        if (fromBlock < 0 || fromBlock > to)
            throw new ArgumentOutOfRangeException(nameof(fromBlock), $"block range [{fromBlock}, {toBlock}) must lie within [0, {layer.Length}]");
        if (firstStride is not null && fromBlock != 0)
            throw new ArgumentException($"firstStride applies to block 0, which the range [{fromBlock}, {to}) excludes", nameof(firstStride));
        for (int m = fromBlock; m < to; m++) x = layer[m].Forward(g, x, m == 0 ? firstStride : null);
        return x;
    }

    /// <summary>
    /// Loads a torchvision ResNet state dict (<c>fc.*</c> and <c>*.num_batches_tracked</c> are ignored). Strict: a missing
    /// or unexpected entry throws <see cref="StateDictException"/>.
    /// </summary>
    public StateDictLoadResult LoadTorchvision(string path, bool strict = true) => LoadTorchvision(SafeTensorsFile.Read(path), strict);

    /// <inheritdoc cref="LoadTorchvision(string, bool)"/>
    public StateDictLoadResult LoadTorchvision(SafeTensorsFile file, bool strict = true) =>
        StateDict.Load(this, file, "", strict, name => name.StartsWith("fc.", StringComparison.Ordinal));

    private int CheckLayer(int k) =>
        k is >= 1 and <= 4 ? k : throw new ArgumentOutOfRangeException(nameof(k), k, "layer must be 1, 2, 3 or 4");
}
