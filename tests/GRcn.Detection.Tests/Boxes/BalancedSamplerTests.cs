using GRcn.Detection.Autograd;
using GRcn.Detection.Boxes;

namespace GRcn.Detection.Tests.Boxes;

public class BalancedSamplerTests
{
    private static int[] Labels(int positives, int negatives, int ignored)
    {
        // interleaved so that index order says nothing about the label
        var labels = new List<int>();
        for (int i = 0; labels.Count < positives + negatives + ignored; i++)
        {
            if (i < positives) labels.Add(1);
            if (i < negatives) labels.Add(0);
            if (i < ignored) labels.Add(-1);
        }
        return [.. labels];
    }

    [Theory]
    [InlineData(300, 1000, 50, 128, 128)]
    [InlineData(10, 1000, 50, 10, 246)]
    [InlineData(10, 5, 50, 10, 5)]
    [InlineData(0, 400, 0, 0, 256)]
    [InlineData(500, 20, 0, 128, 20)]
    public void CountsFollowTorchvision(int positives, int negatives, int ignored, int wantPos, int wantNeg)
    {
        var labels = Labels(positives, negatives, ignored);
        var pos = new List<int>();
        var neg = new List<int>();
        new BalancedSampler(256, 0.5f).Sample(labels, new SplitMix64(7), pos, neg);
        Assert.Equal(wantPos, pos.Count);
        Assert.Equal(wantNeg, neg.Count);
        Assert.All(pos, i => Assert.Equal(1, labels[i]));
        Assert.All(neg, i => Assert.Equal(0, labels[i]));
        Assert.Equal(pos.Order(), pos);
        Assert.Equal(neg.Order(), neg);
        Assert.Equal(pos.Count, pos.Distinct().Count());
        Assert.Equal(neg.Count, neg.Distinct().Count());
    }

    [Fact]
    public void SameSeedSameSample()
    {
        var labels = Labels(300, 1000, 50);
        var sampler = new BalancedSampler(256, 0.5f);
        List<int> p1 = [], n1 = [], p2 = [], n2 = [], p3 = [], n3 = [];
        sampler.Sample(labels, new SplitMix64(11), p1, n1);
        sampler.Sample(labels, new SplitMix64(11), p2, n2);
        sampler.Sample(labels, new SplitMix64(12), p3, n3);
        Assert.Equal(p1, p2);
        Assert.Equal(n1, n2);
        Assert.NotEqual(p1, p3);
    }

    [Fact]
    public void ChoosesUniformly()
    {
        // 1 positive out of 4, 4000 times: each index about 1000 times (a fixed seed, so no flakiness;
        // a biased choice, e.g. always the first candidates, fails)
        int[] labels = [1, 1, 1, 1];
        var counts = new int[4];
        var sampler = new BalancedSampler(2, 0.5f);
        var rng = new SplitMix64(3);
        List<int> pos = [], neg = [];
        for (int i = 0; i < 4000; i++)
        {
            sampler.Sample(labels, rng, pos, neg);
            counts[pos.Single()]++;
        }
        Assert.All(counts, c => Assert.InRange(c, 880, 1120));
    }
}
