// Positive/negative sampling of labelled candidates for a loss, as torchvision's
// BalancedPositiveNegativeSampler: up to ⌊batch·fraction⌋ positives (labels ≥ 1), then negatives
// (labels 0) up to the rest of the batch, each chosen uniformly without replacement (a partial
// Fisher–Yates shuffle driven by the caller's SplitMix64, so a seed fixes the choice). The
// chosen indices are returned in ascending order, as torchvision's masks give them.
using GRcn.Detection.Autograd;

namespace GRcn.Detection.Boxes;

/// <summary>Samples a fixed-size batch with a bounded fraction of positives (torchvision's BalancedPositiveNegativeSampler).</summary>
public sealed class BalancedSampler
{
    /// <summary>Creates a sampler.</summary>
    /// <param name="batchSizePerImage">Candidates sampled per image (RPN 256, RoI head 128/512).</param>
    /// <param name="positiveFraction">Largest fraction of positives (RPN 0.5, RoI head 0.25).</param>
    public BalancedSampler(int batchSizePerImage, float positiveFraction)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSizePerImage, 1);
        if (!(positiveFraction >= 0f && positiveFraction <= 1f))
            throw new ArgumentOutOfRangeException(nameof(positiveFraction), positiveFraction, "positive fraction must be in [0, 1]");
        BatchSizePerImage = batchSizePerImage;
        PositiveFraction = positiveFraction;
    }

    /// <summary>Candidates sampled per image.</summary>
    public int BatchSizePerImage { get; }

    /// <summary>Largest fraction of positives.</summary>
    public float PositiveFraction { get; }

    /// <summary>Fills <paramref name="positives"/> and <paramref name="negatives"/> (cleared first) with sampled indices, ascending.</summary>
    /// <param name="labels">Per candidate: ≥ 1 positive, 0 negative, &lt; 0 ignored.</param>
    /// <param name="rng">Random stream; consumed only when a set has more candidates than it may take.</param>
    /// <param name="positives">Receives the sampled positive indices.</param>
    /// <param name="negatives">Receives the sampled negative indices.</param>
    public void Sample(ReadOnlySpan<int> labels, SplitMix64 rng, List<int> positives, List<int> negatives)
    {
        ArgumentNullException.ThrowIfNull(rng);
        ArgumentNullException.ThrowIfNull(positives);
        ArgumentNullException.ThrowIfNull(negatives);
        positives.Clear();
        negatives.Clear();
        for (int i = 0; i < labels.Length; i++)
        {
            if (labels[i] >= 1) positives.Add(i);
            else if (labels[i] == 0) negatives.Add(i);
        }
        // int(batch · fraction) in Python's double arithmetic
        int numPos = Math.Min(positives.Count, (int)(BatchSizePerImage * (double)PositiveFraction));
        int numNeg = Math.Min(negatives.Count, BatchSizePerImage - numPos);
        Choose(positives, numPos, rng);
        Choose(negatives, numNeg, rng);
    }

    /// <summary>Keeps <paramref name="count"/> uniformly chosen elements of <paramref name="items"/>, sorted.</summary>
    private static void Choose(List<int> items, int count, SplitMix64 rng)
    {
        if (count >= items.Count) return;
        // partial Fisher–Yates: position i takes a uniform pick among positions [i, n)
        for (int i = 0; i < count; i++)
        {
            int j = i + rng.NextInt(items.Count - i);
            (items[i], items[j]) = (items[j], items[i]);
        }
        items.RemoveRange(count, items.Count - count);
        items.Sort();
    }
}
