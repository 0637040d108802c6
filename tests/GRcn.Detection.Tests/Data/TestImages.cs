using System.Buffers.Binary;
using System.IO.Compression;
using GRcn.Detection.Data;

namespace GRcn.Detection.Tests.Data;

/// <summary>Fixture paths, temporary folders and small image builders shared by the data tests.</summary>
internal static class TestImages
{
    public static string Fixtures => Path.Combine(AppContext.BaseDirectory, "Data", "Fixtures");

    public static string Fixture(params string[] parts) => Path.Combine([Fixtures, .. parts]);

    /// <summary>An image whose pixels mix position and a seeded random component.</summary>
    public static RgbImage Random(int width, int height, int seed)
    {
        var rng = new Random(seed);
        var px = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                int o = 3 * (y * width + x);
                px[o] = (byte)(x * 255 / Math.Max(1, width - 1));
                px[o + 1] = (byte)(y * 255 / Math.Max(1, height - 1));
                px[o + 2] = (byte)rng.Next(256);
            }
        return new RgbImage(width, height, px);
    }

    /// <summary>A PNG chunk: length, type, data, CRC.</summary>
    public static byte[] Chunk(string type, ReadOnlySpan<byte> data)
    {
        var t = System.Text.Encoding.ASCII.GetBytes(type);
        var result = new byte[12 + data.Length];
        BinaryPrimitives.WriteUInt32BigEndian(result, (uint)data.Length);
        t.CopyTo(result, 4);
        data.CopyTo(result.AsSpan(8));
        BinaryPrimitives.WriteUInt32BigEndian(result.AsSpan(8 + data.Length), Crc32.Append(Crc32.Compute(t), data));
        return result;
    }

    /// <summary>A PNG with the given IHDR fields and raw (already filtered) scanline bytes.</summary>
    public static byte[] RawPng(int width, int height, byte depth, byte colorType, byte[] scanlines, byte[]? palette = null)
    {
        var ihdr = new byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, (uint)width);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), (uint)height);
        ihdr[8] = depth;
        ihdr[9] = colorType;
        using var z = new MemoryStream();
        using (var zs = new ZLibStream(z, CompressionLevel.Fastest, leaveOpen: true)) zs.Write(scanlines);
        var png = new List<byte>([137, 80, 78, 71, 13, 10, 26, 10]);
        png.AddRange(Chunk("IHDR", ihdr));
        if (palette is not null) png.AddRange(Chunk("PLTE", palette));
        png.AddRange(Chunk("IDAT", z.ToArray()));
        png.AddRange(Chunk("IEND", []));
        return [.. png];
    }
}

/// <summary>A temporary folder deleted on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "grcn-data-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}
