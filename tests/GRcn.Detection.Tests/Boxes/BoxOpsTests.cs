using GRcn.Detection.Boxes;
using GRcn.Detection.Tests.Rpn;

namespace GRcn.Detection.Tests.Boxes;

public class BoxOpsTests
{
    // same float32 operations as torchvision's box_iou: equal up to nothing but the division's rounding
    private const double IouRtol = 1e-6, IouAtol = 1e-7;

    [Fact]
    public void IouMatchesTorchvision()
    {
        var f = RpnFixtures.Load("matcher.json");
        var iou = BoxOps.Iou(f.GetProperty("gt").Floats(), f.GetProperty("anchors").Floats());
        RpnFixtures.AssertClose(f.GetProperty("iou").Floats(), iou, IouRtol, IouAtol, "iou");
    }

    [Fact]
    public void IouOfHandPickedPairs()
    {
        float[] a = [0, 0, 10, 10, 0, 0, 0, 0];
        float[] b = [5, 0, 15, 10, 20, 20, 30, 30, 0, 0, 0, 0];
        var iou = BoxOps.Iou(a, b);
        // half overlap: 50 / 150; disjoint: 0; empty box against a box: 0; two empty boxes: 0 here (NaN in torchvision)
        RpnFixtures.AssertClose([50f / 150f, 0f, 0f, 0f, 0f, 0f], iou, IouRtol, IouAtol, "iou");
    }

    [Fact]
    public void ClipClampsToImage()
    {
        float[] boxes = [-5, -3, 50, 40, 10, 12, 20, 25];
        BoxOps.Clip(boxes, height: 30, width: 45);
        Assert.Equal([0f, 0f, 45f, 30f, 10f, 12f, 20f, 25f], boxes);
    }

    [Fact]
    public void RemoveSmallKeepsBoxesWithBothSidesAtLeastMinSize()
    {
        float[] boxes = [0, 0, 1, 1, 0, 0, 0.5f, 3, 0, 0, 3, 0.999f, 2, 2, 3, 3];
        Assert.Equal([0, 3], BoxOps.RemoveSmall(boxes, 1f));
        Assert.Equal([0, 1, 2, 3], BoxOps.RemoveSmall(boxes, 0.5f));
    }

    [Fact]
    public void RejectsPartialBoxes()
    {
        Assert.Throws<ArgumentException>(() => BoxOps.Iou(new float[5], new float[4]));
        Assert.Throws<ArgumentException>(() => BoxOps.RemoveSmall(new float[3], 1f));
    }
}
