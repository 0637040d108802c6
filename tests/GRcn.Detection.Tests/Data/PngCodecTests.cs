using System.Buffers.Binary;
using GRcn.Detection.Data;

namespace GRcn.Detection.Tests.Data;

/// <summary>PNG through <see cref="ImageFile"/> (SkiaSharp): the fixtures decode as PIL decodes them; bad files fail with InvalidDataException.</summary>
public sealed class PngCodecTests
{
    /// <summary>Every crafted and PIL-written PNG fixture (name without extension).</summary>
    public static TheoryData<string> Fixtures() => new(FixtureNames());

    private static IEnumerable<string> FixtureNames() =>
        Directory.GetFiles(TestImages.Fixture("png"), "*.png").Select(Path.GetFileNameWithoutExtension).Order(StringComparer.Ordinal)!;

    [Fact]
    public void FixtureSetCoversEveryFormat()
    {
        var names = FixtureNames().ToHashSet();
        string[] formats = ["grey1", "grey2", "grey4", "grey8", "grey16", "rgb8", "rgb16", "palette1", "palette2", "palette4", "palette8",
            "greyalpha8", "greyalpha16", "rgba8", "rgba16"];
        foreach (string f in formats)
            foreach (string layout in new[] { "plain", "adam7" })
                Assert.Contains($"{f}_13x11_{layout}", names);
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void DecodesFixtureLikePil(string name)
    {
        RgbImage actual = ImageFile.Load(TestImages.Fixture("png", name + ".png"));
        RgbImage expected = PpmCodec.Load(TestImages.Fixture("png", name + ".ppm"));
        Assert.Equal(expected.Width, actual.Width);
        Assert.Equal(expected.Height, actual.Height);
        Assert.Equal(expected.Pixels, actual.Pixels);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(17, 5)]
    [InlineData(64, 33)]
    public void RgbRoundTripIsExact(int width, int height)
    {
        RgbImage image = TestImages.Random(width, height, seed: width * 31 + height);
        byte[] png = ImageFile.EncodePng(image);
        Assert.Equal(ImageFormat.Png, ImageFile.DetectFormat(png));
        RgbImage back = ImageFile.Decode(png);
        Assert.Equal(width, back.Width);
        Assert.Equal(height, back.Height);
        Assert.Equal(image.Pixels, back.Pixels);
    }

    [Fact]
    public void SaveAndLoadThroughAFile()
    {
        using var dir = new TempDir();
        RgbImage image = TestImages.Random(9, 7, seed: 3);
        string path = dir.File("x.png");
        ImageFile.Save(image, path);
        Assert.Equal(image.Pixels, ImageFile.Load(path).Pixels);
    }

    [Fact]
    public void BadCrcInImageDataIsReportedWithTheFileName()
    {
        byte[] png = ImageFile.EncodePng(TestImages.Random(8, 8, seed: 5));
        int idat = IndexOf(png, "IDAT"u8);
        png[idat + 8] ^= 0x55; // a byte inside the IDAT chunk's data
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Decode(png, "broken.png"));
        Assert.Contains("broken.png", e.Message);
        Assert.Contains("PNG", e.Message);
    }

    [Fact]
    public void TruncatedFilesAreReportedWithTheFileName()
    {
        byte[] png = ImageFile.EncodePng(TestImages.Random(20, 20, seed: 6));
        using var dir = new TempDir();
        // Cut in the signature, the header or the image data. (Cut in the last few bytes of the
        // zlib stream, its checksums or IEND, every row is already decoded and Skia returns the image.)
        foreach (int length in new[] { 0, 5, 8, 20, 40, png.Length / 2, png.Length * 9 / 10 })
        {
            string path = dir.File($"cut{length}.png");
            File.WriteAllBytes(path, png[..length]);
            var e = Record.Exception(() => ImageFile.Load(path));
            Assert.True(e is InvalidDataException, $"cut to {length} of {png.Length} bytes: {e?.GetType().Name ?? "decoded"}");
            Assert.Contains(path, e!.Message);
        }
    }

    [Fact]
    public void TruncatedImageDataIsAnErrorUnlessAllowed()
    {
        byte[] png = ImageFile.EncodePng(TestImages.Random(40, 40, seed: 7));
        byte[] cut = png[..(png.Length * 2 / 3)];
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Decode(cut, "cut.png"));
        Assert.Contains("cut.png", e.Message);
        Assert.Contains("truncated PNG", e.Message);
        RgbImage partial = ImageFile.Decode(cut, "cut.png", new ImageLoadOptions { AllowTruncated = true });
        Assert.Equal((40, 40), (partial.Width, partial.Height));
    }

    [Fact]
    public void CorruptDeflateDataIsReported()
    {
        byte[] ihdr = new byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, 2);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), 2);
        ihdr[8] = 8; ihdr[9] = 2;
        byte[] png = [137, 80, 78, 71, 13, 10, 26, 10, .. TestImages.Chunk("IHDR", ihdr),
            .. TestImages.Chunk("IDAT", [0x78, 0x9C, 0xFF, 0xFF, 0xFF, 0xFF, 0x00]), .. TestImages.Chunk("IEND", [])];
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Decode(png, "deflate.png"));
        Assert.Contains("deflate.png", e.Message);
    }

    [Fact]
    public void InvalidFilterTypeIsReported()
    {
        byte[] rows = [0, 1, 2, 7, 3, 4]; // second row has filter type 7
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Decode(TestImages.RawPng(2, 2, 8, 0, rows), "filter.png"));
        Assert.Contains("filter.png", e.Message);
    }

    [Theory]
    [InlineData(3, 2)]
    [InlineData(16, 3)]
    [InlineData(8, 5)]
    public void InvalidHeaderIsReported(int depth, int colorType)
    {
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Decode(TestImages.RawPng(1, 1, (byte)depth, (byte)colorType, [0, 0, 0, 0]), "hdr.png"));
        Assert.Contains("hdr.png", e.Message);
    }

    [Fact]
    public void PaletteImageWithoutPlteIsReported()
    {
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Decode(TestImages.RawPng(1, 1, 8, 3, [0, 0]), "p.png"));
        Assert.Contains("p.png", e.Message);
    }

    [Fact]
    public void AncillaryChunksAreSkipped()
    {
        byte[] good = TestImages.RawPng(1, 1, 8, 0, [0, 77]);
        int afterIhdr = 8 + 25;
        byte[] withAncillary = [.. good[..afterIhdr], .. TestImages.Chunk("teXt", "a\0b"u8), .. good[afterIhdr..]];
        Assert.Equal(new byte[] { 77, 77, 77 }, ImageFile.Decode(withAncillary).Pixels);
    }

    [Fact]
    public void Crc32MatchesTheStandardCheckValue()
    {
        Assert.Equal(0xCBF43926u, Crc32.Compute("123456789"u8));
        byte[] data = new byte[1000];
        new Random(4).NextBytes(data);
        Assert.Equal(Crc32.Compute(data), Crc32.Append(Crc32.Compute(data.AsSpan(0, 333)), data.AsSpan(333)));
    }

    internal static int IndexOf(byte[] data, ReadOnlySpan<byte> what) => data.AsSpan().IndexOf(what);
}
