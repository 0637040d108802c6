// The Region Proposal Network of Faster R-CNN on one feature map, as torchvision's
// RegionProposalNetwork (single level). The head runs as graph ops, the proposal selection as the
// kernel library's RpnProposals op and the losses as its Loss ops, all on the features' device;
// the anchor matching and sampling are host bookkeeping:
// - layout: objectness (N, A, H, W) and deltas (N, 4A, H, W) map to anchor order (y, x, a) as
//   torchvision's permute_and_flatten: anchor i = (y·W + x)·A + a reads objectness channel a
//   and delta channels 4a..4a+3 at (y, x).
// - proposals per image (filter_proposals): top pre-NMS-N anchors by logit (descending, ties by
//   anchor index), decoded with the detached deltas, clipped to the image, boxes with a side
//   < MinSize and scores (sigmoid, float32) < ScoreThreshold dropped, NMS, first post-NMS-N.
// - losses (compute_loss): anchors matched to GT by IoU (Matcher fg/bg, low-quality matches
//   on), BalancedSampler per image; objectness = mean BCE-with-logits over the sampled anchors
//   of all images, box = Σ smooth-L1(β) over the sampled positives' 4 deltas / number sampled.
//   An image without GT boxes has every anchor negative. Both are device loss ops (the sampled
//   anchors' offsets and targets go to the device), so gradients flow to the head through the
//   objectness and delta tensors.
// Images are processed one after another.
using GRcn.Detection.Autograd;
using GRcn.Detection.Boxes;
using GRcn.Detection.Nn;
using GRcn.Kernels;

namespace GRcn.Detection.Rpn;

/// <summary>Proposals of each image and, when GT boxes were given, the two RPN losses.</summary>
/// <param name="Proposals">Per image, P × 4 floats [x1, y1, x2, y2] in input pixels, by descending score.</param>
/// <param name="Scores">Per image, the P sigmoid objectness scores.</param>
/// <param name="ObjectnessLoss">Scalar BCE objectness loss, or null without GT boxes.</param>
/// <param name="BoxLoss">Scalar smooth-L1 box loss, or null without GT boxes.</param>
public sealed record RpnOutput(IReadOnlyList<float[]> Proposals, IReadOnlyList<float[]> Scores, Variable? ObjectnessLoss, Variable? BoxLoss)
{
    /// <summary>Positive anchors sampled over all images (0 without GT boxes).</summary>
    public int SampledPositives { get; init; }

    /// <summary>Negative anchors sampled over all images (0 without GT boxes).</summary>
    public int SampledNegatives { get; init; }
}

/// <summary>The two RPN losses with the sample counts behind them.</summary>
/// <param name="Objectness">Scalar (1,) binary cross-entropy over the sampled anchors.</param>
/// <param name="Box">Scalar (1,) smooth-L1 over the sampled positives, divided by the number sampled.</param>
/// <param name="SampledPositives">Positive anchors sampled over all images.</param>
/// <param name="SampledNegatives">Negative anchors sampled over all images.</param>
public sealed record RpnLosses(Variable Objectness, Variable Box, int SampledPositives, int SampledNegatives);

/// <summary>Anchor labels of one image: 1 positive, 0 negative, −1 ignored, and the matched GT index of each anchor.</summary>
/// <param name="Labels">Per anchor 1, 0 or −1.</param>
/// <param name="MatchedGt">Per anchor the GT index its regression target uses (0 where unmatched, as torchvision's clamp(min=0)).</param>
public sealed record RpnTargets(int[] Labels, int[] MatchedGt);

/// <summary>Region Proposal Network (torchvision semantics, one feature level). The head is registered as <c>head</c>.</summary>
public sealed class RegionProposalNetwork : Module
{
    /// <summary>Creates the network with a freshly initialised head.</summary>
    /// <param name="device">Device of the head's parameters.</param>
    /// <param name="rng">Random stream of the head's initial weights.</param>
    /// <param name="inChannels">Channels of the feature map.</param>
    /// <param name="options">Settings (defaults when null).</param>
    public RegionProposalNetwork(Device device, SplitMix64 rng, int inChannels, RpnOptions? options = null) : base(device)
    {
        Options = options ?? new RpnOptions();
        Options.Validate();
        AnchorGenerator = new AnchorGenerator(Options.AnchorSizes, Options.AspectRatios);
        Head = AddModule("head", new RpnHead(device, rng, inChannels, AnchorGenerator.NumAnchorsPerLocation));
        var w = Options.BoxWeights;
        BoxCoder = new BoxCoder(w.Wx, w.Wy, w.Ww, w.Wh);
        Matcher = new Matcher(Options.FgIouThreshold, Options.BgIouThreshold, allowLowQualityMatches: true);
        Sampler = new BalancedSampler(Options.BatchSizePerImage, Options.PositiveFraction);
    }

    private readonly Dictionary<(int H, int W, int StrideH, int StrideW), Tensor> _deviceAnchors = [];

    /// <summary>Settings.</summary>
    public RpnOptions Options { get; }

    /// <summary>The convolutional head.</summary>
    public RpnHead Head { get; }

    /// <summary>Anchors of the feature map.</summary>
    public AnchorGenerator AnchorGenerator { get; }

    /// <summary>Delta coding of proposals and regression targets.</summary>
    public BoxCoder BoxCoder { get; }

    /// <summary>Anchor–GT matching.</summary>
    public Matcher Matcher { get; }

    /// <summary>Anchor sampling for the losses.</summary>
    public BalancedSampler Sampler { get; }

    /// <summary>
    /// Runs the head on <paramref name="features"/> (N, C, H, W), proposes boxes for each image and,
    /// when <paramref name="gtBoxes"/> is given, computes the losses. Pre/post-NMS counts follow
    /// <see cref="Graph.Training"/>.
    /// </summary>
    /// <param name="g">The pass's graph.</param>
    /// <param name="features">Feature map (N, C, H, W) of the padded batch.</param>
    /// <param name="strideH">Input pixels per feature cell, vertically.</param>
    /// <param name="strideW">Input pixels per feature cell, horizontally.</param>
    /// <param name="imageSizes">Per image its (height, width) in input pixels, for clipping.</param>
    /// <param name="gtBoxes">Per image its GT boxes (4 floats each, possibly none), or null at inference.</param>
    /// <param name="rng">Random stream of the anchor sampling.</param>
    public RpnOutput Forward(Graph g, Variable features, int strideH, int strideW,
        IReadOnlyList<(int Height, int Width)> imageSizes, IReadOnlyList<float[]>? gtBoxes, SplitMix64 rng)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(imageSizes);
        ArgumentNullException.ThrowIfNull(rng);
        if (features.Value.Rank != 4)
            throw new ArgumentException($"features must have shape (N, C, H, W); got {features.Value.ShapeString}", nameof(features));
        int n = features.Dim(0), h = features.Dim(2), w = features.Dim(3);
        if (imageSizes.Count != n)
            throw new ArgumentException($"imageSizes must have one entry per image ({n}); got {imageSizes.Count}", nameof(imageSizes));
        foreach (var (ih, iw) in imageSizes)
            if (ih < 0 || iw < 0) throw new ArgumentException($"image sizes must be non-negative; got ({ih}, {iw})", nameof(imageSizes));
        CheckGt(gtBoxes, n);

        var (objectness, deltas) = Head.Forward(g, features);
        var anchors = AnchorGenerator.Anchors(h, w, strideH, strideW);
        var anchorTensor = DeviceAnchors(anchors, (h, w, strideH, strideW));
        var options = ProposalOptions(g.Training);
        var proposals = new float[n][];
        var scores = new float[n][];
        for (int i = 0; i < n; i++)
        {
            // top-N, decode, clip, filters and NMS on the device (RpnProposals)
            var (boxes, boxScores) = RpnProposals.Select(objectness.Value, deltas.Value, anchorTensor, i, imageSizes[i].Height, imageSizes[i].Width, options);
            using (boxes)
            using (boxScores)
            {
                // host copy: image i's proposals and scores for RoI sampling and the result, ≤ 5·post-NMS-N floats
                proposals[i] = boxes.ToArray<float>();
                scores[i] = boxScores.ToArray<float>();
            }
        }
        if (gtBoxes is null) return new RpnOutput(proposals, scores, null, null);
        var losses = ComputeLoss(g, objectness, deltas, anchors, gtBoxes, rng);
        return new RpnOutput(proposals, scores, losses.Objectness, losses.Box)
        {
            SampledPositives = losses.SampledPositives,
            SampledNegatives = losses.SampledNegatives,
        };
    }

    private static void CheckGt(IReadOnlyList<float[]>? gtBoxes, int n)
    {
        if (gtBoxes is null) return;
        if (gtBoxes.Count != n)
            throw new ArgumentException($"gtBoxes must have one entry per image ({n}); got {gtBoxes.Count}", nameof(gtBoxes));
        for (int i = 0; i < n; i++)
        {
            if (gtBoxes[i] is null) throw new ArgumentException($"gtBoxes[{i}] is null; use an empty array for an image without objects", nameof(gtBoxes));
            if (gtBoxes[i].Length % 4 != 0)
                throw new ArgumentException($"gtBoxes[{i}] must hold 4 floats per box; got {gtBoxes[i].Length}", nameof(gtBoxes));
        }
    }

    /// <summary>
    /// One image's proposals from its anchors (P, 4), objectness logits (P) and deltas (P, 4), all in
    /// anchor order (torchvision's filter_proposals for one level).
    /// </summary>
    /// <param name="anchors">Anchors, 4 floats each.</param>
    /// <param name="objectness">Logit per anchor.</param>
    /// <param name="deltas">4 deltas per anchor.</param>
    /// <param name="imageHeight">Height the boxes are clipped to.</param>
    /// <param name="imageWidth">Width the boxes are clipped to.</param>
    /// <param name="training">Selects the training or test pre/post-NMS counts.</param>
    /// <param name="nmsDevice">Where the selection (RpnProposals: sort, decode, NMS) runs.</param>
    /// <returns>Boxes (k, 4) and sigmoid scores (k), by descending score.</returns>
    public (float[] Boxes, float[] Scores) FilterProposals(ReadOnlySpan<float> anchors, ReadOnlySpan<float> objectness, ReadOnlySpan<float> deltas,
        int imageHeight, int imageWidth, bool training, Device nmsDevice)
    {
        ArgumentNullException.ThrowIfNull(nmsDevice);
        BoxOps.CheckBoxes(anchors, nameof(anchors));
        int p = anchors.Length / 4;
        if (objectness.Length != p)
            throw new ArgumentException($"objectness must hold one logit per anchor ({p}); got {objectness.Length}", nameof(objectness));
        if (deltas.Length != 4 * p)
            throw new ArgumentException($"deltas must have shape ({p}, 4); got {deltas.Length} floats", nameof(deltas));
        // anchor order as a head output with one anchor per location on a 1 × P map: objectness
        // (1, 1, 1, P) as it is, deltas (P, 4) transposed to (1, 4, 1, P)
        var transposed = new float[4 * p];
        for (int i = 0; i < p; i++)
            for (int c = 0; c < 4; c++) transposed[c * p + i] = deltas[4 * i + c];
        using var o = Tensor.FromSpan(nmsDevice, objectness, 1, 1, 1, p);
        using var d = Tensor.FromSpan<float>(nmsDevice, transposed, 1, 4, 1, p);
        using var a = Tensor.FromSpan(nmsDevice, anchors, p, 4);
        var (boxes, scores) = RpnProposals.Select(o, d, a, 0, imageHeight, imageWidth, ProposalOptions(training));
        using (boxes)
        using (scores)
            return (boxes.ToArray<float>(), scores.ToArray<float>());
    }

    /// <summary>The proposal settings of a training or an inference pass.</summary>
    private RpnProposalOptions ProposalOptions(bool training) => new(
        training ? Options.PreNmsTopNTrain : Options.PreNmsTopNTest, training ? Options.PostNmsTopNTrain : Options.PostNmsTopNTest,
        Options.NmsThreshold, Options.MinSize, Options.ScoreThreshold, BoxCoder.Coding);

    /// <summary>The anchors of a map size on the device, uploaded once per size (the last few sizes are kept).</summary>
    private Tensor DeviceAnchors(float[] anchors, (int H, int W, int StrideH, int StrideW) key)
    {
        if (_deviceAnchors.TryGetValue(key, out var t)) return t;
        if (_deviceAnchors.Count >= 8)
        {
            foreach (var old in _deviceAnchors.Values) old.Dispose();
            _deviceAnchors.Clear();
        }
        // host → device: the map's anchors, 4·H·W·A floats, once per map size
        return _deviceAnchors[key] = Tensor.FromSpan<float>(Device, anchors, anchors.Length / 4, 4);
    }

    /// <inheritdoc/>
    protected override void DisposeState()
    {
        foreach (var t in _deviceAnchors.Values) t.Dispose();
        _deviceAnchors.Clear();
    }

    /// <summary>Labels and matched GT of every anchor of one image (torchvision's assign_targets_to_anchors).</summary>
    /// <param name="anchors">Anchors (P, 4).</param>
    /// <param name="gtBoxes">GT boxes (G, 4), G may be 0 (every anchor negative).</param>
    public RpnTargets AssignTargets(ReadOnlySpan<float> anchors, ReadOnlySpan<float> gtBoxes)
    {
        BoxOps.CheckBoxes(anchors, nameof(anchors));
        BoxOps.CheckBoxes(gtBoxes, nameof(gtBoxes));
        int p = anchors.Length / 4, ng = gtBoxes.Length / 4;
        var labels = new int[p];
        var matched = new int[p];
        if (ng == 0) return new RpnTargets(labels, matched);
        var iou = BoxOps.Iou(gtBoxes, anchors);
        Matcher.Match(iou, ng, p, matched);
        for (int i = 0; i < p; i++)
        {
            labels[i] = matched[i] >= 0 ? 1 : matched[i] == Matcher.BetweenThresholds ? -1 : 0;
            if (matched[i] < 0) matched[i] = 0;
        }
        return new RpnTargets(labels, matched);
    }

    /// <summary>
    /// The RPN losses of head outputs <paramref name="objectness"/> (N, A, H, W) and <paramref name="deltas"/>
    /// (N, 4A, H, W) against per-image GT boxes (torchvision's assign_targets_to_anchors + compute_loss).
    /// </summary>
    /// <param name="g">The pass's graph.</param>
    /// <param name="objectness">Objectness logits (N, A, H, W).</param>
    /// <param name="deltas">Box deltas (N, 4A, H, W).</param>
    /// <param name="anchors">The map's anchors (H·W·A, 4) in anchor order.</param>
    /// <param name="gtBoxes">Per image its GT boxes, 4 floats each (possibly none).</param>
    /// <param name="rng">Random stream of the sampling.</param>
    /// <remarks>With no sampled anchor at all both losses are 0 (torchvision would give NaN).</remarks>
    public RpnLosses ComputeLoss(Graph g, Variable objectness, Variable deltas, ReadOnlySpan<float> anchors, IReadOnlyList<float[]> gtBoxes, SplitMix64 rng)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(objectness);
        ArgumentNullException.ThrowIfNull(deltas);
        ArgumentNullException.ThrowIfNull(gtBoxes);
        ArgumentNullException.ThrowIfNull(rng);
        int a = AnchorGenerator.NumAnchorsPerLocation;
        if (objectness.Value.Rank != 4 || objectness.Dim(1) != a)
            throw new ArgumentException($"objectness must have shape (N, {a}, H, W); got {objectness.Value.ShapeString}", nameof(objectness));
        int n = objectness.Dim(0), h = objectness.Dim(2), w = objectness.Dim(3), hw = h * w, p = hw * a;
        if (deltas.Value.Rank != 4 || deltas.Dim(0) != n || deltas.Dim(1) != 4 * a || deltas.Dim(2) != h || deltas.Dim(3) != w)
            throw new ArgumentException($"deltas must have shape ({n}, {4 * a}, {h}, {w}); got {deltas.Value.ShapeString}", nameof(deltas));
        if (anchors.Length != 4 * p)
            throw new ArgumentException($"anchors must have shape ({p}, 4) for a {h}×{w} map with {a} anchors per location; got {anchors.Length} floats", nameof(anchors));
        CheckGt(gtBoxes, n);

        // sampled anchors as offsets into the objectness tensor, with their 0/1 label; positives also
        // as the offset of their first delta channel and their 4 regression targets
        var objOffsets = new List<int>();
        var objLabels = new List<float>();
        var boxOffsets = new List<int>();
        var targets = new List<float>();
        var pos = new List<int>();
        var neg = new List<int>();
        int positives = 0, negatives = 0;
        for (int img = 0; img < n; img++)
        {
            var t = AssignTargets(anchors, gtBoxes[img]);
            Sampler.Sample(t.Labels, rng, pos, neg);
            positives += pos.Count;
            negatives += neg.Count;
            var refs = new float[4 * pos.Count];
            var gts = new float[4 * pos.Count];
            for (int j = 0; j < pos.Count; j++)
            {
                int i = pos[j];
                anchors.Slice(4 * i, 4).CopyTo(refs.AsSpan(4 * j));
                gtBoxes[img].AsSpan(4 * t.MatchedGt[i], 4).CopyTo(gts.AsSpan(4 * j));
                // anchor i = s·A + anchor index, s = y·W + x
                int s = i / a, ai = i % a;
                objOffsets.Add(img * p + ai * hw + s);
                objLabels.Add(1f);
                boxOffsets.Add(img * 4 * p + 4 * ai * hw + s);
            }
            var enc = new float[refs.Length];
            BoxCoder.Encode(refs, gts, enc);
            targets.AddRange(enc);
            foreach (int i in neg)
            {
                objOffsets.Add(img * p + (i % a) * hw + i / a);
                objLabels.Add(0f);
            }
        }

        int sampled = positives + negatives;
        var objIdx = objOffsets.ToArray();
        var objY = objLabels.ToArray();
        // host → device: the sampled anchors' offsets and labels (≤ 2·N·batch-per-image numbers), and below the positives' delta offsets and targets
        var objLoss = Losses.BinaryCrossEntropyWithLogits(g, objectness, objIdx, objY, Math.Max(sampled, 1));
        // coordinate c of an anchor's deltas lies c H·W planes after its dx
        var boxIdx = new int[4 * boxOffsets.Count];
        for (int j = 0; j < boxOffsets.Count; j++)
            for (int c = 0; c < 4; c++) boxIdx[4 * j + c] = boxOffsets[j] + c * hw;
        // torch's smooth_l1 compares with β as a float32
        var boxLoss = Losses.SmoothL1(g, deltas, boxIdx, targets.ToArray(), (float)Options.SmoothL1Beta, Math.Max(sampled, 1), null, 4);
        return new RpnLosses(objLoss, boxLoss, positives, negatives);
    }
}
