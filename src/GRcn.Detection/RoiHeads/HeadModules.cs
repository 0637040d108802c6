// The RoI head networks: the fully connected head (VGG16 fc6/fc7, ResNet-det's two-fc head),
// the convolutional box head of Double-Head, and the predictor (class scores (R, K+1) and
// class-specific box deltas (R, 4·(K+1))). Input is the pooled RoI feature (R, C, s, s).
using GRcn.Detection.Autograd;
using GRcn.Detection.Nn;
using GRcn.Kernels;

namespace GRcn.Detection.RoiHeads;

/// <summary>A network from pooled RoI features (R, C, s, s) to a feature vector (R, OutFeatures).</summary>
public abstract class RoiFeatureHead : Module
{
    /// <summary>Creates the head on <paramref name="device"/>.</summary>
    protected RoiFeatureHead(Device device) : base(device) { }

    /// <summary>Length of the output vector.</summary>
    public abstract int OutFeatures { get; }

    /// <summary>Runs the head.</summary>
    public abstract Variable Forward(Graph g, Variable pooled);
}

/// <summary>fc6 → ReLU → dropout → fc7 → ReLU → dropout (VGG16's classifier layers; ResNet-det's two-fc head without dropout).</summary>
public sealed class FcHead : RoiFeatureHead
{
    private readonly float _dropout;

    /// <summary>Creates the head for inputs of <paramref name="inFeatures"/> = C·s·s.</summary>
    public FcHead(Device device, SplitMix64 rng, int inFeatures, int dim, float dropout) : base(device)
    {
        _dropout = dropout;
        Fc6 = AddModule("fc6", new Linear(device, rng, inFeatures, dim, new Init.TorchDefault()));
        Fc7 = AddModule("fc7", new Linear(device, rng, dim, dim, new Init.TorchDefault()));
    }

    /// <summary>First layer (torchvision VGG16 <c>classifier.0</c>).</summary>
    public Linear Fc6 { get; }

    /// <summary>Second layer (torchvision VGG16 <c>classifier.3</c>).</summary>
    public Linear Fc7 { get; }

    /// <inheritdoc/>
    public override int OutFeatures => Fc7.OutFeatures;

    /// <inheritdoc/>
    public override Variable Forward(Graph g, Variable pooled)
    {
        var x = g.Dropout(g.Relu(Fc6.Forward(g, pooled)), _dropout);
        return g.Dropout(g.Relu(Fc7.Forward(g, x)), _dropout);
    }
}

/// <summary>
/// Double-Head's convolutional box head: a 1×1 convolution to <c>dim</c> channels, two residual
/// blocks of 3×3 convolutions with ReLU, and global average pooling.
/// </summary>
public sealed class ConvBoxHead : RoiFeatureHead
{
    /// <summary>Creates the head for <paramref name="inChannels"/>-channel pooled features.</summary>
    public ConvBoxHead(Device device, SplitMix64 rng, int inChannels, int dim) : base(device)
    {
        Reduce = AddModule("reduce", new Conv2dLayer(device, rng, inChannels, dim, 1));
        Blocks = new Conv2dLayer[4];
        for (int i = 0; i < Blocks.Length; i++)
            Blocks[i] = AddModule($"block{i / 2}.conv{i % 2 + 1}", new Conv2dLayer(device, rng, dim, dim, 3, padding: 1));
    }

    /// <summary>1×1 reduction.</summary>
    public Conv2dLayer Reduce { get; }

    /// <summary>The 3×3 convolutions, two per residual block.</summary>
    public Conv2dLayer[] Blocks { get; }

    /// <inheritdoc/>
    public override int OutFeatures => Reduce.OutChannels;

    /// <inheritdoc/>
    public override Variable Forward(Graph g, Variable pooled)
    {
        var x = g.Relu(Reduce.Forward(g, pooled));
        for (int b = 0; b < Blocks.Length; b += 2)
        {
            var y = g.Relu(Blocks[b].Forward(g, x));
            y = Blocks[b + 1].Forward(g, y);
            x = g.Relu(g.Add(x, y));
        }
        return g.GlobalAveragePool(x);
    }
}

/// <summary>
/// A ResNet conv5 stage followed by global average pooling (the C4 head). The stage's blocks
/// are registered by their owner (the backbone, or a module of copies), not by this head.
/// </summary>
public sealed class ResNetC4Head : RoiFeatureHead
{
    private readonly Func<Graph, Variable, Variable> _stage;

    /// <summary>Runs <paramref name="stage"/> then pools; the stage has <paramref name="outChannels"/> outputs.</summary>
    public ResNetC4Head(Device device, Func<Graph, Variable, Variable> stage, int outChannels) : base(device)
    {
        _stage = stage;
        OutFeatures = outChannels;
    }

    /// <inheritdoc/>
    public override int OutFeatures { get; }

    /// <inheritdoc/>
    public override Variable Forward(Graph g, Variable pooled) => g.GlobalAveragePool(_stage(g, pooled));
}

/// <summary>Class scores and class-specific box deltas from a head's feature vector.</summary>
public sealed class BoxPredictor : Module
{
    /// <summary>Creates cls_score (normal σ 0.01) and bbox_pred (normal σ 0.001), as Faster R-CNN initialises them.</summary>
    public BoxPredictor(Device device, SplitMix64 rng, int inFeatures, int numClassesWithBackground, bool scores = true, bool boxes = true) : base(device)
    {
        if (scores) ClsScore = AddModule("cls_score", new Linear(device, rng, inFeatures, numClassesWithBackground, new Init.Normal(0.01f)));
        if (boxes) BboxPred = AddModule("bbox_pred", new Linear(device, rng, inFeatures, 4 * numClassesWithBackground, new Init.Normal(0.001f)));
    }

    /// <summary>(R, K+1) class logits layer, or null.</summary>
    public Linear? ClsScore { get; }

    /// <summary>(R, 4(K+1)) box delta layer, or null.</summary>
    public Linear? BboxPred { get; }
}
