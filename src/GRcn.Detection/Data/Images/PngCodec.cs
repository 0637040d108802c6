// PNG decoding to 8-bit RGB and 8-bit RGB encoding, in managed code over ZLibStream.
// Decoding handles every colour type (grey, grey+alpha, RGB, RGBA, palette), bit depths
// 1/2/4/8/16, the five row filters and Adam7 interlacing, and checks every chunk's CRC.
// Samples become 8-bit the way libpng's png_set_strip_16, PIL and torchvision.io do:
// a 16-bit sample keeps its high byte; 1/2/4-bit grey is scaled by 255 / (2^depth − 1).
// Alpha (the alpha channel and tRNS) is dropped, not composited (PIL's convert("RGB"));
// gamma, ICC and every other ancillary chunk are ignored. Palette indices past the PLTE
// entries decode as black. Work: one image per call, on the calling thread.
using System.Buffers;
using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace GRcn.Detection.Data;

/// <summary>PNG reader (every standard format, to 8-bit RGB) and 8-bit RGB writer.</summary>
public static class PngCodec
{
    private static ReadOnlySpan<byte> Signature => [137, 80, 78, 71, 13, 10, 26, 10];

    // Adam7 passes: first column, first row, column step, row step.
    private static readonly (int X0, int Y0, int Dx, int Dy)[] Adam7 =
        [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)];

    private static readonly (int X0, int Y0, int Dx, int Dy)[] SinglePass = [(0, 0, 1, 1)];

    /// <summary>Largest IDAT chunk the encoder writes.</summary>
    private const int MaxIdatChunk = 1 << 20;

    /// <summary>True when <paramref name="data"/> starts with the PNG signature.</summary>
    public static bool IsPng(ReadOnlySpan<byte> data) => data.Length >= 8 && data[..8].SequenceEqual(Signature);

    /// <summary>Reads and decodes the PNG file at <paramref name="path"/>.</summary>
    /// <exception cref="InvalidDataException">The file is not a valid PNG; the message names the file and the problem.</exception>
    public static RgbImage Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return Decode(File.ReadAllBytes(path), path);
    }

    /// <summary>Decodes a PNG held in memory; <paramref name="name"/> (a file name) appears in error messages.</summary>
    /// <exception cref="InvalidDataException">Corrupt, truncated or unsupported data; the message names <paramref name="name"/> and the problem.</exception>
    public static RgbImage Decode(ReadOnlySpan<byte> data, string name = "PNG data")
    {
        if (!IsPng(data))
            throw Corrupt(name, data.Length < 8 ? $"only {data.Length} bytes, shorter than the PNG signature" : "missing the PNG signature");

        Header header = default;
        bool seenHeader = false;
        byte[]? palette = null;
        byte[] idat = ArrayPool<byte>.Shared.Rent(Math.Min(data.Length, 1 << 16));
        int idatLength = 0;
        try
        {
            int pos = 8;
            while (true)
            {
                if (data.Length - pos < 8)
                    throw Corrupt(name, $"truncated: the file ends at byte {data.Length} before the IEND chunk");
                uint length = BinaryPrimitives.ReadUInt32BigEndian(data[pos..]);
                ReadOnlySpan<byte> type = data.Slice(pos + 4, 4);
                string typeName = ChunkName(type);
                if (length > int.MaxValue)
                    throw Corrupt(name, $"chunk {typeName} at byte {pos} declares {length} bytes (more than 2^31 − 1)");
                if (data.Length - pos - 12 < length)
                    throw Corrupt(name, $"truncated: chunk {typeName} at byte {pos} declares {length} data bytes but the file ends at byte {data.Length}");
                foreach (byte b in type)
                    if (!(b is >= (byte)'A' and <= (byte)'Z' or >= (byte)'a' and <= (byte)'z'))
                        throw Corrupt(name, $"invalid chunk type {typeName} at byte {pos}");
                ReadOnlySpan<byte> body = data.Slice(pos + 8, (int)length);
                uint stored = BinaryPrimitives.ReadUInt32BigEndian(data[(pos + 8 + (int)length)..]);
                uint computed = Crc32.Compute(data.Slice(pos + 4, 4 + (int)length));
                if (stored != computed)
                    throw Corrupt(name, $"CRC mismatch in chunk {typeName} at byte {pos} (stored 0x{stored:X8}, computed 0x{computed:X8})");
                int chunkStart = pos;
                pos += 12 + (int)length;

                if (type.SequenceEqual("IHDR"u8))
                {
                    if (seenHeader) throw Corrupt(name, "more than one IHDR chunk");
                    header = ParseHeader(body, name);
                    seenHeader = true;
                    continue;
                }
                if (!seenHeader) throw Corrupt(name, $"the first chunk is {typeName}, not IHDR");
                if (type.SequenceEqual("PLTE"u8))
                {
                    if (body.Length % 3 != 0 || body.Length == 0 || body.Length > 768)
                        throw Corrupt(name, $"PLTE chunk of {body.Length} bytes (expected 3 × 1..256)");
                    palette = new byte[768];
                    body.CopyTo(palette);
                }
                else if (type.SequenceEqual("IDAT"u8))
                {
                    if (idat.Length - idatLength < body.Length)
                    {
                        byte[] grown = ArrayPool<byte>.Shared.Rent((int)Math.Min(Array.MaxLength, Math.Max(2L * idat.Length, (long)idatLength + body.Length)));
                        idat.AsSpan(0, idatLength).CopyTo(grown);
                        ArrayPool<byte>.Shared.Return(idat);
                        idat = grown;
                    }
                    body.CopyTo(idat.AsSpan(idatLength));
                    idatLength += body.Length;
                }
                else if (type.SequenceEqual("IEND"u8))
                {
                    break;
                }
                else if ((type[0] & 0x20) == 0)
                {
                    throw Corrupt(name, $"unknown critical chunk {typeName} at byte {chunkStart}");
                }
            }

            if (header.ColorType == 3 && palette is null) throw Corrupt(name, "palette image without a PLTE chunk");
            if (idatLength == 0) throw Corrupt(name, "no IDAT chunk (no image data)");
            return DecodeImage(header, palette, idat, idatLength, name);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(idat);
        }
    }

    private readonly record struct Header(int Width, int Height, int BitDepth, int ColorType, bool Interlaced)
    {
        public int Channels => ColorType switch { 0 => 1, 2 => 3, 3 => 1, 4 => 2, _ => 4 };
        public int BitsPerPixel => Channels * BitDepth;
    }

    private static Header ParseHeader(ReadOnlySpan<byte> b, string name)
    {
        if (b.Length != 13) throw Corrupt(name, $"IHDR chunk of {b.Length} bytes (expected 13)");
        uint width = BinaryPrimitives.ReadUInt32BigEndian(b);
        uint height = BinaryPrimitives.ReadUInt32BigEndian(b[4..]);
        int depth = b[8], colorType = b[9];
        if (width == 0 || height == 0 || width > int.MaxValue || height > int.MaxValue)
            throw Corrupt(name, $"image size {width}×{height} (each side must be 1..2^31 − 1)");
        bool validDepth = colorType switch
        {
            0 => depth is 1 or 2 or 4 or 8 or 16,
            3 => depth is 1 or 2 or 4 or 8,
            2 or 4 or 6 => depth is 8 or 16,
            _ => throw Corrupt(name, $"colour type {colorType} (valid: 0, 2, 3, 4, 6)"),
        };
        if (!validDepth) throw Corrupt(name, $"bit depth {depth} is not allowed with colour type {colorType}");
        if (b[10] != 0) throw Corrupt(name, $"compression method {b[10]} (only 0, deflate, exists)");
        if (b[11] != 0) throw Corrupt(name, $"filter method {b[11]} (only 0 exists)");
        if (b[12] > 1) throw Corrupt(name, $"interlace method {b[12]} (valid: 0 none, 1 Adam7)");
        if ((long)width * height * 3 > Array.MaxLength)
            throw Corrupt(name, $"image size {width}×{height} is too large to hold as one RGB array");
        return new Header((int)width, (int)height, depth, colorType, b[12] == 1);
    }

    private static RgbImage DecodeImage(Header h, byte[]? palette, byte[] idat, int idatLength, string name)
    {
        int width = h.Width, height = h.Height;
        long maxRowBytes = ((long)width * h.BitsPerPixel + 7) / 8;
        if (maxRowBytes + 1 > Array.MaxLength) throw Corrupt(name, $"rows of {maxRowBytes} bytes are too long");
        int bpp = Math.Max(1, h.BitsPerPixel / 8);
        var pixels = new byte[(long)width * height * 3];
        // Two scanlines with their filter byte at index 0; prior/current swap each row.
        byte[] lineA = ArrayPool<byte>.Shared.Rent((int)maxRowBytes + 1);
        byte[] lineB = ArrayPool<byte>.Shared.Rent((int)maxRowBytes + 1);
        byte[]? scatter = h.Interlaced ? ArrayPool<byte>.Shared.Rent(width * 3) : null;
        long expected = 0, produced = 0;
        var passes = h.Interlaced ? Adam7 : SinglePass;
        foreach (var p in passes)
        {
            long pw = (width - p.X0 + p.Dx - 1) / p.Dx, ph = (height - p.Y0 + p.Dy - 1) / p.Dy;
            if (pw > 0 && ph > 0) expected += ph * (1 + (pw * h.BitsPerPixel + 7) / 8);
        }
        try
        {
            using var compressed = new MemoryStream(idat, 0, idatLength, writable: false);
            using var z = new ZLibStream(compressed, CompressionMode.Decompress);
            for (int passIndex = 0; passIndex < passes.Length; passIndex++)
            {
                var p = passes[passIndex];
                int pw = (width - p.X0 + p.Dx - 1) / p.Dx, ph = (height - p.Y0 + p.Dy - 1) / p.Dy;
                if (pw <= 0 || ph <= 0) continue; // an empty Adam7 pass has no scanlines at all
                int rowBytes = (int)(((long)pw * h.BitsPerPixel + 7) / 8);
                Array.Clear(lineA, 0, rowBytes + 1); // the row above a pass's first row is zeros
                byte[] prior = lineA, current = lineB;
                for (int r = 0; r < ph; r++)
                {
                    Span<byte> line = current.AsSpan(0, rowBytes + 1);
                    ReadFully(z, line, ref produced, expected, name);
                    Span<byte> row = line[1..];
                    Unfilter(line[0], row, prior.AsSpan(1, rowBytes), bpp, name, r, passIndex, h.Interlaced);
                    int y = p.Y0 + r * p.Dy;
                    Span<byte> dstRow = pixels.AsSpan(y * width * 3, width * 3);
                    if (!h.Interlaced)
                    {
                        Expand(row, pw, h, palette, dstRow);
                    }
                    else
                    {
                        Span<byte> rgb = scatter.AsSpan(0, pw * 3);
                        Expand(row, pw, h, palette, rgb);
                        for (int i = 0, x = p.X0; i < pw; i++, x += p.Dx)
                        {
                            dstRow[3 * x] = rgb[3 * i];
                            dstRow[3 * x + 1] = rgb[3 * i + 1];
                            dstRow[3 * x + 2] = rgb[3 * i + 2];
                        }
                    }
                    (prior, current) = (current, prior);
                }
            }
            // Reading past the image data makes zlib reach the stream end and verify its Adler-32;
            // surplus data after the image (libpng warns) is ignored.
            Span<byte> one = stackalloc byte[1];
            _ = z.Read(one);
        }
        catch (InvalidDataException e) when (e.Data["png"] is null)
        {
            throw Corrupt(name, $"corrupt compressed image data ({e.Message})", e);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(lineA);
            ArrayPool<byte>.Shared.Return(lineB);
            if (scatter is not null) ArrayPool<byte>.Shared.Return(scatter);
        }
        return new RgbImage(width, height, pixels);
    }

    private static void ReadFully(Stream z, Span<byte> buffer, ref long produced, long expected, string name)
    {
        while (!buffer.IsEmpty)
        {
            int n = z.Read(buffer);
            if (n == 0)
                throw Corrupt(name, $"truncated image data: the compressed stream ends after {produced} of {expected} bytes");
            produced += n;
            buffer = buffer[n..];
        }
    }

    private static void Unfilter(byte filter, Span<byte> cur, ReadOnlySpan<byte> prior, int bpp, string name, int row, int pass, bool interlaced)
    {
        int n = cur.Length;
        switch (filter)
        {
            case 0:
                break;
            case 1: // Sub: left neighbour, bpp bytes back
                for (int i = bpp; i < n; i++) cur[i] += cur[i - bpp];
                break;
            case 2: // Up
                for (int i = 0; i < n; i++) cur[i] += prior[i];
                break;
            case 3: // Average of left and up, the sum taken without 8-bit overflow
                for (int i = 0; i < bpp && i < n; i++) cur[i] += (byte)(prior[i] >> 1);
                for (int i = bpp; i < n; i++) cur[i] += (byte)((cur[i - bpp] + prior[i]) >> 1);
                break;
            case 4: // Paeth; with no left neighbour the predictor is Paeth(0, up, 0) = up
                for (int i = 0; i < bpp && i < n; i++) cur[i] += prior[i];
                for (int i = bpp; i < n; i++)
                {
                    int a = cur[i - bpp], b = prior[i], c = prior[i - bpp];
                    int pa = Math.Abs(b - c), pb = Math.Abs(a - c), pc = Math.Abs(a + b - 2 * c);
                    cur[i] += (byte)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
                }
                break;
            default:
                throw Corrupt(name, interlaced
                    ? $"row {row} of Adam7 pass {pass + 1} has filter type {filter} (valid: 0–4)"
                    : $"row {row} has filter type {filter} (valid: 0–4)");
        }
    }

    /// <summary>Converts <paramref name="count"/> pixels of an unfiltered scanline to RGB bytes.</summary>
    private static void Expand(ReadOnlySpan<byte> row, int count, Header h, byte[]? palette, Span<byte> rgb)
    {
        int depth = h.BitDepth;
        switch (h.ColorType)
        {
            case 0 when depth < 8:
            case 3 when depth < 8:
            {
                // Packed samples, most significant bits first; grey scales to 0..255 (×255, ×85, ×17).
                int mask = (1 << depth) - 1, perByte = 8 / depth, greyScale = 255 / mask;
                for (int i = 0; i < count; i++)
                {
                    int s = (row[i / perByte] >> (8 - depth * (i % perByte + 1))) & mask;
                    if (h.ColorType == 0)
                    {
                        byte v = (byte)(s * greyScale);
                        rgb[3 * i] = v; rgb[3 * i + 1] = v; rgb[3 * i + 2] = v;
                    }
                    else
                    {
                        rgb[3 * i] = palette![3 * s]; rgb[3 * i + 1] = palette[3 * s + 1]; rgb[3 * i + 2] = palette[3 * s + 2];
                    }
                }
                break;
            }
            case 3:
                for (int i = 0; i < count; i++)
                {
                    int s = row[i];
                    rgb[3 * i] = palette![3 * s]; rgb[3 * i + 1] = palette[3 * s + 1]; rgb[3 * i + 2] = palette[3 * s + 2];
                }
                break;
            case 0:
            case 4:
            {
                // Grey (+ alpha): the grey sample is the first of each pixel's h.Channels samples.
                int stride = h.Channels * (depth / 8);
                for (int i = 0; i < count; i++)
                {
                    byte v = row[i * stride];
                    rgb[3 * i] = v; rgb[3 * i + 1] = v; rgb[3 * i + 2] = v;
                }
                break;
            }
            default:
            {
                // RGB or RGBA, 8 or 16 bits: R, G, B are the first three samples (high bytes at 16 bits).
                int sample = depth / 8, stride = h.Channels * sample;
                if (stride == 3)
                {
                    row[..(3 * count)].CopyTo(rgb);
                    break;
                }
                for (int i = 0; i < count; i++)
                {
                    int o = i * stride;
                    rgb[3 * i] = row[o]; rgb[3 * i + 1] = row[o + sample]; rgb[3 * i + 2] = row[o + 2 * sample];
                }
                break;
            }
        }
    }

    /// <summary>Encodes <paramref name="image"/> as an 8-bit RGB, non-interlaced PNG.</summary>
    public static byte[] Encode(RgbImage image, CompressionLevel level = CompressionLevel.Optimal)
    {
        using var ms = new MemoryStream();
        Encode(image, ms, level);
        return ms.ToArray();
    }

    /// <summary>Writes <paramref name="image"/> as an 8-bit RGB PNG file at <paramref name="path"/>.</summary>
    public static void Save(RgbImage image, string path, CompressionLevel level = CompressionLevel.Optimal)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var fs = File.Create(path);
        Encode(image, fs, level);
    }

    /// <summary>Writes <paramref name="image"/> as an 8-bit RGB, non-interlaced PNG to <paramref name="output"/>.</summary>
    /// <remarks>Each row gets the filter whose output has the least sum of absolute signed bytes (libpng's heuristic).</remarks>
    public static void Encode(RgbImage image, Stream output, CompressionLevel level = CompressionLevel.Optimal)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(output);
        output.Write(Signature);
        Span<byte> ihdr = stackalloc byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, (uint)image.Width);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr[4..], (uint)image.Height);
        ihdr[8] = 8;  // bit depth
        ihdr[9] = 2;  // colour type RGB
        ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0; // deflate, filter method 0, no interlace
        WriteChunk(output, "IHDR"u8, ihdr);

        int rowBytes = image.Width * 3;
        using var compressed = new MemoryStream();
        byte[] candidates = ArrayPool<byte>.Shared.Rent(5 * (rowBytes + 1));
        try
        {
            using (var z = new ZLibStream(compressed, level, leaveOpen: true))
            {
                byte[] px = image.Pixels;
                for (int y = 0; y < image.Height; y++)
                {
                    ReadOnlySpan<byte> cur = px.AsSpan(y * rowBytes, rowBytes);
                    ReadOnlySpan<byte> prior = y > 0 ? px.AsSpan((y - 1) * rowBytes, rowBytes) : default;
                    int best = 0;
                    long bestCost = long.MaxValue;
                    for (int f = 0; f < 5; f++)
                    {
                        Span<byte> line = candidates.AsSpan(f * (rowBytes + 1), rowBytes + 1);
                        line[0] = (byte)f;
                        long cost = Filter(f, cur, prior, line[1..]);
                        if (cost < bestCost) { bestCost = cost; best = f; }
                    }
                    z.Write(candidates, best * (rowBytes + 1), rowBytes + 1);
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(candidates);
        }
        ReadOnlySpan<byte> data = compressed.GetBuffer().AsSpan(0, (int)compressed.Length);
        do
        {
            int n = Math.Min(MaxIdatChunk, data.Length);
            WriteChunk(output, "IDAT"u8, data[..n]);
            data = data[n..];
        } while (!data.IsEmpty);
        WriteChunk(output, "IEND"u8, []);
    }

    /// <summary>Applies filter <paramref name="f"/> (bpp 3) and returns the sum of |signed output bytes|.</summary>
    private static long Filter(int f, ReadOnlySpan<byte> cur, ReadOnlySpan<byte> prior, Span<byte> dst)
    {
        const int bpp = 3;
        bool hasPrior = !prior.IsEmpty;
        long cost = 0;
        for (int i = 0; i < cur.Length; i++)
        {
            int a = i >= bpp ? cur[i - bpp] : 0;
            int b = hasPrior ? prior[i] : 0;
            int c = hasPrior && i >= bpp ? prior[i - bpp] : 0;
            int predictor = f switch
            {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) >> 1,
                _ => Paeth(a, b, c),
            };
            byte v = (byte)(cur[i] - predictor);
            dst[i] = v;
            cost += Math.Abs((int)(sbyte)v);
        }
        return cost;
    }

    private static int Paeth(int a, int b, int c)
    {
        int pa = Math.Abs(b - c), pb = Math.Abs(a - c), pc = Math.Abs(a + b - 2 * c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }

    private static void WriteChunk(Stream s, ReadOnlySpan<byte> type, ReadOnlySpan<byte> data)
    {
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(word, (uint)data.Length);
        s.Write(word);
        s.Write(type);
        s.Write(data);
        BinaryPrimitives.WriteUInt32BigEndian(word, Crc32.Append(Crc32.Compute(type), data));
        s.Write(word);
    }

    private static string ChunkName(ReadOnlySpan<byte> type)
    {
        var sb = new StringBuilder(8);
        foreach (byte b in type) sb.Append(b is >= 0x20 and < 0x7F ? (char)b : '?');
        return sb.ToString();
    }

    private static InvalidDataException Corrupt(string name, string problem, Exception? inner = null)
    {
        var e = new InvalidDataException($"{name}: corrupt PNG: {problem}", inner);
        e.Data["png"] = true; // marks our own errors so the zlib catch does not wrap them again
        return e;
    }
}
