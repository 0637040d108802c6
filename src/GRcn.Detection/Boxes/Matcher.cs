// Matching of predictions (anchors, proposals) to ground-truth boxes from a quality matrix
// (G × P IoU, row-major), as torchvision's det_utils.Matcher: each prediction takes its best
// ground truth (first index on ties), then is marked BelowLowThreshold (−1) when that IoU is
// < low or BetweenThresholds (−2) when in [low, high). With allowLowQualityMatches, for every
// ground truth the predictions tied at its highest IoU (whatever that IoU, even 0) get back
// their best-ground-truth index. G = 0 gives all −1 (torchvision raises; its RPN and RoI heads
// treat such an image as all background, which this reproduces). Single pass over the matrix
// per step; single-threaded.
namespace GRcn.Detection.Boxes;

/// <summary>Assigns each prediction a ground-truth index or a negative code (torchvision's Matcher).</summary>
public sealed class Matcher
{
    /// <summary>Code of a prediction whose best IoU is below the low threshold.</summary>
    public const int BelowLowThreshold = -1;

    /// <summary>Code of a prediction whose best IoU is in [low, high).</summary>
    public const int BetweenThresholds = -2;

    /// <summary>Creates a matcher.</summary>
    /// <param name="highThreshold">IoU ≥ this is a match.</param>
    /// <param name="lowThreshold">IoU &lt; this is background; [low, high) is ignored.</param>
    /// <param name="allowLowQualityMatches">Whether each ground truth's best predictions (ties included) are matched whatever their IoU.</param>
    public Matcher(float highThreshold, float lowThreshold, bool allowLowQualityMatches)
    {
        if (float.IsNaN(highThreshold)) throw new ArgumentOutOfRangeException(nameof(highThreshold), highThreshold, "threshold must be a number");
        if (float.IsNaN(lowThreshold) || lowThreshold > highThreshold)
            throw new ArgumentOutOfRangeException(nameof(lowThreshold), lowThreshold, $"low threshold must be ≤ the high threshold {highThreshold}");
        HighThreshold = highThreshold;
        LowThreshold = lowThreshold;
        AllowLowQualityMatches = allowLowQualityMatches;
    }

    /// <summary>IoU at or above which a prediction is matched.</summary>
    public float HighThreshold { get; }

    /// <summary>IoU below which a prediction is background.</summary>
    public float LowThreshold { get; }

    /// <summary>Whether low-quality best matches of each ground truth are kept.</summary>
    public bool AllowLowQualityMatches { get; }

    /// <summary>Matches per prediction: a ground-truth index, <see cref="BelowLowThreshold"/> or <see cref="BetweenThresholds"/>.</summary>
    /// <param name="quality">G × P quality (IoU), row g = ground truth g.</param>
    /// <param name="numGt">G (may be 0).</param>
    /// <param name="numPredictions">P.</param>
    public int[] Match(ReadOnlySpan<float> quality, int numGt, int numPredictions)
    {
        var matches = new int[numPredictions];
        Match(quality, numGt, numPredictions, matches);
        return matches;
    }

    /// <summary>As <see cref="Match(ReadOnlySpan{float}, int, int)"/>, writing into <paramref name="matches"/> (P).</summary>
    public void Match(ReadOnlySpan<float> quality, int numGt, int numPredictions, Span<int> matches)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(numGt);
        ArgumentOutOfRangeException.ThrowIfNegative(numPredictions);
        if (quality.Length != (long)numGt * numPredictions)
            throw new ArgumentException($"quality must hold ({numGt}, {numPredictions}) = {(long)numGt * numPredictions} floats; got {quality.Length}", nameof(quality));
        if (matches.Length != numPredictions)
            throw new ArgumentException($"matches must hold {numPredictions} ints; got {matches.Length}", nameof(matches));
        if (numGt == 0)
        {
            matches.Fill(BelowLowThreshold);
            return;
        }
        int p = numPredictions;
        // best ground truth per prediction: rows scanned in order, strictly greater replaces,
        // so ties keep the first index as torch.max(dim=0) does
        var best = new float[p];
        quality[..p].CopyTo(best);
        matches.Clear();
        for (int g = 1; g < numGt; g++)
        {
            var row = quality.Slice(g * p, p);
            for (int j = 0; j < p; j++)
                if (row[j] > best[j])
                {
                    best[j] = row[j];
                    matches[j] = g;
                }
        }
        int[]? all = AllowLowQualityMatches ? matches.ToArray() : null;
        for (int j = 0; j < p; j++)
        {
            if (best[j] < LowThreshold) matches[j] = BelowLowThreshold;
            else if (best[j] < HighThreshold) matches[j] = BetweenThresholds;
        }
        if (all is null) return;
        for (int g = 0; g < numGt; g++)
        {
            var row = quality.Slice(g * p, p);
            float highest = float.NegativeInfinity;
            foreach (float v in row)
                if (v > highest) highest = v;
            // every prediction tied at this ground truth's highest quality gets its own best match back
            for (int j = 0; j < p; j++)
                if (row[j] == highest) matches[j] = all[j];
        }
    }
}
