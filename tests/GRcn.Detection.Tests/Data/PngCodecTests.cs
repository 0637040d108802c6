using System.Buffers.Binary;
using GRcn.Detection.Data;

namespace GRcn.Detection.Tests.Data;

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
        RgbImage actual = PngCodec.Load(TestImages.Fixture("png", name + ".png"));
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
        byte[] png = PngCodec.Encode(image);
        RgbImage back = PngCodec.Decode(png);
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
        PngCodec.Save(image, path);
        Assert.Equal(image.Pixels, ImageFile.Load(path).Pixels);
    }

    [Fact]
    public void EncoderWritesIhdrFirstAndIendLast()
    {
        byte[] png = PngCodec.Encode(TestImages.Random(4, 3, seed: 1));
        Assert.True(PngCodec.IsPng(png));
        Assert.Equal("IHDR"u8.ToArray(), png[12..16]);
        Assert.Equal(4u, BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(16)));
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(20)));
        Assert.Equal("IEND"u8.ToArray(), png[^8..^4]);
    }

    [Fact]
    public void BadCrcIsReportedWithTheFileName()
    {
        byte[] png = PngCodec.Encode(TestImages.Random(8, 8, seed: 5));
        png[41 + 4] ^= 0x55; // a byte inside the IDAT chunk's data (IDAT starts at byte 33)
        var e = Assert.Throws<InvalidDataException>(() => PngCodec.Decode(png, "broken.png"));
        Assert.Contains("broken.png", e.Message);
        Assert.Contains("CRC mismatch in chunk IDAT", e.Message);
    }

    [Fact]
    public void TruncatedFilesAreReportedWithTheFileName()
    {
        byte[] png = PngCodec.Encode(TestImages.Random(20, 20, seed: 6));
        using var dir = new TempDir();
        foreach (int length in new[] { 0, 5, 8, 20, 40, png.Length / 2, png.Length - 12, png.Length - 1 })
        {
            string path = dir.File($"cut{length}.png");
            File.WriteAllBytes(path, png[..length]);
            var e = Assert.Throws<InvalidDataException>(() => PngCodec.Load(path));
            Assert.Contains(path, e.Message);
            Assert.True(e.Message.Contains("truncated") || e.Message.Contains("shorter than the PNG signature"), e.Message);
        }
    }

    [Fact]
    public void ShortImageDataIsTruncated()
    {
        // 4×4 grey needs 4 × (1 + 4) bytes of scanlines; give 3 rows.
        byte[] png = TestImages.RawPng(4, 4, 8, 0, new byte[15]);
        var e = Assert.Throws<InvalidDataException>(() => PngCodec.Decode(png, "short.png"));
        Assert.Contains("short.png", e.Message);
        Assert.Contains("truncated image data", e.Message);
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
        var e = Assert.Throws<InvalidDataException>(() => PngCodec.Decode(png, "deflate.png"));
        Assert.Contains("deflate.png", e.Message);
    }

    [Fact]
    public void InvalidFilterTypeIsReported()
    {
        byte[] rows = [0, 1, 2, 7, 3, 4]; // second row has filter type 7
        var e = Assert.Throws<InvalidDataException>(() => PngCodec.Decode(TestImages.RawPng(2, 2, 8, 0, rows), "filter.png"));
        Assert.Contains("filter type 7", e.Message);
    }

    [Theory]
    [InlineData(3, 2, "bit depth 3 is not allowed with colour type 2")]
    [InlineData(16, 3, "bit depth 16 is not allowed with colour type 3")]
    [InlineData(8, 5, "colour type 5")]
    public void InvalidHeaderIsReported(int depth, int colorType, string message)
    {
        var e = Assert.Throws<InvalidDataException>(() => PngCodec.Decode(TestImages.RawPng(1, 1, (byte)depth, (byte)colorType, [0, 0, 0, 0]), "hdr.png"));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void PaletteImageWithoutPlteIsReported()
    {
        var e = Assert.Throws<InvalidDataException>(() => PngCodec.Decode(TestImages.RawPng(1, 1, 8, 3, [0, 0]), "p.png"));
        Assert.Contains("without a PLTE chunk", e.Message);
    }

    [Fact]
    public void PaletteIndexPastTheEntriesIsBlack()
    {
        RgbImage img = PngCodec.Decode(TestImages.RawPng(2, 1, 8, 3, [0, 0, 5], palette: [10, 20, 30]));
        Assert.Equal(new byte[] { 10, 20, 30, 0, 0, 0 }, img.Pixels);
    }

    [Fact]
    public void UnknownCriticalChunkIsRejectedAndAncillaryChunksAreSkipped()
    {
        byte[] good = TestImages.RawPng(1, 1, 8, 0, [0, 77]);
        int afterIhdr = 8 + 25;
        byte[] withAncillary = [.. good[..afterIhdr], .. TestImages.Chunk("teXt", "a\0b"u8), .. good[afterIhdr..]];
        Assert.Equal(new byte[] { 77, 77, 77 }, PngCodec.Decode(withAncillary).Pixels);
        byte[] withCritical = [.. good[..afterIhdr], .. TestImages.Chunk("ZZZZ", [1]), .. good[afterIhdr..]];
        var e = Assert.Throws<InvalidDataException>(() => PngCodec.Decode(withCritical, "c.png"));
        Assert.Contains("unknown critical chunk ZZZZ", e.Message);
    }

    [Fact]
    public void Crc32MatchesTheStandardCheckValue()
    {
        Assert.Equal(0xCBF43926u, Crc32.Compute("123456789"u8));
        byte[] data = new byte[1000];
        new Random(4).NextBytes(data);
        Assert.Equal(Crc32.Compute(data), Crc32.Append(Crc32.Compute(data.AsSpan(0, 333)), data.AsSpan(333)));
    }
}
