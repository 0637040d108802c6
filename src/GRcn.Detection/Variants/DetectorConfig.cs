// The configuration of one detector: backbone, where it splits into classification and
// localization branches and what each branch changes (pool4, stride), context attention,
// the RoI head arrangement, the pooler, the losses, and every training/inference constant
// of Faster R-CNN. Every variant of docs/variants.md is a value of this record.
using System.Text.Json.Serialization;
using GRcn.Detection.Rpn;

namespace GRcn.Detection.Variants;

/// <summary>Backbone network.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<BackboneKind>))]
public enum BackboneKind
{
    /// <summary>VGG16 (torchvision <c>features.N</c>); feature map conv5_3, stride 16.</summary>
    Vgg16,

    /// <summary>ResNet-50 (torchvision layout), frozen batch norm.</summary>
    ResNet50,

    /// <summary>ResNet-101 (torchvision layout), frozen batch norm.</summary>
    ResNet101,
}

/// <summary>What a VGG16 branch does at pool4 (the 2×2 stride-2 pooling before conv5).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<Pool4Mode>))]
public enum Pool4Mode
{
    /// <summary>2×2 max pool, stride 2 (the original; branch stride 16).</summary>
    MaxPool,

    /// <summary>No pool4 (<c>-pool</c>; branch stride 8).</summary>
    Remove,

    /// <summary>2×2 max pool with stride 1 (<c>pool(2,2,1)</c>; stride 8, map one pixel smaller).</summary>
    MaxPoolStride1,

    /// <summary>A learned 2×2 convolution with stride 2 (<c>conv(2,2,2)</c>; stride 16).</summary>
    LearnedConv,
}

/// <summary>How the RoI head serves the classification and localization outputs.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<HeadArrangement>))]
public enum HeadArrangement
{
    /// <summary>One head R; when the two paths' pooled features differ (split backbone, context on one path) R runs on both, weights shared.</summary>
    Shared,

    /// <summary>Two independent heads: one feeds the class scores, the other the box deltas (<c>detect-RF</c>).</summary>
    Separate,

    /// <summary>Two heads of the same kind on the same feature, both predicting everything, outputs averaged (<c>detect-S</c>).</summary>
    Averaged,

    /// <summary>Fully connected head for classification, convolutional head for box regression (<c>double-head</c>).</summary>
    DoubleHead,
}

/// <summary>RoI feature extraction op.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<PoolerKind>))]
public enum PoolerKind
{
    /// <summary>torchvision.ops.roi_pool.</summary>
    RoiPool,

    /// <summary>torchvision.ops.roi_align (aligned = false, sampling ratio 2, as torchvision's detection heads).</summary>
    RoiAlign,

    /// <summary>
    /// torchvision.ops.roi_align with aligned = true (detectron2's ROIAlignV2), sampling ratio 2: a box corner x maps to
    /// x·scale − 0.5, so the samples sit where the box is rather than half a feature cell (8 input pixels at stride 16) to
    /// its lower right.
    /// </summary>
    RoiAlignV2,
}

/// <summary>ResNet detection layout.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ResNetLayout>))]
public enum ResNetLayout
{
    /// <summary>F = conv1–conv4 (stride 16); head = RoI pool 14×14 → conv5 (stride 2) → global average pool.</summary>
    C4,

    /// <summary><c>ResNet-det</c>: conv5 in F with stride 1 (F stride 16, 2048 channels); RoIAlign 7×7; two fc (1024).</summary>
    Det,
}

/// <summary>RoI head settings.</summary>
public sealed record RoiHeadSettings
{
    /// <summary>RoIs sampled per image in training.</summary>
    public int BatchSizePerImage { get; init; } = 128;

    /// <summary>Fraction of foreground RoIs.</summary>
    public float PositiveFraction { get; init; } = 0.25f;

    /// <summary>Proposals with IoU ≥ this are foreground.</summary>
    public float FgIouThreshold { get; init; } = 0.5f;

    /// <summary>Background is IoU in [BgIouLow, BgIouHigh).</summary>
    public float BgIouHigh { get; init; } = 0.5f;

    /// <summary>Lower bound of background IoU (0, or 0.1 as an option).</summary>
    public float BgIouLow { get; init; } = 0f;

    /// <summary>Box-delta weights (wx, wy, ww, wh).</summary>
    public float[] BoxWeights { get; init; } = [10, 10, 5, 5];

    /// <summary>Smooth-L1 β of the RoI box deltas.</summary>
    public float SmoothL1Beta { get; init; } = 1f / 9;

    /// <summary>Test: minimum class score.</summary>
    public float ScoreThreshold { get; init; } = 0.05f;

    /// <summary>Test: per-class NMS IoU (the paper uses 0.3).</summary>
    public float NmsThreshold { get; init; } = 0.3f;

    /// <summary>Test: detections kept per image.</summary>
    public int DetectionsPerImage { get; init; } = 100;

    /// <summary>Pooled size of the RoI feature (7 for VGG16 and ResNet-det, 14 for ResNet C4).</summary>
    public int PoolSize { get; init; } = 7;

    /// <summary>Width of the fully connected head layers (VGG16 fc6/fc7: 4096; ResNet-det: 1024).</summary>
    public int FcDim { get; init; } = 4096;

    /// <summary>Dropout after fc6 and fc7 (VGG16's 0.5).</summary>
    public float Dropout { get; init; } = 0.5f;
}

/// <summary>Input image settings.</summary>
public sealed record InputSettings
{
    /// <summary>Target shorter side at inference (and in training unless <see cref="TrainMinSizes"/> is set).</summary>
    public int MinSize { get; init; } = 600;

    /// <summary>
    /// Training's shorter sides: one is drawn per batch (multi-scale training with several); empty: <see cref="MinSize"/>.
    /// <see cref="MaxSize"/> caps the longer side in training too.
    /// </summary>
    public int[] TrainMinSizes { get; init; } = [];

    /// <summary>The shorter sides training draws from: <see cref="TrainMinSizes"/>, or <see cref="MinSize"/> alone when that is empty.</summary>
    public int[] TrainingSizes() => TrainMinSizes.Length > 0 ? TrainMinSizes : [MinSize];

    /// <summary>Longest side at most.</summary>
    public int MaxSize { get; init; } = 1000;

    /// <summary>Per-channel mean (RGB, on 0..1 values).</summary>
    public float[] Mean { get; init; } = [0.485f, 0.456f, 0.406f];

    /// <summary>Per-channel standard deviation.</summary>
    public float[] Std { get; init; } = [0.229f, 0.224f, 0.225f];

    /// <summary>Batches are padded so height and width are multiples of this.</summary>
    public int SizeDivisible { get; init; } = 32;
}

/// <summary>A full detector configuration; <see cref="VariantCatalog"/> builds the named ones.</summary>
public sealed record DetectorConfig
{
    /// <summary>Variant name, e.g. <c>g-rcn</c> or <c>faster-rcnn+roi-align</c>.</summary>
    public string Variant { get; init; } = "faster-rcnn";

    /// <summary>Backbone.</summary>
    public BackboneKind Backbone { get; init; } = BackboneKind.Vgg16;

    /// <summary>Channel width multiplier of the backbone (1 = torchvision's widths).</summary>
    public double Width { get; init; } = 1.0;

    /// <summary>Object class names (background excluded).</summary>
    public string[] ClassNames { get; init; } = [];

    /// <summary>Split the last backbone blocks into cls and loc branches.</summary>
    public bool Split { get; init; }

    /// <summary>VGG16: pool4 on the cls branch (or the shared trunk when not split).</summary>
    public Pool4Mode ClsPool4 { get; init; } = Pool4Mode.MaxPool;

    /// <summary>VGG16: pool4 on the loc branch.</summary>
    public Pool4Mode LocPool4 { get; init; } = Pool4Mode.MaxPool;

    /// <summary>ResNet split: bottlenecks of conv4 (layer3) that each branch owns (2 for ResNet-50, 6 for ResNet-101).</summary>
    public int ResNetSplitBlocks { get; init; }

    /// <summary>ResNet split: the loc branch runs conv4 with its first stride 1 (stride-8 map).</summary>
    public bool ResNetLocStride1 { get; init; }

    /// <summary>ResNet layout.</summary>
    public ResNetLayout ResNetLayout { get; init; } = ResNetLayout.C4;

    /// <summary>Global-context attention on the classification path.</summary>
    public bool ContextCls { get; init; }

    /// <summary>Global-context attention on the localization path.</summary>
    public bool ContextLoc { get; init; }

    /// <summary>Context map size (the paper: RoI pooling of the whole image to 14×14).</summary>
    public int ContextSize { get; init; } = 14;

    /// <summary>Attention heads (the paper's eq. (1) is one head).</summary>
    public int ContextHeads { get; init; } = 1;

    /// <summary>Head arrangement.</summary>
    public HeadArrangement Head { get; init; } = HeadArrangement.Shared;

    /// <summary>RoI pooler.</summary>
    public PoolerKind Pooler { get; init; } = PoolerKind.RoiPool;

    /// <summary>Harmonic loss and Harmonic IoU loss re-weighting (docs/variants.md gives the formulas).</summary>
    public bool HarmonicLoss { get; init; }

    /// <summary>Exponent γ of the Harmonic IoU weight IoU^γ.</summary>
    public float HarmonicIouGamma { get; init; } = 1f;

    /// <summary>Freeze the whole backbone (only RPN, branches' heads and predictors train).</summary>
    public bool FreezeBackbone { get; init; }

    /// <summary>
    /// VGG16: a group norm with this many groups (fewer where a layer's channels are not divisible) after
    /// every convolution, before its ReLU; 0 = none (torchvision's VGG16). For training from scratch, where
    /// plain VGG16 learns slowly: GN is independent of the batch size, so training and inference agree.
    /// </summary>
    public int GroupNormGroups { get; init; }

    /// <summary>Frozen leading stages when the backbone trains (2 = VGG16 conv1–conv2, as py-faster-rcnn, or ResNet conv1 + layer1, as torchvision: for pretrained weights; 0 from scratch).</summary>
    public int FrozenStages { get; init; }

    /// <summary>RPN settings (anchors, proposal counts, target assignment, loss).</summary>
    public RpnOptions Rpn { get; init; } = new();

    /// <summary>RoI head settings.</summary>
    public RoiHeadSettings RoiHeads { get; init; } = new();

    /// <summary>Input settings.</summary>
    public InputSettings Input { get; init; } = new();

    /// <summary>Number of object classes.</summary>
    [JsonIgnore]
    public int NumClasses => ClassNames.Length;
}
