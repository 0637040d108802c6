using GRcn.Detection.Rpn;

namespace GRcn.Detection.Tests.Rpn;

public class AnchorGeneratorTests
{
    [Fact]
    public void MatchesTorchvisionAnchors()
    {
        foreach (var c in RpnFixtures.Load("anchors.json").GetProperty("cases").EnumerateArray())
        {
            var sizes = c.GetProperty("sizes").EnumerateArray().Select(v => (float)v.GetDouble()).ToArray();
            var ratios = c.GetProperty("ratios").EnumerateArray().Select(v => (float)v.GetDouble()).ToArray();
            var gen = new AnchorGenerator(sizes, ratios);
            Assert.Equal(sizes.Length * ratios.Length, gen.NumAnchorsPerLocation);
            // integers and halves: exact
            Assert.Equal(c.GetProperty("cell").Floats(), gen.CellAnchors());
            var anchors = gen.Anchors(c.GetProperty("feat_h").GetInt32(), c.GetProperty("feat_w").GetInt32(),
                c.GetProperty("stride_h").GetInt32(), c.GetProperty("stride_w").GetInt32());
            Assert.Equal(c.GetProperty("anchors").Floats(), anchors);
        }
    }

    [Fact]
    public void OrdersLocationsRowMajorThenAnchors()
    {
        var gen = new AnchorGenerator([10f], [1f, 4f]);
        var anchors = gen.Anchors(2, 3, 7, 5);
        // anchor (y = 1, x = 2, a = 1) is row (1·3 + 2)·2 + 1 = 11: ratio 4 → w 5, h 20 → [−2 (2.5 rounds to even), −10, 2, 10] + (10, 7)
        Assert.Equal([8f, -3f, 12f, 17f], anchors.AsSpan(44, 4).ToArray());
        Assert.Same(anchors, gen.Anchors(2, 3, 7, 5));
    }

    [Fact]
    public void RejectsBadArguments()
    {
        Assert.Throws<ArgumentException>(() => new AnchorGenerator([], [1f]));
        Assert.Throws<ArgumentException>(() => new AnchorGenerator([16f], [0f]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AnchorGenerator([16f], [1f]).Anchors(2, 2, 0, 16));
    }
}
