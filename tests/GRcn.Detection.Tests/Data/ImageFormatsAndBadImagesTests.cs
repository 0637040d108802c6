using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using GRcn.Detection.Data;

namespace GRcn.Detection.Tests.Data;

/// <summary>BMP, GIF, WebP and CMYK JPEG through <see cref="ImageFile"/>, and every kind of bad
/// image ending in <see cref="InvalidDataException"/> naming the file and the problem, fast.</summary>
public sealed class ImageFormatsAndBadImagesTests
{
    [Theory]
    [InlineData("rgb24.bmp", ImageFormat.Bmp)]
    [InlineData("palette8.bmp", ImageFormat.Bmp)]
    [InlineData("two_frames.gif", ImageFormat.Gif)]
    [InlineData("lossless.webp", ImageFormat.Webp)]
    public void DecodesLikePil(string file, ImageFormat format)
    {
        string path = TestImages.Fixture("formats", file);
        Assert.Equal(format, ImageFile.DetectFormat(File.ReadAllBytes(path)));
        RgbImage actual = ImageFile.Load(path);
        RgbImage expected = PpmCodec.Load(TestImages.Fixture("formats", Path.ChangeExtension(file, ".ppm")));
        Assert.Equal((30, 21), (actual.Width, actual.Height));
        Assert.Equal(expected.Pixels, actual.Pixels); // the GIF: its first frame
    }

    [Fact]
    public void CmykJpegDecodes()
    {
        // PIL's CMYK→RGB is a naive formula and Skia's goes through the colour engine: close, not equal.
        RgbImage actual = ImageFile.Load(TestImages.Fixture("formats", "cmyk.jpg"));
        RgbImage expected = PpmCodec.Load(TestImages.Fixture("formats", "cmyk.ppm"));
        Assert.Equal((30, 21), (actual.Width, actual.Height));
        double meanDiff = expected.Pixels.Zip(actual.Pixels, (a, b) => Math.Abs(a - b)).Average();
        Assert.InRange(meanDiff, 0, 8);
    }

    [Fact]
    public void ZeroByteFileIsEmpty()
    {
        using var dir = new TempDir();
        string path = dir.File("empty.png");
        File.WriteAllBytes(path, []);
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("empty", e.Message);
    }

    [Fact]
    public void TextFileNamedPngIsNotAnImage()
    {
        using var dir = new TempDir();
        string path = dir.File("notes.png");
        File.WriteAllText(path, "these are notes, not a picture\n");
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("not an image", e.Message);
    }

    [Fact]
    public void EndlessStreamStopsAtOnce()
    {
        if (!File.Exists("/dev/zero")) return;
        var sw = Stopwatch.StartNew();
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Load("/dev/zero"));
        Assert.Contains("/dev/zero", e.Message);
        Assert.Contains("not an image", e.Message);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(2), sw.Elapsed.ToString());
    }

    [Fact]
    public void FileOverTheByteLimitIsRefused()
    {
        using var dir = new TempDir();
        string path = dir.File("big.png");
        File.Copy(TestImages.Fixture("png", "pil_rgb.png"), path);
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Load(path, new ImageLoadOptions { MaxFileBytes = 1000 }));
        Assert.Contains(path, e.Message);
        Assert.Contains("over the limit of 1000 bytes", e.Message);
    }

    [Fact]
    public void UnsupportedFormatIsNamed()
    {
        byte[] tiff = [.. "II*\0"u8, .. new byte[60]];
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Decode(tiff, "scan.tif"));
        Assert.Contains("scan.tif", e.Message);
        Assert.Contains("not an image in a supported format", e.Message);
    }

    [Fact]
    public void JpegHeaderClaiming26000SquaredIsRefusedBeforeAllocating()
    {
        byte[] jpeg = File.ReadAllBytes(TestImages.Fixture("jpeg", "rgb420.jpg"));
        int sof = jpeg.AsSpan().IndexOf((ReadOnlySpan<byte>)[0xFF, 0xC0]);
        BinaryPrimitives.WriteUInt16BigEndian(jpeg.AsSpan(sof + 5), 26000); // height
        BinaryPrimitives.WriteUInt16BigEndian(jpeg.AsSpan(sof + 7), 26000); // width
        long before = GC.GetAllocatedBytesForCurrentThread();
        var sw = Stopwatch.StartNew();
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Decode(jpeg, "huge.jpg"));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(1), sw.Elapsed.ToString());
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "allocated before refusing");
        Assert.Contains("huge.jpg", e.Message);
        Assert.Contains("26000×26000 = 676000000 pixels", e.Message);
        Assert.Contains("100000000", e.Message);
    }

    [Fact]
    public void PngHeaderClaiming100000SquaredIsRefused()
    {
        byte[] png = TestImages.RawPng(100_000, 100_000, 8, 2, new byte[64]);
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Decode(png, "huge.png"));
        Assert.Contains("huge.png", e.Message);
        Assert.Contains("100000×100000 = 10000000000 pixels", e.Message);
    }

    [Fact]
    public void PpmHeaderOverTheLimitIsRefused()
    {
        byte[] ppm = Encoding.ASCII.GetBytes("P6 100000 100000 255\n\0\0\0");
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Decode(ppm, "huge.ppm"));
        Assert.Contains("100000×100000", e.Message);
    }

    [Fact]
    public void PixelLimitIsConfigurable()
    {
        string path = TestImages.Fixture("png", "rgb8_13x11_plain.png");
        Assert.Equal(13, ImageFile.Load(path, new ImageLoadOptions { MaxPixels = 143 }).Width);
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Load(path, new ImageLoadOptions { MaxPixels = 142 }));
        Assert.Contains("13×11 = 143 pixels, over the limit of 142", e.Message);
    }

    /// <summary>Thousands of truncated and bit-flipped PNGs (plain and interlaced) and JPEGs (baseline,
    /// progressive, grey): each decodes or throws InvalidDataException, within a time limit.</summary>
    [Fact]
    public async Task FuzzedFilesFailCleanlyAndFast()
    {
        string[] seeds = ["png/rgb8_13x11_adam7.png", "png/palette4_13x11_adam7.png", "png/rgba16_13x11_plain.png", "png/grey1_13x11_adam7.png",
            "png/pil_rgb.png", "jpeg/rgb420.jpg", "jpeg/rgb444_progressive.jpg", "jpeg/grey.jpg", "formats/two_frames.gif", "formats/lossless.webp"];
        var rng = new Random(2026);
        TimeSpan limit = TimeSpan.FromSeconds(2), worst = TimeSpan.Zero;
        int decoded = 0, refused = 0;
        foreach (string seed in seeds)
        {
            byte[] original = File.ReadAllBytes(TestImages.Fixture(seed.Split('/')));
            bool png = seed.EndsWith(".png");
            for (int v = 0; v < 320; v++)
            {
                byte[] data;
                if (v < 80)
                    data = original[..rng.Next(original.Length)];
                else
                {
                    data = (byte[])original.Clone();
                    for (int k = rng.Next(1, 5); k > 0; k--) data[rng.Next(data.Length)] ^= (byte)(1 << rng.Next(8));
                    if (png && v % 2 == 0) FixPngCrcs(data); // reach past the CRC check into the decoder
                    if (v % 7 == 0) data = data[..rng.Next(data.Length / 2, data.Length)];
                }
                string name = $"{seed}#{v}";
                var sw = Stopwatch.StartNew();
                var task = Task.Run(() => ImageFile.Decode(data, name));
                Assert.True(await Task.WhenAny(task, Task.Delay(limit)) == task, $"{name}: no result within {limit.TotalSeconds} s");
                if (sw.Elapsed > worst) worst = sw.Elapsed;
                if (task.IsFaulted)
                {
                    Exception e = task.Exception!.InnerException!;
                    Assert.True(e is InvalidDataException, $"{name}: {e.GetType()}: {e.Message}");
                    Assert.Contains(name, e.Message);
                    refused++;
                }
                else decoded++;
            }
        }
        Assert.Equal(seeds.Length * 320, decoded + refused);
        Assert.True(refused > seeds.Length * 80, $"only {refused} refused");
    }

    /// <summary>Rewrites every complete chunk's CRC so that bit flips reach the chunk parsers and zlib.</summary>
    private static void FixPngCrcs(byte[] png)
    {
        int pos = 8;
        while (pos + 12 <= png.Length)
        {
            uint length = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(pos));
            if (length > png.Length - pos - 12) return;
            uint crc = Crc32.Compute(png.AsSpan(pos + 4, 4 + (int)length));
            BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(pos + 8 + (int)length), crc);
            pos += 12 + (int)length;
        }
    }
}
