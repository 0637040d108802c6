// Image files by content, decoded to 8-bit RGB through SkiaSharp's SKCodec (PNG, JPEG, BMP, GIF
// first frame, WebP) or the small managed Netpbm reader (PPM/PGM); the format is sniffed from the
// bytes, never from the extension. Saving picks the format from the extension (.png through
// SkiaSharp, .ppm/.pnm). One image per call, on the calling thread; calls on different threads
// run in parallel.
//
// Bad input never gets past Load/Decode as anything but InvalidDataException naming the file and
// the problem: an empty file, an unknown or unsupported format, a file larger than the byte limit
// (read with a cap, so an endless stream such as /dev/zero stops there), a header whose width ×
// height exceeds the pixel limit (checked on SKCodec.Info, before any pixel memory is allocated),
// corrupt data, and truncated data (unless ImageLoadOptions.AllowTruncated). Decoding applies no
// colour-space conversion, drops alpha without compositing (PIL's convert("RGB")) and applies no
// EXIF orientation (neither PIL's open nor torchvision.io applies it); Skia's JPEG decoding is
// libjpeg-turbo's (accurate integer IDCT, fancy upsampling), as PIL and torchvision.io decode.
using SkiaSharp;

namespace GRcn.Detection.Data;

/// <summary>Image container formats the engine reads.</summary>
public enum ImageFormat
{
    /// <summary>Not recognised or not supported.</summary>
    Unknown,
    /// <summary>PNG.</summary>
    Png,
    /// <summary>JPEG (JFIF/Exif).</summary>
    Jpeg,
    /// <summary>Netpbm PPM or PGM.</summary>
    Ppm,
    /// <summary>Windows BMP.</summary>
    Bmp,
    /// <summary>GIF (the first frame is read).</summary>
    Gif,
    /// <summary>WebP.</summary>
    Webp,
}

/// <summary>Limits and leniency for <see cref="ImageFile.Load(string, ImageLoadOptions?)"/>.</summary>
public sealed record ImageLoadOptions
{
    /// <summary>The defaults: 100 megapixels, 256 MiB, truncated files refused.</summary>
    public static ImageLoadOptions Default { get; } = new();

    /// <summary>Largest width × height accepted, checked on the header before pixels are allocated (default 100 000 000).</summary>
    public long MaxPixels { get; init; } = 100_000_000;

    /// <summary>Largest file read, in bytes; reading stops one byte past it (default 256 MiB).</summary>
    public long MaxFileBytes { get; init; } = 256L << 20;

    /// <summary>Return a truncated PNG/JPEG/GIF/WebP with its missing rows filled instead of failing (default false).</summary>
    public bool AllowTruncated { get; init; }
}

/// <summary>Loads and saves images whatever their format.</summary>
public static class ImageFile
{
    /// <summary>The format <paramref name="data"/> starts with (from the magic bytes only; the data may still be corrupt).</summary>
    public static ImageFormat DetectFormat(ReadOnlySpan<byte> data)
    {
        if (data.StartsWith((ReadOnlySpan<byte>)[137, 80, 78, 71, 13, 10, 26, 10])) return ImageFormat.Png;
        if (data.StartsWith((ReadOnlySpan<byte>)[0xFF, 0xD8, 0xFF])) return ImageFormat.Jpeg;
        if (PpmCodec.IsPpm(data)) return ImageFormat.Ppm;
        if (data.StartsWith("BM"u8) && data.Length >= 14) return ImageFormat.Bmp;
        if (data.StartsWith("GIF87a"u8) || data.StartsWith("GIF89a"u8)) return ImageFormat.Gif;
        if (data.Length >= 12 && data.StartsWith("RIFF"u8) && data[8..12].SequenceEqual("WEBP"u8)) return ImageFormat.Webp;
        return ImageFormat.Unknown;
    }

    /// <summary>Reads the image file at <paramref name="path"/> (PNG, JPEG, BMP, GIF, WebP, PPM/PGM by content) as 8-bit RGB.</summary>
    /// <param name="path">The file.</param>
    /// <param name="options">Limits and leniency; <see cref="ImageLoadOptions.Default"/> when null.</param>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">The one exception for a bad image: empty, unknown or unsupported
    /// format, over the byte or pixel limit, corrupt or truncated; the message names the file and the problem.</exception>
    public static RgbImage Load(string path, ImageLoadOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        options ??= ImageLoadOptions.Default;
        return Decode(ReadCapped(path, options.MaxFileBytes), path, options);
    }

    /// <summary>Bytes <see cref="ReadSize"/> reads at most: enough for any header short of megabytes of embedded metadata.</summary>
    public const int HeaderBytes = 1 << 20;

    /// <summary>
    /// The format and size of the image file at <paramref name="path"/> from its header alone (the first
    /// <see cref="HeaderBytes"/> bytes at most; no pixels are decoded), with the byte and pixel limits of
    /// <paramref name="options"/> applied: the check before training that every listed image can be opened.
    /// </summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">Not an image in a supported format, over a limit, or the header is unreadable.</exception>
    public static (ImageFormat Format, int Width, int Height) ReadSize(string path, ImageLoadOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        options ??= ImageLoadOptions.Default;
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        if (fs.CanSeek && fs.Length > options.MaxFileBytes) throw TooLarge(path, $"{fs.Length} bytes", options.MaxFileBytes);
        // most headers end within the first kilobytes: read 16 KiB, and up to HeaderBytes only when the codec needs more
        var head = new byte[HeaderBytes];
        int got = fs.ReadAtLeast(head.AsSpan(0, 16 << 10), 16 << 10, throwOnEndOfStream: false);
        ImageFormat format = DetectFormat(head.AsSpan(0, got));
        if (format == ImageFormat.Unknown)
            throw new InvalidDataException(got == 0
                ? $"{path}: not an image: the file is empty"
                : $"{path}: not an image in a supported format (PNG, JPEG, BMP, GIF, WebP, PPM/PGM): first bytes {Convert.ToHexString(head, 0, Math.Min(8, got))}");
        (int Width, int Height)? size = format == ImageFormat.Ppm ? PpmCodec.ReadSize(head.AsSpan(0, got), path) : SkiaSize(head.AsSpan(0, got), out _);
        if (size is null && got == 16 << 10)
        {
            got += fs.ReadAtLeast(head.AsSpan(got), head.Length - got, throwOnEndOfStream: false);
            size = SkiaSize(head.AsSpan(0, got), out SKCodecResult result);
            if (size is null) throw new InvalidDataException($"{path}: corrupt {format.ToString().ToUpperInvariant()}: cannot read the header ({Describe(result)})");
        }
        else if (size is null)
        {
            _ = SkiaSize(head.AsSpan(0, got), out SKCodecResult result);
            throw new InvalidDataException($"{path}: corrupt {format.ToString().ToUpperInvariant()}: cannot read the header ({Describe(result)})");
        }
        var (width, height) = size.Value;
        if (width <= 0 || height <= 0) throw new InvalidDataException($"{path}: corrupt {format.ToString().ToUpperInvariant()}: image size {width}×{height}");
        long pixels = (long)width * height;
        if (pixels > options.MaxPixels)
            throw new InvalidDataException($"{path}: {format.ToString().ToUpperInvariant()} header declares {width}×{height} = {pixels} pixels, over the limit of {options.MaxPixels} (ImageLoadOptions.MaxPixels)");
        return (format, width, height);
    }

    /// <summary>The size in a Skia-decodable header, or null with the codec's result when it cannot be read from <paramref name="head"/>.</summary>
    private static unsafe (int Width, int Height)? SkiaSize(ReadOnlySpan<byte> head, out SKCodecResult result)
    {
        fixed (byte* p = head)
        {
            using SKData skData = SKData.Create((nint)p, head.Length);
            using var stream = new SKMemoryStream(skData);
            using SKCodec? codec = SKCodec.Create(stream, out result);
            return codec is null ? null : (codec.Info.Width, codec.Info.Height);
        }
    }

    /// <summary>Decodes an image held in memory; <paramref name="name"/> appears in error messages.</summary>
    /// <exception cref="InvalidDataException">As <see cref="Load"/>.</exception>
    public static RgbImage Decode(ReadOnlySpan<byte> data, string name = "image data", ImageLoadOptions? options = null)
    {
        options ??= ImageLoadOptions.Default;
        ImageFormat format = DetectFormat(data);
        if (format == ImageFormat.Unknown)
            throw new InvalidDataException(data.IsEmpty
                ? $"{name}: not an image: the file is empty"
                : $"{name}: not an image in a supported format (PNG, JPEG, BMP, GIF, WebP, PPM/PGM): first bytes {Convert.ToHexString(data[..Math.Min(8, data.Length)])}");
        if (format == ImageFormat.Ppm)
            return PpmCodec.Decode(data, name, options.MaxPixels);
        return DecodeWithSkia(data, name, format, options);
    }

    private static unsafe RgbImage DecodeWithSkia(ReadOnlySpan<byte> data, string name, ImageFormat format, ImageLoadOptions options)
    {
        string kind = format.ToString().ToUpperInvariant();
        fixed (byte* p = data)
        {
            // SKData over the caller's bytes without a copy; the codec lives inside this fixed block.
            using SKData skData = SKData.Create((nint)p, data.Length);
            using var stream = new SKMemoryStream(skData);
            using SKCodec? codec = SKCodec.Create(stream, out SKCodecResult created);
            if (codec is null)
                throw new InvalidDataException($"{name}: corrupt {kind}: cannot read the header ({Describe(created)})");
            if (Map(codec.EncodedFormat) != format)
                throw new InvalidDataException($"{name}: corrupt {kind}: the decoder reads it as {codec.EncodedFormat}");
            SKImageInfo info = codec.Info;
            int width = info.Width, height = info.Height;
            if (width <= 0 || height <= 0)
                throw new InvalidDataException($"{name}: corrupt {kind}: image size {width}×{height}");
            long pixels = (long)width * height;
            if (pixels > options.MaxPixels)
                throw new InvalidDataException(
                    $"{name}: {kind} header declares {width}×{height} = {pixels} pixels, over the limit of {options.MaxPixels} (ImageLoadOptions.MaxPixels)");
            if (pixels * 4 > Array.MaxLength)
                throw new InvalidDataException($"{name}: {kind} image of {width}×{height} is too large to decode into one array");

            // RGBA, unpremultiplied, no colour space: the stored samples, alpha kept apart and dropped below.
            var rgbaInfo = new SKImageInfo(width, height, SKColorType.Rgba8888,
                info.AlphaType == SKAlphaType.Opaque ? SKAlphaType.Opaque : SKAlphaType.Unpremul);
            var rgba = new byte[pixels * 4];
            SKCodecResult result;
            fixed (byte* dst = rgba)
                result = codec.GetPixels(rgbaInfo, (nint)dst, width * 4, new SKCodecOptions(0));
            bool ok = result == SKCodecResult.Success || (result == SKCodecResult.IncompleteInput && options.AllowTruncated);
            if (!ok)
                throw new InvalidDataException(result == SKCodecResult.IncompleteInput
                    ? $"{name}: truncated {kind}: the data ends before the image is complete (ImageLoadOptions.AllowTruncated accepts it with the missing rows filled)"
                    : $"{name}: corrupt {kind}: cannot decode ({Describe(result)})");
            var rgb = new byte[pixels * 3];
            for (long i = 0, j = 0; i < rgb.LongLength; i += 3, j += 4)
            {
                rgb[i] = rgba[j];
                rgb[i + 1] = rgba[j + 1];
                rgb[i + 2] = rgba[j + 2];
            }
            return new RgbImage(width, height, rgb);
        }
    }

    private static ImageFormat Map(SKEncodedImageFormat f) => f switch
    {
        SKEncodedImageFormat.Png => ImageFormat.Png,
        SKEncodedImageFormat.Jpeg => ImageFormat.Jpeg,
        SKEncodedImageFormat.Bmp => ImageFormat.Bmp,
        SKEncodedImageFormat.Gif => ImageFormat.Gif,
        SKEncodedImageFormat.Webp => ImageFormat.Webp,
        _ => ImageFormat.Unknown,
    };

    private static string Describe(SKCodecResult r) => r switch
    {
        SKCodecResult.IncompleteInput => "the data ends early",
        SKCodecResult.ErrorInInput => "invalid data in the image",
        SKCodecResult.InvalidInput => "invalid data",
        SKCodecResult.Unimplemented => "a feature the decoder does not implement",
        _ => $"SKCodecResult.{r}",
    };

    /// <summary>Reads at most <paramref name="maxBytes"/> bytes of <paramref name="path"/>; more is an error, so endless streams stop.</summary>
    private static byte[] ReadCapped(string path, long maxBytes)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
        long known = fs.CanSeek ? fs.Length : -1;
        if (known > maxBytes)
            throw TooLarge(path, $"{known} bytes", maxBytes);
        using var ms = new MemoryStream(known > 0 ? (int)known : 1 << 16);
        var buffer = new byte[1 << 16];
        while (true)
        {
            int n = fs.Read(buffer, 0, buffer.Length);
            if (n == 0) break;
            ms.Write(buffer, 0, n);
            if (ms.Length > maxBytes) throw TooLarge(path, $"more than {maxBytes} bytes", maxBytes);
            // An endless or huge stream of something that is no image stops at its first block.
            if (ms.Length == n && n >= 16 && DetectFormat(buffer.AsSpan(0, n)) == ImageFormat.Unknown)
                throw new InvalidDataException($"{path}: not an image in a supported format (PNG, JPEG, BMP, GIF, WebP, PPM/PGM): first bytes {Convert.ToHexString(buffer, 0, Math.Min(8, n))}");
        }
        return ms.ToArray();
    }

    private static InvalidDataException TooLarge(string path, string size, long maxBytes) =>
        new($"{path}: the file holds {size}, over the limit of {maxBytes} bytes (ImageLoadOptions.MaxFileBytes)");

    /// <summary>Encodes <paramref name="image"/> as an 8-bit RGB PNG (through SkiaSharp).</summary>
    public static byte[] EncodePng(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        using SKBitmap bitmap = ToBitmap(image);
        using SKData png = bitmap.Encode(SKEncodedImageFormat.Png, 100)
            ?? throw new InvalidOperationException("SkiaSharp could not encode the PNG");
        return png.ToArray();
    }

    /// <summary>An opaque RGBA8888 bitmap with the pixels of <paramref name="image"/>.</summary>
    public static SKBitmap ToBitmap(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        var bitmap = new SKBitmap(new SKImageInfo(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        Span<byte> dst = bitmap.GetPixelSpan();
        byte[] src = image.Pixels;
        for (int i = 0, j = 0; i < src.Length; i += 3, j += 4)
        {
            dst[j] = src[i];
            dst[j + 1] = src[i + 1];
            dst[j + 2] = src[i + 2];
            dst[j + 3] = 255;
        }
        return bitmap;
    }

    /// <summary>The RGB pixels of <paramref name="bitmap"/> (any colour type; alpha dropped).</summary>
    public static RgbImage FromBitmap(SKBitmap bitmap)
    {
        ArgumentNullException.ThrowIfNull(bitmap);
        using SKBitmap rgba = bitmap.ColorType == SKColorType.Rgba8888 ? bitmap.Copy() : bitmap.Copy(SKColorType.Rgba8888);
        ReadOnlySpan<byte> src = rgba.GetPixelSpan();
        int w = rgba.Width, h = rgba.Height, stride = rgba.RowBytes;
        var rgb = new byte[w * h * 3];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int s = y * stride + 4 * x, d = 3 * (y * w + x);
                rgb[d] = src[s]; rgb[d + 1] = src[s + 1]; rgb[d + 2] = src[s + 2];
            }
        return new RgbImage(w, h, rgb);
    }

    /// <summary>Writes <paramref name="image"/> to <paramref name="path"/>: PNG for .png, binary PPM for .ppm or .pnm.</summary>
    /// <exception cref="ArgumentException">Another extension.</exception>
    public static void Save(RgbImage image, string path)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentException.ThrowIfNullOrEmpty(path);
        string ext = Path.GetExtension(path).ToLowerInvariant();
        switch (ext)
        {
            case ".png": File.WriteAllBytes(path, EncodePng(image)); break;
            case ".ppm" or ".pnm": PpmCodec.Save(image, path); break;
            default: throw new ArgumentException($"cannot write '{ext}' files; use .png or .ppm", nameof(path));
        }
    }
}
