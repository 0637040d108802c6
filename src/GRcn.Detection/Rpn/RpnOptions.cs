// Configuration of the Region Proposal Network. Defaults: torchvision's training rules (IoU
// 0.7/0.3 matching with low-quality matches, 256 anchors per image half positive, smooth-L1
// β = 1/9, NMS 0.7, min size 1e-3, score threshold 0) with py-faster-rcnn's proposal counts
// (12000/6000 pre-NMS, 2000/300 post-NMS, the spec's "top 2000 (train) / 300 (test)") and
// VOC-like anchors 128, 256, 512 × ratios 0.5, 1, 2 (the engine rescales sizes per dataset).
namespace GRcn.Detection.Rpn;

/// <summary>Settings of <see cref="RegionProposalNetwork"/>.</summary>
public sealed record RpnOptions
{
    /// <summary>Anchor sizes (√area, input pixels).</summary>
    public IReadOnlyList<float> AnchorSizes { get; init; } = [128f, 256f, 512f];

    /// <summary>Anchor aspect ratios (height/width).</summary>
    public IReadOnlyList<float> AspectRatios { get; init; } = [0.5f, 1f, 2f];

    /// <summary>Proposals kept per image before NMS, training.</summary>
    public int PreNmsTopNTrain { get; init; } = 12000;

    /// <summary>Proposals kept per image before NMS, inference.</summary>
    public int PreNmsTopNTest { get; init; } = 6000;

    /// <summary>Proposals kept per image after NMS, training.</summary>
    public int PostNmsTopNTrain { get; init; } = 2000;

    /// <summary>Proposals kept per image after NMS, inference.</summary>
    public int PostNmsTopNTest { get; init; } = 300;

    /// <summary>NMS IoU threshold of the proposals.</summary>
    public double NmsThreshold { get; init; } = 0.7;

    /// <summary>Anchor–GT IoU at or above which an anchor is positive.</summary>
    public float FgIouThreshold { get; init; } = 0.7f;

    /// <summary>Anchor–GT IoU below which an anchor is negative.</summary>
    public float BgIouThreshold { get; init; } = 0.3f;

    /// <summary>Anchors sampled per image for the losses.</summary>
    public int BatchSizePerImage { get; init; } = 256;

    /// <summary>Largest fraction of positives among the sampled anchors.</summary>
    public float PositiveFraction { get; init; } = 0.5f;

    /// <summary>Proposals with a side shorter than this (after clipping) are dropped.</summary>
    public float MinSize { get; init; } = 1e-3f;

    /// <summary>Box coder weights (wx, wy, ww, wh).</summary>
    public (double Wx, double Wy, double Ww, double Wh) BoxWeights { get; init; } = (1, 1, 1, 1);

    /// <summary>β of the smooth-L1 box loss.</summary>
    public double SmoothL1Beta { get; init; } = 1.0 / 9;

    /// <summary>Proposals whose sigmoid objectness is below this are dropped (kept when ≥).</summary>
    public float ScoreThreshold { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid setting.</summary>
    public void Validate()
    {
        if (AnchorSizes is null || AnchorSizes.Count == 0) throw new ArgumentException("AnchorSizes needs at least one size", nameof(AnchorSizes));
        if (AspectRatios is null || AspectRatios.Count == 0) throw new ArgumentException("AspectRatios needs at least one ratio", nameof(AspectRatios));
        Positive(PreNmsTopNTrain, nameof(PreNmsTopNTrain));
        Positive(PreNmsTopNTest, nameof(PreNmsTopNTest));
        Positive(PostNmsTopNTrain, nameof(PostNmsTopNTrain));
        Positive(PostNmsTopNTest, nameof(PostNmsTopNTest));
        Positive(BatchSizePerImage, nameof(BatchSizePerImage));
        if (!(NmsThreshold >= 0 && NmsThreshold <= 1)) throw new ArgumentException($"NmsThreshold must be in [0, 1]; got {NmsThreshold}", nameof(NmsThreshold));
        if (!(BgIouThreshold <= FgIouThreshold))
            throw new ArgumentException($"BgIouThreshold ({BgIouThreshold}) must be ≤ FgIouThreshold ({FgIouThreshold})", nameof(BgIouThreshold));
        if (!(PositiveFraction >= 0 && PositiveFraction <= 1)) throw new ArgumentException($"PositiveFraction must be in [0, 1]; got {PositiveFraction}", nameof(PositiveFraction));
        if (!(MinSize >= 0)) throw new ArgumentException($"MinSize must be ≥ 0; got {MinSize}", nameof(MinSize));
        if (!(SmoothL1Beta > 0)) throw new ArgumentException($"SmoothL1Beta must be positive; got {SmoothL1Beta}", nameof(SmoothL1Beta));
        if (float.IsNaN(ScoreThreshold)) throw new ArgumentException("ScoreThreshold must be a number", nameof(ScoreThreshold));
    }

    private static void Positive(int value, string name)
    {
        if (value < 1) throw new ArgumentException($"{name} must be ≥ 1; got {value}", name);
    }
}
