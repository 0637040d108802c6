// The records every part of the engine exchanges: boxes in pixel coordinates, RGB images,
// annotated samples, detections and the dataset contract.
namespace GRcn.Detection.Data;

/// <summary>An axis-aligned box in continuous pixel coordinates, (x1, y1) top-left, (x2, y2) bottom-right.</summary>
public readonly record struct Box(float X1, float Y1, float X2, float Y2)
{
    /// <summary>x2 − x1.</summary>
    public float Width => X2 - X1;

    /// <summary>y2 − y1.</summary>
    public float Height => Y2 - Y1;

    /// <summary>Whether all four coordinates are finite.</summary>
    public bool IsFinite => float.IsFinite(X1) && float.IsFinite(Y1) && float.IsFinite(X2) && float.IsFinite(Y2);

    /// <summary>Width × height, 0 for an empty or inverted box.</summary>
    public float Area => Width > 0 && Height > 0 ? Width * Height : 0f;

    /// <summary>Intersection over union with another box (0 when either is empty).</summary>
    public double Iou(Box other)
    {
        double iw = Math.Min(X2, other.X2) - Math.Max(X1, other.X1);
        double ih = Math.Min(Y2, other.Y2) - Math.Max(Y1, other.Y1);
        if (iw <= 0 || ih <= 0) return 0;
        double inter = iw * ih;
        double union = (double)Area + other.Area - inter;
        return union > 0 ? inter / union : 0;
    }
}

/// <summary>An 8-bit RGB image, rows top to bottom, pixels interleaved R, G, B.</summary>
public sealed class RgbImage
{
    /// <summary>Wraps <paramref name="pixels"/> (height × width × 3 bytes) without copying.</summary>
    public RgbImage(int width, int height, byte[] pixels)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(width, 0);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(height, 0);
        ArgumentNullException.ThrowIfNull(pixels);
        if (pixels.LongLength != (long)width * height * 3)
            throw new ArgumentException($"expected {width}×{height}×3 = {(long)width * height * 3} bytes, got {pixels.LongLength}", nameof(pixels));
        Width = width;
        Height = height;
        Pixels = pixels;
    }

    /// <summary>A black image.</summary>
    public RgbImage(int width, int height) : this(width, height, new byte[checked(width * height * 3)]) { }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>height × width × 3 bytes, R G B interleaved.</summary>
    public byte[] Pixels { get; }
}

/// <summary>One annotated object. <paramref name="Label"/> is the 0-based index into the dataset's class names.</summary>
public sealed record ObjectAnnotation(Box Box, int Label, bool Difficult = false, bool IsCrowd = false)
{
    /// <summary>The dataset's own object area where it records one (COCO's segment area, used for
    /// the small/medium/large ranges of COCO evaluation); null otherwise.</summary>
    public float? Area { get; init; }
}

/// <summary>An image with its objects (possibly none).</summary>
public sealed record DetectionSample(string Id, RgbImage Image, IReadOnlyList<ObjectAnnotation> Objects);

/// <summary>One detection: box in original image pixels, confidence and 0-based class index.</summary>
/// <param name="Box">The box, in the pixels of the image as given (before any resizing).</param>
/// <param name="Score">Confidence in (0, 1].</param>
/// <param name="Label">0-based index into the class names.</param>
public readonly record struct DetectedObject(Box Box, float Score, int Label)
{
    /// <summary>The class name (the detector's <c>Config.ClassNames[Label]</c>); null where the producer knows no names.</summary>
    public string? ClassName { get; init; }
}

/// <summary>A random-access detection dataset.</summary>
public interface IDetectionDataset
{
    /// <summary>Class names; labels index this list.</summary>
    IReadOnlyList<string> ClassNames { get; }

    /// <summary>Number of samples.</summary>
    int Count { get; }

    /// <summary>Loads sample <paramref name="index"/> (decodes its image). Thread-safe.</summary>
    DetectionSample Load(int index);
}
