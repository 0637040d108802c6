using GRcn.Detection.Boxes;
using GRcn.Detection.Tests.Rpn;

namespace GRcn.Detection.Tests.Boxes;

public class MatcherTests
{
    [Fact]
    public void MatchesTorchvisionOnAnchorGrid()
    {
        var f = RpnFixtures.Load("matcher.json");
        var iou = f.GetProperty("iou").Floats();
        int g = f.GetProperty("iou").Shape()[0], p = f.GetProperty("iou").Shape()[1];
        foreach (var c in f.GetProperty("cases").EnumerateArray())
        {
            var m = new Matcher((float)c.GetProperty("high").GetDouble(), (float)c.GetProperty("low").GetDouble(), c.GetProperty("allow_low_quality").GetBoolean());
            bool dropLast = c.TryGetProperty("drop_last_gt", out var d) && d.GetBoolean();
            int rows = dropLast ? g - 1 : g;
            Assert.Equal(c.GetProperty("matches").Ints(), m.Match(iou.AsSpan(0, rows * p), rows, p));
        }
    }

    [Fact]
    public void LowQualityMatchesRestoreEveryTiedPredictionToItsOwnBestGt()
    {
        float[] q =
        [
            0.1f, 0.4f, 0.2f, 0.4f,   // gt 0: highest 0.4, tied at predictions 1 and 3
            0.05f, 0.1f, 0.8f, 0.5f,  // gt 1: highest 0.8 at prediction 2
        ];
        Assert.Equal([-1, -2, 1, -2], new Matcher(0.7f, 0.3f, false).Match(q, 2, 4));
        // prediction 3 is tied at gt 0's best but its own best is gt 1, which it gets (torchvision's rule)
        Assert.Equal([-1, 0, 1, 1], new Matcher(0.7f, 0.3f, true).Match(q, 2, 4));
    }

    [Fact]
    public void ThresholdsAreInclusiveAtHighAndExclusiveAtLow()
    {
        float[] q = [0.7f, 0.3f, 0.29999998f, 0.69999993f];
        Assert.Equal([0, -2, -1, -2], new Matcher(0.7f, 0.3f, false).Match(q, 1, 4));
    }

    [Fact]
    public void BestGtTiesTakeTheFirstGt()
    {
        float[] q = [0.8f, 0.8f];
        Assert.Equal([0], new Matcher(0.7f, 0.3f, true).Match(q, 2, 1));
    }

    [Fact]
    public void NoGtMeansAllBackground()
    {
        Assert.Equal([-1, -1, -1], new Matcher(0.7f, 0.3f, true).Match([], 0, 3));
        Assert.Empty(new Matcher(0.7f, 0.3f, true).Match([], 2, 0));
    }

    [Fact]
    public void RejectsBadArguments()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Matcher(0.3f, 0.7f, false));
        Assert.Throws<ArgumentException>(() => new Matcher(0.7f, 0.3f, false).Match(new float[5], 2, 3));
    }
}
