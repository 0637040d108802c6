using System.Text.Json;
using GRcn.Detection.Data;

namespace GRcn.Detection.Tests.Data;

public sealed class ImageTransformTests
{
    /// <summary>Allowed error against torchvision's normalised output (float32 rounding of a different operation order; values span about ±2.6).</summary>
    private const float TorchTolerance = 2e-5f;
    /// <summary>Allowed error of box coordinates against torchvision's (float32 products).</summary>
    private const float BoxTolerance = 1e-5f;
    /// <summary>Allowed difference between the fused flip and resizing a mirrored image (sample positions differ by float rounding).</summary>
    private const float FlipTolerance = 1e-4f;

    [Theory]
    [InlineData(500, 375, 600, 1000, 1.6, 800, 600)]
    [InlineData(375, 500, 600, 1000, 1.6, 600, 800)]
    [InlineData(2000, 500, 600, 1000, 0.5, 1000, 250)]  // the longer side binds
    [InlineData(600, 600, 600, 1000, 1.0, 600, 600)]
    [InlineData(23, 17, 30, 35, 1.5217391, 34, 25)]      // float32 35/23 is just below 35/23: 34, not 35
    [InlineData(200, 285, 160, 240, 0.79999995, 159, 227)] // (1/200)·160 in float32 is below 0.8: 159, not 160
    [InlineData(333, 200, 160, 240, 0.72072071, 240, 144)]
    [InlineData(64, 41, 30, 50, 0.73170727, 46, 29)]     // torch's (1/41)·30 is below 30/41 (the float32 quotient is above): 29, not 30
    [InlineData(1001, 300, 600, 1000, 0.99900097, 999, 299)] // the longer side binds; (1/1001)·1000 is below 1000/1001: 999, not 1000
    public void ResizeRuleMatchesTorchvision(int w, int h, int minSize, int maxSize, double scale, int ow, int oh)
    {
        var spec = new ResizeSpec(minSize, maxSize);
        Assert.Equal(scale, spec.ScaleFor(w, h), 1e-6);
        Assert.Equal((ow, oh), spec.OutputSize(w, h));
    }

    [Fact]
    public void BilinearWeightsArePyTorchs()
    {
        // torch 1.13's F.interpolate(mode="bilinear", align_corners=False) of a 333-wide row holding
        // a single 1 at column 3, resized to 599: the weights of column 3 in outputs 4..7, bit for bit.
        // (Source indices computed in float alone give 0.0016694069 for output 4.)
        var row = new RgbImage(333, 1);
        row.Pixels[9] = row.Pixels[10] = row.Pixels[11] = 1;
        var unit = new ImageNormalization(new(0f, 0f, 0f), new(1f, 1f, 1f), PixelScale: 1f);
        var actual = new float[3 * 599];
        new ImageResizer().ResizeNormalize(row, 599, 1, false, unit, actual);
        float[] expected = [0.0016695261001586914f, 0.5575960874557495f, 0.8864773511886597f, 0.33055078983306885f];
        for (int c = 0; c < 3; c++)
        {
            Assert.Equal(expected, actual.AsSpan(c * 599 + 4, 4).ToArray());
            Assert.Equal(0f, actual[c * 599 + 3]);
            Assert.Equal(0f, actual[c * 599 + 8]);
        }
    }

    [Fact]
    public void ResizeRuleValidatesArguments()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ResizeSpec(0, 1000).ScaleFor(10, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ResizeSpec(600, 1000).ScaleFor(0, 10));
    }

    [Theory]
    [InlineData("up")]
    [InlineData("capped")]
    [InlineData("down")]
    public void ResizeNormalizeMatchesGeneralizedRcnnTransform(string name)
    {
        RgbImage input = ImageFile.Load(TestImages.Fixture("resize", "input.png"));
        using var json = JsonDocument.Parse(File.ReadAllText(TestImages.Fixture("resize", name + ".json")));
        var root = json.RootElement;
        var spec = new ResizeSpec(root.GetProperty("min_size").GetInt32(), root.GetProperty("max_size").GetInt32());
        var (w, h) = spec.OutputSize(input.Width, input.Height);
        Assert.Equal((root.GetProperty("width").GetInt32(), root.GetProperty("height").GetInt32()), (w, h));

        byte[] raw = File.ReadAllBytes(TestImages.Fixture("resize", name + ".f32"));
        float[] expected = new float[raw.Length / 4];
        Buffer.BlockCopy(raw, 0, expected, 0, raw.Length);
        Assert.Equal(3 * w * h, expected.Length);
        var actual = new float[3 * w * h];
        new ImageResizer().ResizeNormalize(input, w, h, false, ImageNormalization.ImageNet, actual);
        float worst = 0;
        for (int i = 0; i < actual.Length; i++) worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
        Assert.InRange(worst, 0f, TorchTolerance);

        Box[] boxes = [new(1.5f, 2f, 10f, 12f), new(0f, 0f, 23f, 17f)];
        var expectedBoxes = root.GetProperty("boxes").EnumerateArray().Select(b => b.EnumerateArray().Select(v => v.GetSingle()).ToArray()).ToArray();
        for (int k = 0; k < boxes.Length; k++)
        {
            Box s = ImageTransforms.Scale(boxes[k], (float)w / input.Width, (float)h / input.Height);
            Assert.Equal(expectedBoxes[k][0], s.X1, BoxTolerance);
            Assert.Equal(expectedBoxes[k][1], s.Y1, BoxTolerance);
            Assert.Equal(expectedBoxes[k][2], s.X2, BoxTolerance);
            Assert.Equal(expectedBoxes[k][3], s.Y2, BoxTolerance);
        }
    }

    [Fact]
    public void FusedFlipMirrorsTheResizedImage()
    {
        RgbImage input = TestImages.Random(19, 13, seed: 8);
        var resizer = new ImageResizer();
        int w = 31, h = 20, plane = w * h;
        var plain = new float[3 * plane];
        var flipped = new float[3 * plane];
        var ofMirror = new float[3 * plane];
        resizer.ResizeNormalize(input, w, h, false, ImageNormalization.ImageNet, plain);
        resizer.ResizeNormalize(input, w, h, true, ImageNormalization.ImageNet, flipped);
        resizer.ResizeNormalize(ImageTransforms.FlipHorizontal(input), w, h, false, ImageNormalization.ImageNet, ofMirror);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                {
                    int i = c * plane + y * w + x, m = c * plane + y * w + (w - 1 - x);
                    Assert.Equal(plain[m], flipped[i]);
                    Assert.Equal(ofMirror[i], flipped[i], FlipTolerance);
                }
    }

    [Fact]
    public void BoxFlipAndScale()
    {
        var b = new Box(10, 20, 30, 45);
        Assert.Equal(new Box(70, 20, 90, 45), ImageTransforms.FlipHorizontal(b, 100));
        Assert.Equal(b, ImageTransforms.FlipHorizontal(ImageTransforms.FlipHorizontal(b, 100), 100));
        Assert.Equal(new Box(0, 0, 100, 45), ImageTransforms.FlipHorizontal(new Box(0, 0, 100, 45), 100));
        Assert.Equal(new Box(20, 10, 60, 22.5f), ImageTransforms.Scale(b, 2f, 0.5f));
        Assert.Equal(new Box(0, 20, 30, 40), ImageTransforms.Clip(new Box(-5, 20, 30, 45), 50, 40));
    }

    [Fact]
    public void ToTensorNormalisesPerChannel()
    {
        var image = new RgbImage(2, 1, [255, 0, 128, 0, 255, 64]);
        float[] t = ImageTransforms.ToTensor(image);
        var n = ImageNormalization.ImageNet;
        float[] expected =
        [
            (1f - n.Mean.R) / n.Std.R, (0f - n.Mean.R) / n.Std.R,
            (0f - n.Mean.G) / n.Std.G, (1f - n.Mean.G) / n.Std.G,
            (128f / 255f - n.Mean.B) / n.Std.B, (64f / 255f - n.Mean.B) / n.Std.B,
        ];
        for (int i = 0; i < 6; i++) Assert.Equal(expected[i], t[i], 1e-6f);

        var flipped = new float[6];
        ImageTransforms.ToTensor(image, n, flipped, flipHorizontal: true);
        Assert.Equal([t[1], t[0], t[3], t[2], t[5], t[4]], flipped);
    }

    [Fact]
    public void ResizeNormalizeWithoutScalingEqualsToTensor()
    {
        RgbImage image = TestImages.Random(7, 5, seed: 12);
        var resized = new float[3 * 35];
        new ImageResizer().ResizeNormalize(image, 7, 5, false, ImageNormalization.ImageNet, resized);
        Assert.Equal(ImageTransforms.ToTensor(image), resized);
    }

    [Fact]
    public void ByteResizeKeepsConstantsAndIdentity()
    {
        var constant = new RgbImage(9, 7, Enumerable.Repeat((byte)77, 9 * 7 * 3).ToArray());
        Assert.All(ImageTransforms.Resize(constant, 4, 13).Pixels, v => Assert.Equal(77, v));
        RgbImage image = TestImages.Random(6, 4, seed: 1);
        Assert.Equal(image.Pixels, ImageTransforms.Resize(image, 6, 4).Pixels);
        var (half, scale) = ImageTransforms.Resize(image, new ResizeSpec(2, 100));
        Assert.Equal((3, 2), (half.Width, half.Height));
        Assert.Equal(0.5, scale);
    }

    [Fact]
    public void ResizerReusesTablesAcrossSizes()
    {
        // Alternating sizes must not leave stale column tables behind.
        var resizer = new ImageResizer();
        RgbImage a = TestImages.Random(10, 10, seed: 1), b = TestImages.Random(17, 9, seed: 2);
        var first = resizer.Resize(a, 23, 5);
        resizer.Resize(b, 4, 4);
        Assert.Equal(first.Pixels, resizer.Resize(a, 23, 5).Pixels);
        Assert.Equal(new ImageResizer().Resize(b, 4, 4).Pixels, resizer.Resize(b, 4, 4).Pixels);
    }

    [Fact]
    public void ArgumentsAreValidated()
    {
        RgbImage image = TestImages.Random(4, 4, seed: 1);
        var e = Assert.Throws<ArgumentException>(() => new ImageResizer().ResizeNormalize(image, 8, 8, false, ImageNormalization.ImageNet, new float[10]));
        Assert.Equal("chw", e.ParamName);
        var badStd = ImageNormalization.ImageNet with { Std = new(1, 0, 1) };
        e = Assert.Throws<ArgumentException>(() => ImageTransforms.ToTensor(image, badStd));
        Assert.Equal("normalization", e.ParamName);
    }
}
