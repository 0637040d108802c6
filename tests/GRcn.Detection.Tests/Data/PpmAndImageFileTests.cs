using System.Text;
using GRcn.Detection.Data;

namespace GRcn.Detection.Tests.Data;

public sealed class PpmAndImageFileTests
{
    [Fact]
    public void P6RoundTripIsExact()
    {
        RgbImage image = TestImages.Random(11, 6, seed: 2);
        RgbImage back = PpmCodec.Decode(PpmCodec.Encode(image));
        Assert.Equal((11, 6), (back.Width, back.Height));
        Assert.Equal(image.Pixels, back.Pixels);
    }

    [Fact]
    public void PlainP3WithCommentsDecodes()
    {
        byte[] data = Encoding.ASCII.GetBytes("P3\n# a comment\n2 1 # trailing comment\n255\n255 0 10\n\t0 128 255\n");
        RgbImage img = PpmCodec.Decode(data);
        Assert.Equal(new byte[] { 255, 0, 10, 0, 128, 255 }, img.Pixels);
    }

    [Fact]
    public void GreyAndSixteenBitSamplesScaleTo8Bits()
    {
        // P5 with maxval 15: 15 → 255, 5 → 85.
        byte[] p5 = [.. Encoding.ASCII.GetBytes("P5 2 1 15\n"), 15, 5];
        Assert.Equal(new byte[] { 255, 255, 255, 85, 85, 85 }, PpmCodec.Decode(p5).Pixels);
        // P6 with maxval 65535, big-endian: 0xFFFF → 255, 0x8000 → round(32768·255/65535) = 128.
        byte[] p6 = [.. Encoding.ASCII.GetBytes("P6 1 1 65535\n"), 0xFF, 0xFF, 0x80, 0x00, 0x00, 0x00];
        Assert.Equal(new byte[] { 255, 128, 0 }, PpmCodec.Decode(p6).Pixels);
    }

    [Fact]
    public void TruncatedAndMalformedPpmNameTheFile()
    {
        byte[] full = PpmCodec.Encode(TestImages.Random(4, 4, seed: 1));
        var e = Assert.Throws<InvalidDataException>(() => PpmCodec.Decode(full[..^5], "t.ppm"));
        Assert.Contains("t.ppm", e.Message);
        Assert.Contains("truncated raster", e.Message);
        e = Assert.Throws<InvalidDataException>(() => PpmCodec.Decode(Encoding.ASCII.GetBytes("P6 4 x 255\n"), "m.ppm"));
        Assert.Contains("m.ppm", e.Message);
        Assert.Contains("height", e.Message);
        e = Assert.Throws<InvalidDataException>(() => PpmCodec.Decode(Encoding.ASCII.GetBytes("P3 1 1 9\n1 2 10\n"), "v.ppm"));
        Assert.Contains("above maxval", e.Message);
    }

    [Fact]
    public void FormatIsSniffedFromContent()
    {
        RgbImage image = TestImages.Random(5, 4, seed: 9);
        Assert.Equal(ImageFormat.Png, ImageFile.DetectFormat(ImageFile.EncodePng(image)));
        Assert.Equal(ImageFormat.Ppm, ImageFile.DetectFormat(PpmCodec.Encode(image)));
        Assert.Equal(ImageFormat.Gif, ImageFile.DetectFormat("GIF89a"u8));
        Assert.Equal(ImageFormat.Unknown, ImageFile.DetectFormat("II*\0"u8));
        using var dir = new TempDir();
        string png = dir.File("a.ppm"), ppm = dir.File("b.png");
        File.WriteAllBytes(png, ImageFile.EncodePng(image)); // names deliberately swapped
        File.WriteAllBytes(ppm, PpmCodec.Encode(image));
        Assert.Equal(image.Pixels, ImageFile.Load(png).Pixels);
        Assert.Equal(image.Pixels, ImageFile.Load(ppm).Pixels);
    }

    [Fact]
    public void UnknownFormatAndEmptyFileNameTheFile()
    {
        using var dir = new TempDir();
        string gif = dir.File("x.tif"), empty = dir.File("empty.jpg");
        File.WriteAllBytes(gif, "II*\0............"u8.ToArray());
        File.WriteAllBytes(empty, []);
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Load(gif));
        Assert.Contains(gif, e.Message);
        Assert.Contains("49492A00", e.Message);
        e = Assert.Throws<InvalidDataException>(() => ImageFile.Load(empty));
        Assert.Contains(empty, e.Message);
        Assert.Contains("empty", e.Message);
        Assert.Throws<FileNotFoundException>(() => ImageFile.Load(dir.File("missing.png")));
    }

    [Fact]
    public void SaveChoosesTheFormatFromTheExtension()
    {
        using var dir = new TempDir();
        RgbImage image = TestImages.Random(3, 3, seed: 4);
        ImageFile.Save(image, dir.File("a.png"));
        ImageFile.Save(image, dir.File("a.ppm"));
        Assert.Equal(ImageFormat.Png, ImageFile.DetectFormat(File.ReadAllBytes(dir.File("a.png"))));
        Assert.Equal(ImageFormat.Ppm, ImageFile.DetectFormat(File.ReadAllBytes(dir.File("a.ppm"))));
        var e = Assert.Throws<ArgumentException>(() => ImageFile.Save(image, dir.File("a.bmp")));
        Assert.Equal("path", e.ParamName);
    }
}
