using GRcn.Detection.Boxes;
using GRcn.Detection.Tests.Rpn;

namespace GRcn.Detection.Tests.Boxes;

public class BoxCoderTests
{
    // float32 in torchvision's order; only exp/log may differ by an ulp from torch's vectorised ones
    private const double DeltaRtol = 1e-6, DeltaAtol = 1e-7;
    private const double BoxRtol = 2e-6, BoxAtol = 2e-5;
    private const double RoundTripRtol = 2e-6, RoundTripAtol = 5e-5;

    private static readonly System.Text.Json.JsonElement Fixture = RpnFixtures.Load("box_coder.json");

    private static BoxCoder Coder(System.Text.Json.JsonElement c)
    {
        var w = c.GetProperty("weights").EnumerateArray().Select(v => v.GetDouble()).ToArray();
        return new BoxCoder(w[0], w[1], w[2], w[3]);
    }

    [Fact]
    public void EncodeMatchesTorchvision()
    {
        var reference = Fixture.GetProperty("reference").Floats();
        var gt = Fixture.GetProperty("gt").Floats();
        foreach (var c in Fixture.GetProperty("cases").EnumerateArray())
        {
            var deltas = new float[reference.Length];
            Coder(c).Encode(reference, gt, deltas);
            RpnFixtures.AssertClose(c.GetProperty("encode").Floats(), deltas, DeltaRtol, DeltaAtol, "encode");
        }
    }

    [Fact]
    public void DecodeMatchesTorchvisionIncludingClampedSizes()
    {
        var reference = Fixture.GetProperty("reference").Floats();
        foreach (var c in Fixture.GetProperty("cases").EnumerateArray())
        {
            var deltas = c.GetProperty("deltas").Floats();
            var boxes = new float[reference.Length];
            Coder(c).Decode(deltas, reference, boxes);
            RpnFixtures.AssertClose(c.GetProperty("decode").Floats(), boxes, BoxRtol, BoxAtol, "decode");
        }
    }

    [Fact]
    public void DecodePerClassMatchesTorchvision()
    {
        var reference = Fixture.GetProperty("reference").Floats();
        foreach (var c in Fixture.GetProperty("cases").EnumerateArray())
        {
            int classes = c.GetProperty("classes").GetInt32();
            var deltas = c.GetProperty("deltas_per_class").Floats();
            var boxes = new float[deltas.Length];
            Coder(c).DecodePerClass(deltas, reference, classes, boxes);
            RpnFixtures.AssertClose(c.GetProperty("decode_per_class").Floats(), boxes, BoxRtol, BoxAtol, "decode per class");
        }
    }

    [Fact]
    public void DecodeInvertsEncode()
    {
        var reference = Fixture.GetProperty("reference").Floats();
        var gt = Fixture.GetProperty("gt").Floats();
        foreach (var coder in new[] { new BoxCoder(1, 1, 1, 1), new BoxCoder(10, 10, 5, 5) })
        {
            var deltas = new float[gt.Length];
            var back = new float[gt.Length];
            coder.Encode(reference, gt, deltas);
            coder.Decode(deltas, reference, back);
            RpnFixtures.AssertClose(gt, back, RoundTripRtol, RoundTripAtol, "decode(encode(gt))");
        }
    }

    [Fact]
    public void DecodeClampsLogSizeDeltas()
    {
        var coder = new BoxCoder(1, 1, 1, 1);
        var boxes = new float[4];
        coder.Decode([0f, 0f, 100f, 100f], [0f, 0f, 10f, 10f], boxes);
        float half = 0.5f * (MathF.Exp((float)BoxCoder.DefaultClip) * 10f);
        RpnFixtures.AssertClose([5f - half, 5f - half, 5f + half, 5f + half], boxes, BoxRtol, BoxAtol, "clamped box");
    }

    [Fact]
    public void RejectsMismatchedLengths()
    {
        var coder = new BoxCoder(1, 1, 1, 1);
        Assert.Throws<ArgumentException>(() => coder.Encode(new float[8], new float[4], new float[8]));
        Assert.Throws<ArgumentException>(() => coder.Decode(new float[8], new float[8], new float[4]));
        Assert.Throws<ArgumentException>(() => coder.DecodePerClass(new float[8], new float[8], 2, new float[16]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BoxCoder(0, 1, 1, 1));
    }
}
