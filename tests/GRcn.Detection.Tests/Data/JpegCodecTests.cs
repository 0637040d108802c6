using GRcn.Detection.Data;

namespace GRcn.Detection.Tests.Data;

/// <summary>JPEG through <see cref="ImageFile"/> (SkiaSharp's libjpeg-turbo): bit-identical to PIL's decode of the fixtures.</summary>
public sealed class JpegCodecTests
{
    [Theory]
    [InlineData("rgb420")]
    [InlineData("rgb444_progressive")]
    [InlineData("grey")]
    public void DecodesBitIdenticalToPil(string name)
    {
        RgbImage actual = ImageFile.Load(TestImages.Fixture("jpeg", name + ".jpg"));
        RgbImage expected = PpmCodec.Load(TestImages.Fixture("jpeg", name + ".ppm"));
        Assert.Equal((37, 29), (actual.Width, actual.Height));
        Assert.Equal((expected.Width, expected.Height), (actual.Width, actual.Height));
        Assert.Equal(expected.Pixels, actual.Pixels);
    }

    [Fact]
    public void ImageFileSniffsJpegWhateverTheExtension()
    {
        using var dir = new TempDir();
        string path = dir.File("really-a-jpeg.png");
        File.Copy(TestImages.Fixture("jpeg", "rgb420.jpg"), path);
        Assert.Equal(ImageFormat.Jpeg, ImageFile.DetectFormat(File.ReadAllBytes(path)));
        Assert.Equal(ImageFile.Load(TestImages.Fixture("jpeg", "rgb420.jpg")).Pixels, ImageFile.Load(path).Pixels);
    }

    [Fact]
    public void CorruptHeaderIsReportedWithTheFileName()
    {
        byte[] jpeg = File.ReadAllBytes(TestImages.Fixture("jpeg", "rgb420.jpg"));
        using var dir = new TempDir();
        string path = dir.File("cut.jpg");
        File.WriteAllBytes(path, jpeg[..40]);
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("JPEG", e.Message);

        var garbage = new byte[200];
        new Random(1).NextBytes(garbage);
        garbage[0] = 0xFF; garbage[1] = 0xD8; garbage[2] = 0xFF;
        e = Assert.Throws<InvalidDataException>(() => ImageFile.Decode(garbage, "garbage.jpg"));
        Assert.Contains("garbage.jpg", e.Message);
    }

    [Theory]
    [InlineData(200)]
    [InlineData(-1)] // cut to 2 % of its length: once a grey image with exit 0
    public void TruncatedScanIsAnErrorUnlessAllowed(int cutFromEnd)
    {
        byte[] jpeg = File.ReadAllBytes(TestImages.Fixture("jpeg", "rgb420.jpg"));
        // 2 % of this 961-byte file falls inside the header; cut the scan at 2 % of its length instead.
        int sos = jpeg.AsSpan().IndexOf((ReadOnlySpan<byte>)[0xFF, 0xDA]);
        int length = cutFromEnd > 0 ? jpeg.Length - cutFromEnd : sos + 14 + (jpeg.Length - sos) / 50;
        byte[] cut = jpeg[..length];
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Decode(cut, "cut.jpg"));
        Assert.Contains("cut.jpg", e.Message);
        Assert.Contains("truncated JPEG", e.Message);
        RgbImage partial = ImageFile.Decode(cut, "cut.jpg", new ImageLoadOptions { AllowTruncated = true });
        Assert.Equal((37, 29), (partial.Width, partial.Height));
    }

    [Fact]
    public void DecodesInParallel()
    {
        byte[] jpeg = File.ReadAllBytes(TestImages.Fixture("jpeg", "rgb444_progressive.jpg"));
        byte[] reference = ImageFile.Decode(jpeg).Pixels;
        var results = new byte[16][];
        Parallel.For(0, results.Length, i => results[i] = ImageFile.Decode(jpeg).Pixels);
        Assert.All(results, r => Assert.Equal(reference, r));
    }
}
