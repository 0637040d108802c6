// The RPN head, as torchvision's RPNHead (conv_depth 1): t = ReLU(conv3×3(x)) with C → C
// channels and padding 1, objectness logits = conv1×1(t) with C → A, box deltas = conv1×1(t)
// with C → 4A; every weight N(0, 0.01²), every bias 0. Shapes: x (N, C, H, W) → objectness
// (N, A, H, W), deltas (N, 4A, H, W) with channel 4a + k = coordinate k of anchor a.
// Parameter names: conv.weight, conv.bias, cls_logits.weight, cls_logits.bias,
// bbox_pred.weight, bbox_pred.bias; torchvision ≥ 0.13 state dicts name the first pair
// conv.0.0.weight / conv.0.0.bias (its _version 2), which a loader maps to conv.*.
using GRcn.Detection.Autograd;
using GRcn.Detection.Nn;
using GRcn.Kernels;

namespace GRcn.Detection.Rpn;

/// <summary>3×3 conv + ReLU, then 1×1 objectness and 1×1 box-delta convolutions (torchvision's RPNHead).</summary>
public sealed class RpnHead : Module
{
    /// <summary>Creates the head with torchvision's initialisation (N(0, 0.01²) weights, zero biases), drawn from <paramref name="rng"/>.</summary>
    /// <param name="device">Device of the parameters.</param>
    /// <param name="rng">Random stream of the initial weights (conv, then cls_logits, then bbox_pred).</param>
    /// <param name="inChannels">C, channels of the feature map.</param>
    /// <param name="numAnchors">A, anchors per location.</param>
    public RpnHead(Device device, SplitMix64 rng, int inChannels, int numAnchors) : base(device)
    {
        ArgumentNullException.ThrowIfNull(rng);
        ArgumentOutOfRangeException.ThrowIfLessThan(inChannels, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(numAnchors, 1);
        InChannels = inChannels;
        NumAnchors = numAnchors;
        var init = new Init.Normal(0.01f);
        Conv = AddModule("conv", new Conv2dLayer(device, rng, inChannels, inChannels, 3, padding: 1, init: init));
        ClsLogits = AddModule("cls_logits", new Conv2dLayer(device, rng, inChannels, numAnchors, 1, init: init));
        BboxPred = AddModule("bbox_pred", new Conv2dLayer(device, rng, inChannels, 4 * numAnchors, 1, init: init));
    }

    /// <summary>C.</summary>
    public int InChannels { get; }

    /// <summary>A.</summary>
    public int NumAnchors { get; }

    /// <summary>The 3×3 convolution (C → C).</summary>
    public Conv2dLayer Conv { get; }

    /// <summary>The objectness convolution (C → A).</summary>
    public Conv2dLayer ClsLogits { get; }

    /// <summary>The box-delta convolution (C → 4A).</summary>
    public Conv2dLayer BboxPred { get; }

    /// <summary>Objectness logits (N, A, H, W) and deltas (N, 4A, H, W) of <paramref name="features"/> (N, C, H, W).</summary>
    public (Variable Objectness, Variable Deltas) Forward(Graph g, Variable features)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(features);
        if (features.Value.Rank != 4 || features.Dim(1) != InChannels)
            throw new ArgumentException($"features must have shape (N, {InChannels}, H, W); got {features.Value.ShapeString}", nameof(features));
        var t = g.Relu(Conv.Forward(g, features));
        return (ClsLogits.Forward(g, t), BboxPred.Forward(g, t));
    }
}
