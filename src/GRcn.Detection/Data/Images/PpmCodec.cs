// Netpbm PPM/PGM decoding to 8-bit RGB (P6 and P5 binary, P3 and P2 plain text; maxval 1..65535,
// samples rescaled to 0..255 with rounding; 16-bit binary samples big-endian) and P6 encoding
// (maxval 255). One image per call, on the calling thread.
using System.Text;

namespace GRcn.Detection.Data;

/// <summary>PPM (and greyscale PGM) reader, P6 writer.</summary>
public static class PpmCodec
{
    /// <summary>True when <paramref name="data"/> starts like a PPM or PGM file (P2, P3, P5, P6 then whitespace).</summary>
    public static bool IsPpm(ReadOnlySpan<byte> data) =>
        data.Length >= 3 && data[0] == (byte)'P' && data[1] is (byte)'2' or (byte)'3' or (byte)'5' or (byte)'6' && IsSpace(data[2]);

    /// <summary>Reads and decodes the PPM/PGM file at <paramref name="path"/>.</summary>
    public static RgbImage Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return Decode(File.ReadAllBytes(path), path);
    }

    /// <summary>The width and height in a PPM/PGM header (the raster is not read).</summary>
    /// <exception cref="InvalidDataException">The header is malformed.</exception>
    public static (int Width, int Height) ReadSize(ReadOnlySpan<byte> data, string name)
    {
        if (!IsPpm(data)) throw Corrupt(name, "missing the P2/P3/P5/P6 magic number");
        int pos = 2;
        long width = ReadNumber(data, ref pos, name, "width");
        long height = ReadNumber(data, ref pos, name, "height");
        if (width is <= 0 or > int.MaxValue || height is <= 0 or > int.MaxValue) throw Corrupt(name, $"image size {width}×{height}");
        return ((int)width, (int)height);
    }

    /// <summary>Decodes PPM/PGM data; <paramref name="name"/> appears in error messages.</summary>
    /// <param name="data">The file's bytes.</param>
    /// <param name="name">A file name for messages.</param>
    /// <param name="maxPixels">Largest width × height accepted, checked before pixels are allocated.</param>
    /// <exception cref="InvalidDataException">Malformed, truncated or too large data, naming <paramref name="name"/> and the problem.</exception>
    public static RgbImage Decode(ReadOnlySpan<byte> data, string name = "PPM data", long maxPixels = 100_000_000)
    {
        if (!IsPpm(data)) throw Corrupt(name, "missing the P2/P3/P5/P6 magic number");
        char kind = (char)data[1];
        bool colour = kind is '3' or '6', binary = kind is '5' or '6';
        int pos = 2;
        int width = (int)ReadNumber(data, ref pos, name, "width");
        int height = (int)ReadNumber(data, ref pos, name, "height");
        int maxval = (int)ReadNumber(data, ref pos, name, "maxval");
        if (width <= 0 || height <= 0) throw Corrupt(name, $"image size {width}×{height}");
        if (maxval is < 1 or > 65535) throw Corrupt(name, $"maxval {maxval} (valid: 1..65535)");
        if ((long)width * height > maxPixels)
            throw new InvalidDataException($"{name}: PPM header declares {width}×{height} = {(long)width * height} pixels, over the limit of {maxPixels} (ImageLoadOptions.MaxPixels)");
        if ((long)width * height * 3 > Array.MaxLength) throw Corrupt(name, $"image size {width}×{height} is too large");
        int channels = colour ? 3 : 1;
        long samples = (long)width * height * channels;
        // A header that claims more samples than the file can hold fails before the pixels are
        // allocated: binary samples take one or two bytes, plain ones a digit and a separator.
        if (binary && samples * (maxval > 255 ? 2 : 1) > data.Length - pos - 1)
            throw Corrupt(name, $"truncated raster: {Math.Max(0, data.Length - pos - 1)} of {samples * (maxval > 255 ? 2 : 1)} bytes present");
        if (!binary && samples * 2 - 1 > data.Length - pos)
            throw Corrupt(name, $"truncated: the header declares {width}×{height} but the file holds only {data.Length} bytes");
        var pixels = new byte[(long)width * height * 3];

        if (binary)
        {
            // Exactly one whitespace byte separates maxval from the raster.
            if (pos >= data.Length || !IsSpace(data[pos])) throw Corrupt(name, "truncated: no raster after the header");
            pos++;
            int bytesPerSample = maxval > 255 ? 2 : 1;
            long need = samples * bytesPerSample;
            if (data.Length - pos < need)
                throw Corrupt(name, $"truncated raster: {data.Length - pos} of {need} bytes present");
            ReadOnlySpan<byte> raster = data.Slice(pos, (int)need);
            for (long i = 0; i < samples; i++)
            {
                int v = bytesPerSample == 1 ? raster[(int)i] : raster[(int)(2 * i)] << 8 | raster[(int)(2 * i + 1)];
                if (v > maxval) throw Corrupt(name, $"sample {i} is {v}, above maxval {maxval}");
                Store(pixels, i, channels, Scale(v, maxval));
            }
        }
        else
        {
            for (long i = 0; i < samples; i++)
            {
                long v = ReadNumber(data, ref pos, name, $"sample {i}");
                if (v > maxval) throw Corrupt(name, $"sample {i} is {v}, above maxval {maxval}");
                Store(pixels, i, channels, Scale((int)v, maxval));
            }
        }
        return new RgbImage(width, height, pixels);
    }

    private static void Store(byte[] pixels, long sample, int channels, byte v)
    {
        if (channels == 3)
        {
            pixels[sample] = v;
        }
        else
        {
            long o = 3 * sample;
            pixels[o] = v; pixels[o + 1] = v; pixels[o + 2] = v;
        }
    }

    // v·255/maxval rounded to nearest (identity when maxval is 255).
    private static byte Scale(int v, int maxval) => maxval == 255 ? (byte)v : (byte)(((long)v * 255 + maxval / 2) / maxval);

    private static long ReadNumber(ReadOnlySpan<byte> data, ref int pos, string name, string what)
    {
        // Skips whitespace and '#' comments (to end of line), then reads decimal digits.
        while (pos < data.Length)
        {
            if (IsSpace(data[pos])) pos++;
            else if (data[pos] == (byte)'#') { while (pos < data.Length && data[pos] != (byte)'\n' && data[pos] != (byte)'\r') pos++; }
            else break;
        }
        if (pos >= data.Length) throw Corrupt(name, $"truncated: the file ends before the {what}");
        if (data[pos] is < (byte)'0' or > (byte)'9')
            throw Corrupt(name, $"expected a decimal number for the {what} at byte {pos}, found 0x{data[pos]:X2}");
        long v = 0;
        while (pos < data.Length && data[pos] is >= (byte)'0' and <= (byte)'9')
        {
            v = v * 10 + (data[pos++] - '0');
            if (v > int.MaxValue) throw Corrupt(name, $"the {what} is too large");
        }
        return v;
    }

    private static bool IsSpace(byte b) => b is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r' or 0x0B or 0x0C;

    /// <summary>Encodes <paramref name="image"/> as binary PPM (P6, maxval 255).</summary>
    public static byte[] Encode(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        byte[] header = Encoding.ASCII.GetBytes($"P6\n{image.Width} {image.Height}\n255\n");
        var result = new byte[header.Length + image.Pixels.Length];
        header.CopyTo(result, 0);
        image.Pixels.CopyTo(result, header.Length);
        return result;
    }

    /// <summary>Writes <paramref name="image"/> as a P6 file at <paramref name="path"/>.</summary>
    public static void Save(RgbImage image, string path)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var fs = File.Create(path);
        fs.Write(Encoding.ASCII.GetBytes($"P6\n{image.Width} {image.Height}\n255\n"));
        fs.Write(image.Pixels);
    }

    private static InvalidDataException Corrupt(string name, string problem) => new($"{name}: malformed PPM: {problem}");
}
