// JPEG decoding to 8-bit RGB through libjpeg-turbo's TurboJPEG C API (libturbojpeg.so.0, the
// Debian package libturbojpeg0), bound at first use with NativeLibrary and unmanaged function
// pointers: tjInitDecompress, tjDecompressHeader3, tjDecompress2 (TJPF_RGB, default flags:
// accurate integer IDCT and fancy upsampling, as PIL and torchvision.io decode), tjGetErrorStr2,
// tjGetErrorCode, tjDestroy. Every return code is checked. EXIF orientation is not applied
// (neither PIL's open nor torchvision.io applies it). A TurboJPEG instance per call, so
// decodes on different threads run in parallel.
using System.Runtime.InteropServices;

namespace GRcn.Detection.Data;

/// <summary>JPEG reader backed by libjpeg-turbo's TurboJPEG library.</summary>
public static class JpegCodec
{
    /// <summary>The Debian/Ubuntu package that provides the library.</summary>
    public const string DebianPackage = "libturbojpeg0";

    /// <summary>True when <paramref name="data"/> starts with the JPEG SOI marker (FF D8 FF).</summary>
    public static bool IsJpeg(ReadOnlySpan<byte> data) => data.Length >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;

    /// <summary>True when the TurboJPEG library can be loaded.</summary>
    public static bool IsAvailable
    {
        get
        {
            try { _ = TurboJpeg.Default; return true; }
            catch (DllNotFoundException) { return false; }
        }
    }

    /// <summary>Reads and decodes the JPEG file at <paramref name="path"/>.</summary>
    /// <param name="path">The file.</param>
    /// <param name="strict">Treat libjpeg warnings (for example a truncated scan, which libjpeg fills with grey) as errors.</param>
    /// <exception cref="DllNotFoundException">libturbojpeg is missing; the message names the Debian package.</exception>
    /// <exception cref="InvalidDataException">The file cannot be decoded; the message names it and the problem.</exception>
    public static RgbImage Load(string path, bool strict = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return Decode(File.ReadAllBytes(path), path, strict);
    }

    /// <summary>Decodes JPEG data; <paramref name="name"/> appears in error messages.</summary>
    /// <param name="data">The complete JPEG stream.</param>
    /// <param name="name">A file name for messages.</param>
    /// <param name="strict">Treat libjpeg warnings as errors. Otherwise a warning (recoverable
    /// corruption such as extraneous bytes or a truncated scan) still returns the image, as
    /// torchvision.io.decode_jpeg does.</param>
    public static RgbImage Decode(ReadOnlySpan<byte> data, string name = "JPEG data", bool strict = false) =>
        TurboJpeg.Default.Decode(data, name, strict);
}

/// <summary>The TurboJPEG entry points, resolved from one loaded library.</summary>
internal sealed unsafe class TurboJpeg
{
    private const int TJPF_RGB = 0;
    private const int TJERR_WARNING = 0;

    /// <summary>Names tried in order: the Debian soname first, then other platforms' names.</summary>
    internal static readonly string[] DefaultNames = ["libturbojpeg.so.0", "libturbojpeg.so", "libturbojpeg.0.dylib", "turbojpeg"];

    private static readonly Lazy<TurboJpeg> LazyDefault = new(() => Load(DefaultNames), LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The process-wide binding of the installed library.</summary>
    public static TurboJpeg Default => LazyDefault.Value;

    private readonly delegate* unmanaged<nint> _initDecompress;
    private readonly delegate* unmanaged<nint, byte*, CULong, int*, int*, int*, int*, int> _decompressHeader3;
    private readonly delegate* unmanaged<nint, byte*, CULong, byte*, int, int, int, int, int, int> _decompress2;
    private readonly delegate* unmanaged<nint, byte*> _getErrorStr2;
    private readonly delegate* unmanaged<nint, int> _getErrorCode;
    private readonly delegate* unmanaged<nint, int> _destroy;

    private TurboJpeg(nint lib, string libName)
    {
        _initDecompress = (delegate* unmanaged<nint>)Export(lib, libName, "tjInitDecompress");
        _decompressHeader3 = (delegate* unmanaged<nint, byte*, CULong, int*, int*, int*, int*, int>)Export(lib, libName, "tjDecompressHeader3");
        _decompress2 = (delegate* unmanaged<nint, byte*, CULong, byte*, int, int, int, int, int, int>)Export(lib, libName, "tjDecompress2");
        _getErrorStr2 = (delegate* unmanaged<nint, byte*>)Export(lib, libName, "tjGetErrorStr2");
        _getErrorCode = (delegate* unmanaged<nint, int>)Export(lib, libName, "tjGetErrorCode");
        _destroy = (delegate* unmanaged<nint, int>)Export(lib, libName, "tjDestroy");
    }

    /// <summary>Loads the first of <paramref name="names"/> that the loader finds and binds its entry points.</summary>
    /// <exception cref="DllNotFoundException">None loads, or one lacks an entry point; names the Debian package.</exception>
    internal static TurboJpeg Load(IReadOnlyList<string> names)
    {
        foreach (string libName in names)
            if (NativeLibrary.TryLoad(libName, typeof(TurboJpeg).Assembly, null, out nint lib))
                return new TurboJpeg(lib, libName);
        throw new DllNotFoundException(
            $"JPEG decoding needs libjpeg-turbo's TurboJPEG library, which could not be loaded (tried {string.Join(", ", names)}). " +
            $"On Debian or Ubuntu install the package {JpegCodec.DebianPackage}: apt-get install {JpegCodec.DebianPackage}");
    }

    private static nint Export(nint lib, string libName, string symbol)
    {
        if (NativeLibrary.TryGetExport(lib, symbol, out nint address)) return address;
        throw new DllNotFoundException(
            $"{libName} has no entry point {symbol}; it is not a TurboJPEG 2.0 or newer library. " +
            $"On Debian or Ubuntu install the package {JpegCodec.DebianPackage}: apt-get install {JpegCodec.DebianPackage}");
    }

    public RgbImage Decode(ReadOnlySpan<byte> data, string name, bool strict)
    {
        if (!JpegCodec.IsJpeg(data))
            throw new InvalidDataException($"{name}: corrupt JPEG: " + (data.Length < 3 ? $"only {data.Length} bytes" : "missing the SOI marker (FF D8 FF)"));
        nint handle = _initDecompress();
        if (handle == 0)
            throw new InvalidOperationException($"tjInitDecompress failed: {ErrorString(0)}");
        bool failed = true;
        try
        {
            fixed (byte* src = data)
            {
                var size = new CULong((nuint)data.Length);
                int width, height, subsampling, colorspace;
                if (_decompressHeader3(handle, src, size, &width, &height, &subsampling, &colorspace) != 0)
                    throw new InvalidDataException($"{name}: corrupt JPEG: cannot read the header ({ErrorString(handle)})");
                if (width <= 0 || height <= 0)
                    throw new InvalidDataException($"{name}: corrupt JPEG: image size {width}×{height}");
                if ((long)width * height * 3 > Array.MaxLength)
                    throw new InvalidDataException($"{name}: JPEG image of {width}×{height} is too large to hold as one RGB array");
                var pixels = new byte[(long)width * height * 3];
                int rc;
                fixed (byte* dst = pixels)
                    rc = _decompress2(handle, src, size, dst, width, width * 3, height, TJPF_RGB, 0);
                if (rc != 0)
                {
                    // tjDecompress2 returns −1 for warnings too; a warning still produced a full image.
                    bool warning = _getErrorCode(handle) == TJERR_WARNING;
                    if (!warning || strict)
                        throw new InvalidDataException($"{name}: corrupt JPEG: {(warning ? "libjpeg warning (strict decoding)" : "cannot decode")}: {ErrorString(handle)}");
                }
                failed = false;
                return new RgbImage(width, height, pixels);
            }
        }
        finally
        {
            int destroyed = _destroy(handle);
            if (destroyed != 0 && !failed)
                throw new InvalidOperationException($"tjDestroy failed: {ErrorString(0)}");
        }
    }

    private string ErrorString(nint handle)
    {
        byte* s = _getErrorStr2(handle);
        return s == null ? "no error message" : Marshal.PtrToStringUTF8((nint)s) ?? "no error message";
    }
}
