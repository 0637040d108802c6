using GRcn.Detection.Data;

namespace GRcn.Detection.Tests.Data;

public sealed class JpegCodecTests
{
    /// <summary>Largest per-sample difference allowed against PIL's decode (same libjpeg-turbo code; 0 expected, 1 allows another IDCT build).</summary>
    private const int MaxSampleDifference = 1;

    [Theory]
    [InlineData("rgb420")]
    [InlineData("rgb444_progressive")]
    [InlineData("grey")]
    public void DecodesLikePil(string name)
    {
        RgbImage actual = JpegCodec.Load(TestImages.Fixture("jpeg", name + ".jpg"));
        RgbImage expected = PpmCodec.Load(TestImages.Fixture("jpeg", name + ".ppm"));
        Assert.Equal((37, 29), (actual.Width, actual.Height));
        Assert.Equal((expected.Width, expected.Height), (actual.Width, actual.Height));
        int worst = 0;
        for (int i = 0; i < expected.Pixels.Length; i++) worst = Math.Max(worst, Math.Abs(expected.Pixels[i] - actual.Pixels[i]));
        Assert.InRange(worst, 0, MaxSampleDifference);
    }

    [Fact]
    public void ImageFileSniffsJpegWhateverTheExtension()
    {
        using var dir = new TempDir();
        string path = dir.File("really-a-jpeg.png");
        File.Copy(TestImages.Fixture("jpeg", "rgb420.jpg"), path);
        Assert.Equal(ImageFormat.Jpeg, ImageFile.DetectFormat(File.ReadAllBytes(path)));
        Assert.Equal(JpegCodec.Load(TestImages.Fixture("jpeg", "rgb420.jpg")).Pixels, ImageFile.Load(path).Pixels);
    }

    [Fact]
    public void MissingLibraryNamesTheDebianPackage()
    {
        var e = Assert.Throws<DllNotFoundException>(() => TurboJpeg.Load(["libturbojpeg-not-installed.so.9"]));
        Assert.Contains("libturbojpeg-not-installed.so.9", e.Message);
        Assert.Contains("apt-get install libturbojpeg0", e.Message);
        Assert.Equal("libturbojpeg0", JpegCodec.DebianPackage);
    }

    [Fact]
    public void TheInstalledLibraryLoads() => Assert.True(JpegCodec.IsAvailable);

    [Fact]
    public void CorruptHeaderIsReportedWithTheFileName()
    {
        byte[] jpeg = File.ReadAllBytes(TestImages.Fixture("jpeg", "rgb420.jpg"));
        using var dir = new TempDir();
        string path = dir.File("cut.jpg");
        File.WriteAllBytes(path, jpeg[..40]);
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("corrupt JPEG", e.Message);

        var garbage = new byte[200];
        new Random(1).NextBytes(garbage);
        garbage[0] = 0xFF; garbage[1] = 0xD8; garbage[2] = 0xFF;
        e = Assert.Throws<InvalidDataException>(() => JpegCodec.Decode(garbage, "garbage.jpg"));
        Assert.Contains("garbage.jpg", e.Message);
    }

    [Fact]
    public void TruncatedScanIsAWarningUnlessStrict()
    {
        byte[] jpeg = File.ReadAllBytes(TestImages.Fixture("jpeg", "rgb420.jpg"));
        byte[] cut = jpeg[..(jpeg.Length - 200)];
        RgbImage partial = JpegCodec.Decode(cut, "cut.jpg");
        Assert.Equal((37, 29), (partial.Width, partial.Height));
        var e = Assert.Throws<InvalidDataException>(() => JpegCodec.Decode(cut, "cut.jpg", strict: true));
        Assert.Contains("cut.jpg", e.Message);
        Assert.Contains("strict", e.Message);
    }

    [Fact]
    public void NotAJpegIsRejectedBeforeTheLibrary()
    {
        var e = Assert.Throws<InvalidDataException>(() => JpegCodec.Decode([1, 2, 3, 4], "x.jpg"));
        Assert.Contains("x.jpg", e.Message);
        Assert.Contains("SOI", e.Message);
    }

    [Fact]
    public void DecodesInParallel()
    {
        byte[] jpeg = File.ReadAllBytes(TestImages.Fixture("jpeg", "rgb444_progressive.jpg"));
        byte[] reference = JpegCodec.Decode(jpeg).Pixels;
        var results = new byte[16][];
        Parallel.For(0, results.Length, i => results[i] = JpegCodec.Decode(jpeg).Pixels);
        Assert.All(results, r => Assert.Equal(reference, r));
    }
}
