// Training targets of the RoI head (torchvision's select_training_samples): ground-truth boxes
// join the proposals, each proposal takes the label of its best-overlapping ground truth when
// IoU ≥ fg threshold, background when IoU ∈ [bg low, bg high), is ignored otherwise; then a
// balanced sample (fraction of foreground) is drawn and box targets encoded.
using GRcn.Detection.Autograd;
using GRcn.Detection.Boxes;
using GRcn.Detection.Variants;

namespace GRcn.Detection.RoiHeads;

/// <summary>The sampled RoIs of one image and their targets.</summary>
/// <param name="Rois">R×4 boxes.</param>
/// <param name="Labels">R labels: 0 background, 1..K object classes.</param>
/// <param name="Targets">R×4 encoded box deltas (zero for background).</param>
/// <param name="MatchedGt">R indices of the matched ground truth (of the best overlap, also for background), −1 without ground truth.</param>
internal sealed record RoiSample(float[] Rois, int[] Labels, float[] Targets, int[] MatchedGt);

internal static class RoiTargets
{
    /// <summary>
    /// Samples RoIs of one image. <paramref name="gtLabels"/> are 1-based (0 is background).
    /// </summary>
    public static RoiSample Sample(ReadOnlySpan<float> proposals, float[] gtBoxes, int[] gtLabels, RoiHeadSettings s, BoxCoder coder, SplitMix64 rng)
    {
        int gtCount = gtLabels.Length;
        int p = proposals.Length / 4 + gtCount;
        var all = new float[4 * p];
        proposals.CopyTo(all);
        gtBoxes.AsSpan().CopyTo(all.AsSpan(proposals.Length));

        // IoU (G, P) as torchvision's box_iou(gt, proposals)
        var iou = BoxOps.Iou(gtBoxes, all);
        var labels = new int[p];
        var matched = new int[p];
        for (int i = 0; i < p; i++)
        {
            // best ground truth by IoU; ties keep the first (torch.max)
            int best = -1;
            float bestIou = -1;
            for (int j = 0; j < gtCount; j++)
                if (iou[j * p + i] > bestIou)
                {
                    bestIou = iou[j * p + i];
                    best = j;
                }
            matched[i] = best;
            if (best < 0) labels[i] = 0;
            else if (bestIou >= s.FgIouThreshold) labels[i] = gtLabels[best];
            else if (bestIou < s.BgIouHigh && bestIou >= s.BgIouLow) labels[i] = 0;
            else labels[i] = -1;
        }

        var pos = new List<int>();
        var neg = new List<int>();
        new BalancedSampler(s.BatchSizePerImage, s.PositiveFraction).Sample(labels, rng, pos, neg);
        var keep = new bool[p];
        foreach (var i in pos) keep[i] = true;
        foreach (var i in neg) keep[i] = true;

        int r = pos.Count + neg.Count;
        var rois = new float[4 * r];
        var outLabels = new int[r];
        var targets = new float[4 * r];
        var outMatched = new int[r];
        int k = 0;
        // in index order, as torchvision's where(pos_mask | neg_mask)
        for (int i = 0; i < p; i++)
        {
            if (!keep[i]) continue;
            all.AsSpan(4 * i, 4).CopyTo(rois.AsSpan(4 * k));
            outLabels[k] = labels[i];
            outMatched[k] = matched[i];
            if (labels[i] >= 1)
                coder.Encode(all.AsSpan(4 * i, 4), gtBoxes.AsSpan(4 * matched[i], 4), targets.AsSpan(4 * k, 4));
            k++;
        }
        return new RoiSample(rois, outLabels, targets, outMatched);
    }
}
