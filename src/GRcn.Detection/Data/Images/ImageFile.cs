// Image files by content: the format is sniffed from the magic bytes (PNG signature, JPEG SOI,
// Netpbm P2/P3/P5/P6), never from the extension, and decoded to 8-bit RGB. Saving picks the
// format from the extension (.png, .ppm/.pnm). One image per call, on the calling thread.
namespace GRcn.Detection.Data;

/// <summary>Image container formats the engine reads.</summary>
public enum ImageFormat
{
    /// <summary>Not recognised.</summary>
    Unknown,
    /// <summary>PNG.</summary>
    Png,
    /// <summary>JPEG (JFIF/Exif).</summary>
    Jpeg,
    /// <summary>Netpbm PPM or PGM.</summary>
    Ppm,
}

/// <summary>Loads and saves images whatever their format.</summary>
public static class ImageFile
{
    /// <summary>The format <paramref name="data"/> starts with.</summary>
    public static ImageFormat DetectFormat(ReadOnlySpan<byte> data) =>
        PngCodec.IsPng(data) ? ImageFormat.Png
        : JpegCodec.IsJpeg(data) ? ImageFormat.Jpeg
        : PpmCodec.IsPpm(data) ? ImageFormat.Ppm
        : ImageFormat.Unknown;

    /// <summary>Reads the image file at <paramref name="path"/> (PNG, JPEG, PPM/PGM by content).</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">Unknown format or corrupt data; the message names the file and the problem.</exception>
    /// <exception cref="DllNotFoundException">A JPEG and no libturbojpeg (the message names the Debian package).</exception>
    public static RgbImage Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return Decode(File.ReadAllBytes(path), path);
    }

    /// <summary>Decodes an image held in memory; <paramref name="name"/> appears in error messages.</summary>
    public static RgbImage Decode(ReadOnlySpan<byte> data, string name = "image data") => DetectFormat(data) switch
    {
        ImageFormat.Png => PngCodec.Decode(data, name),
        ImageFormat.Jpeg => JpegCodec.Decode(data, name),
        ImageFormat.Ppm => PpmCodec.Decode(data, name),
        _ => throw new InvalidDataException(data.IsEmpty
            ? $"{name}: not an image: the file is empty"
            : $"{name}: not an image in a supported format (PNG, JPEG, PPM/PGM): first bytes {Convert.ToHexString(data[..Math.Min(8, data.Length)])}"),
    };

    /// <summary>Writes <paramref name="image"/> to <paramref name="path"/>: PNG for .png, binary PPM for .ppm or .pnm.</summary>
    /// <exception cref="ArgumentException">Another extension.</exception>
    public static void Save(RgbImage image, string path)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentException.ThrowIfNullOrEmpty(path);
        string ext = Path.GetExtension(path).ToLowerInvariant();
        switch (ext)
        {
            case ".png": PngCodec.Save(image, path); break;
            case ".ppm" or ".pnm": PpmCodec.Save(image, path); break;
            default: throw new ArgumentException($"cannot write '{ext}' files; use .png or .ppm", nameof(path));
        }
    }
}
