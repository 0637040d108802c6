// The detection pipeline's image geometry: torchvision GeneralizedRCNNTransform's resize rule
// (shorter side → S unless the longer side would pass L), bilinear resizing with PyTorch's
// F.interpolate(mode="bilinear", align_corners=False, recompute_scale_factor=True) sampling
// (half-pixel centres, source coordinate clamped at 0, no antialiasing), horizontal flips of
// images and boxes, and conversion to a normalised float CHW buffer ((v/255 − mean) / std per
// channel, computed as (v·scale − mean)·(1/std)). Resize, flip and normalisation fuse into one
// pass over the output: per output pixel four source reads per channel. torchvision normalises
// before it resizes; as bilinear weights sum to one the two orders agree up to float rounding. An ImageResizer keeps its
// index/weight tables between calls (one per thread); the static helpers are thread-safe.
namespace GRcn.Detection.Data;

/// <summary>
/// torchvision's detection resize rule: scale = min(<see cref="MinSize"/> / shorter side,
/// <see cref="MaxSize"/> / longer side), computed in float32 as torchvision 0.14 does (a Python
/// number divided by a float32 tensor: the tensor's reciprocal times the number); the output is
/// floor(side × scale) in double (F.interpolate's size rule), at least 1.
/// </summary>
/// <param name="MinSize">Target of the shorter side, S (the paper uses 600).</param>
/// <param name="MaxSize">Cap on the longer side, L (1000).</param>
public readonly record struct ResizeSpec(int MinSize, int MaxSize)
{
    /// <summary>The scale for a <paramref name="width"/> × <paramref name="height"/> image (a float32 value, as torchvision computes it).</summary>
    public double ScaleFor(int width, int height)
    {
        Validate();
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(width, 0);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(height, 0);
        // torchvision computes self_min_size / min_size with min_size a float32 tensor, and PyTorch's
        // scalar / tensor is tensor.reciprocal() * scalar: two float32 roundings, not one. The exact
        // quotient differs on about a quarter of all sides: 30 / 41 rounds to just above 30/41 (a
        // 41-pixel side would become 30) while (1/41)·30 rounds below it, so torchvision gives 29.
        // 35 / 23 rounds below 35/23 either way: a 23-pixel side becomes 34, not 35.
        float shorter = Math.Min(width, height), longer = Math.Max(width, height);
        return Math.Min(1f / shorter * MinSize, 1f / longer * MaxSize);
    }

    /// <summary>The resized size: floor(width × scale) × floor(height × scale), each at least 1.</summary>
    public (int Width, int Height) OutputSize(int width, int height)
    {
        double s = ScaleFor(width, height);
        return (Math.Max(1, (int)Math.Floor(width * s)), Math.Max(1, (int)Math.Floor(height * s)));
    }

    internal void Validate()
    {
        if (MinSize <= 0) throw new ArgumentOutOfRangeException(nameof(MinSize), MinSize, "the shorter-side target must be positive");
        if (MaxSize <= 0) throw new ArgumentOutOfRangeException(nameof(MaxSize), MaxSize, "the longer-side cap must be positive");
    }
}

/// <summary>Three per-channel values in R, G, B order.</summary>
public readonly record struct ChannelValues(float R, float G, float B)
{
    /// <summary>Channel <paramref name="c"/> (0 R, 1 G, 2 B).</summary>
    public float this[int c] => c switch { 0 => R, 1 => G, 2 => B, _ => throw new ArgumentOutOfRangeException(nameof(c), c, "channel must be 0, 1 or 2") };
}

/// <summary>Per-channel normalisation: value = (byte × <see cref="PixelScale"/> − mean) / std.</summary>
/// <param name="Mean">Per-channel mean on the scaled pixel range.</param>
/// <param name="Std">Per-channel standard deviation (each &gt; 0).</param>
/// <param name="PixelScale">Factor applied to 0..255 bytes first (1/255 gives torchvision's 0..1 range).</param>
public sealed record ImageNormalization(ChannelValues Mean, ChannelValues Std, float PixelScale = 1f / 255f)
{
    /// <summary>ImageNet statistics on 0..1 pixels, torchvision's detection default.</summary>
    public static ImageNormalization ImageNet { get; } = new(new(0.485f, 0.456f, 0.406f), new(0.229f, 0.224f, 0.225f));

    /// <summary>Only the 1/255 scaling: pixels in 0..1.</summary>
    public static ImageNormalization UnitRange { get; } = new(new(0f, 0f, 0f), new(1f, 1f, 1f));

    internal void Validate(string paramName)
    {
        for (int c = 0; c < 3; c++)
        {
            if (!(Std[c] > 0) || !float.IsFinite(Std[c])) throw new ArgumentException($"std[{c}] = {Std[c]} must be positive and finite", paramName);
            if (!float.IsFinite(Mean[c])) throw new ArgumentException($"mean[{c}] = {Mean[c]} must be finite", paramName);
        }
        if (!(PixelScale > 0) || !float.IsFinite(PixelScale)) throw new ArgumentException($"pixel scale {PixelScale} must be positive and finite", paramName);
    }
}

/// <summary>
/// Bilinear resizer with reusable index and weight tables. Not thread-safe: use one per thread.
/// </summary>
public sealed class ImageResizer
{
    // Per output column: byte offsets of the two source pixels and their weights; rebuilt when
    // the (source width, output width) pair changes.
    private int[] _x0 = [], _x1 = [];
    private float[] _wx0 = [], _wx1 = [];
    private int _tableSrcWidth = -1, _tableOutWidth = -1;

    /// <summary>
    /// Resizes <paramref name="source"/> to <paramref name="outWidth"/> × <paramref name="outHeight"/>,
    /// optionally mirrored left–right, normalises, and writes channel-major (3, outHeight, outWidth)
    /// floats into <paramref name="chw"/>.
    /// </summary>
    public unsafe void ResizeNormalize(RgbImage source, int outWidth, int outHeight, bool flipHorizontal, ImageNormalization normalization, Span<float> chw)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(normalization);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(outWidth, 0);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(outHeight, 0);
        normalization.Validate(nameof(normalization));
        long plane = (long)outWidth * outHeight;
        if (chw.Length < 3 * plane)
            throw new ArgumentException($"expected at least 3 × {outHeight} × {outWidth} = {3 * plane} floats, got {chw.Length}", nameof(chw));
        BuildColumns(source.Width, outWidth);

        float scale = normalization.PixelScale;
        float m0 = normalization.Mean.R, m1 = normalization.Mean.G, m2 = normalization.Mean.B;
        float i0 = 1f / normalization.Std.R, i1 = 1f / normalization.Std.G, i2 = 1f / normalization.Std.B;
        int rowBytes = source.Width * 3;
        float yScale = (float)source.Height / outHeight;
        fixed (byte* px = source.Pixels)
        fixed (float* dst = chw)
        fixed (int* x0 = _x0, x1 = _x1)
        fixed (float* wx0 = _wx0, wx1 = _wx1)
        {
            float* r = dst, g = dst + plane, b = dst + 2 * plane;
            for (int oy = 0; oy < outHeight; oy++)
            {
                Row(yScale, oy, source.Height, out int y0, out int y1, out float wy0, out float wy1);
                byte* top = px + (long)y0 * rowBytes, bottom = px + (long)y1 * rowBytes;
                long o = (long)oy * outWidth;
                for (int ox = 0; ox < outWidth; ox++)
                {
                    int a = x0[ox], c = x1[ox];
                    float wa = wx0[ox], wc = wx1[ox];
                    // PyTorch's order: (top row blend) · wy0 + (bottom row blend) · wy1.
                    float vr = (top[a] * wa + top[c] * wc) * wy0 + (bottom[a] * wa + bottom[c] * wc) * wy1;
                    float vg = (top[a + 1] * wa + top[c + 1] * wc) * wy0 + (bottom[a + 1] * wa + bottom[c + 1] * wc) * wy1;
                    float vb = (top[a + 2] * wa + top[c + 2] * wc) * wy0 + (bottom[a + 2] * wa + bottom[c + 2] * wc) * wy1;
                    // Mirroring the resized row equals resizing the mirrored image: the half-pixel
                    // sampling is symmetric when the column scale is srcWidth / outWidth.
                    long d = o + (flipHorizontal ? outWidth - 1 - ox : ox);
                    r[d] = (vr * scale - m0) * i0;
                    g[d] = (vg * scale - m1) * i1;
                    b[d] = (vb * scale - m2) * i2;
                }
            }
        }
    }

    /// <summary>Bilinear resize to 8-bit RGB (values rounded to nearest), optionally mirrored left–right.</summary>
    public RgbImage Resize(RgbImage source, int outWidth, int outHeight, bool flipHorizontal = false)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(outWidth, 0);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(outHeight, 0);
        var dst = new RgbImage(outWidth, outHeight);
        BuildColumns(source.Width, outWidth);
        ReadOnlySpan<byte> px = source.Pixels;
        Span<byte> outPx = dst.Pixels;
        int rowBytes = source.Width * 3;
        float yScale = (float)source.Height / outHeight;
        for (int oy = 0; oy < outHeight; oy++)
        {
            Row(yScale, oy, source.Height, out int y0, out int y1, out float wy0, out float wy1);
            ReadOnlySpan<byte> top = px.Slice(y0 * rowBytes, rowBytes), bottom = px.Slice(y1 * rowBytes, rowBytes);
            Span<byte> dstRow = outPx.Slice(oy * outWidth * 3, outWidth * 3);
            for (int ox = 0; ox < outWidth; ox++)
            {
                int a = _x0[ox], c = _x1[ox];
                float wa = _wx0[ox], wc = _wx1[ox];
                int d = 3 * (flipHorizontal ? outWidth - 1 - ox : ox);
                for (int k = 0; k < 3; k++)
                {
                    float v = (top[a + k] * wa + top[c + k] * wc) * wy0 + (bottom[a + k] * wa + bottom[c + k] * wc) * wy1;
                    dstRow[d + k] = (byte)Math.Clamp(MathF.Round(v), 0f, 255f);
                }
            }
        }
        return dst;
    }

    private void BuildColumns(int srcWidth, int outWidth)
    {
        if (srcWidth == _tableSrcWidth && outWidth == _tableOutWidth) return;
        if (_x0.Length < outWidth)
        {
            _x0 = new int[outWidth]; _x1 = new int[outWidth];
            _wx0 = new float[outWidth]; _wx1 = new float[outWidth];
        }
        float xScale = (float)srcWidth / outWidth;
        for (int ox = 0; ox < outWidth; ox++)
        {
            Row(xScale, ox, srcWidth, out int i0, out int i1, out float w0, out float w1);
            _x0[ox] = 3 * i0; _x1[ox] = 3 * i1;
            _wx0[ox] = w0; _wx1[ox] = w1;
        }
        _tableSrcWidth = srcWidth;
        _tableOutWidth = outWidth;
    }

    // PyTorch's area_pixel_compute_source_index (align_corners=False) and the linear weights:
    // src = max(scale · (dst + 0.5) − 0.5, 0); i0 = floor(src); i1 = i0 + 1 unless i0 is the last index.
    private static void Row(float scale, int dst, int inputSize, out int i0, out int i1, out float w0, out float w1)
    {
        float src = MathF.Max(scale * (dst + 0.5f) - 0.5f, 0f);
        i0 = Math.Min((int)src, inputSize - 1);
        float lambda = Math.Clamp(src - i0, 0f, 1f);
        i1 = i0 < inputSize - 1 ? i0 + 1 : i0;
        w1 = lambda;
        w0 = 1f - lambda;
    }
}

/// <summary>Stateless image and box transforms.</summary>
public static class ImageTransforms
{
    /// <summary>Bilinear resize (detection sampling, no antialiasing) to 8-bit RGB.</summary>
    public static RgbImage Resize(RgbImage source, int outWidth, int outHeight) => new ImageResizer().Resize(source, outWidth, outHeight);

    /// <summary>Resizes by <paramref name="spec"/>'s rule; returns the image and the scale used.</summary>
    public static (RgbImage Image, double Scale) Resize(RgbImage source, ResizeSpec spec)
    {
        ArgumentNullException.ThrowIfNull(source);
        var (w, h) = spec.OutputSize(source.Width, source.Height);
        return (Resize(source, w, h), spec.ScaleFor(source.Width, source.Height));
    }

    /// <summary>The image mirrored left–right.</summary>
    public static RgbImage FlipHorizontal(RgbImage source)
    {
        ArgumentNullException.ThrowIfNull(source);
        var dst = new RgbImage(source.Width, source.Height);
        int w = source.Width;
        for (int y = 0; y < source.Height; y++)
        {
            ReadOnlySpan<byte> src = source.Pixels.AsSpan(y * w * 3, w * 3);
            Span<byte> row = dst.Pixels.AsSpan(y * w * 3, w * 3);
            for (int x = 0; x < w; x++)
            {
                int s = 3 * x, d = 3 * (w - 1 - x);
                row[d] = src[s]; row[d + 1] = src[s + 1]; row[d + 2] = src[s + 2];
            }
        }
        return dst;
    }

    /// <summary>A box mirrored in an image <paramref name="imageWidth"/> wide: (W − x2, y1, W − x1, y2), torchvision's rule.</summary>
    public static Box FlipHorizontal(Box box, float imageWidth) => new(imageWidth - box.X2, box.Y1, imageWidth - box.X1, box.Y2);

    /// <summary>A box with x scaled by <paramref name="scaleX"/> and y by <paramref name="scaleY"/> (torchvision's resize_boxes).</summary>
    public static Box Scale(Box box, float scaleX, float scaleY) => new(box.X1 * scaleX, box.Y1 * scaleY, box.X2 * scaleX, box.Y2 * scaleY);

    /// <summary>Boxes clipped to [0, width] × [0, height].</summary>
    public static Box Clip(Box box, float width, float height) => new(
        Math.Clamp(box.X1, 0f, width), Math.Clamp(box.Y1, 0f, height), Math.Clamp(box.X2, 0f, width), Math.Clamp(box.Y2, 0f, height));

    /// <summary>
    /// Writes <paramref name="image"/> as normalised channel-major floats (3, H, W) into
    /// <paramref name="chw"/> without resizing, optionally mirrored.
    /// </summary>
    public static void ToTensor(RgbImage image, ImageNormalization normalization, Span<float> chw, bool flipHorizontal = false)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(normalization);
        normalization.Validate(nameof(normalization));
        int w = image.Width, h = image.Height, plane = w * h;
        if (chw.Length < 3 * plane)
            throw new ArgumentException($"expected at least 3 × {h} × {w} = {3 * plane} floats, got {chw.Length}", nameof(chw));
        float scale = normalization.PixelScale;
        ReadOnlySpan<byte> px = image.Pixels;
        for (int c = 0; c < 3; c++)
        {
            float m = normalization.Mean[c], inv = 1f / normalization.Std[c];
            Span<float> dst = chw.Slice(c * plane, plane);
            for (int y = 0; y < h; y++)
            {
                int row = y * w;
                for (int x = 0; x < w; x++)
                {
                    int d = row + (flipHorizontal ? w - 1 - x : x);
                    dst[d] = (px[3 * (row + x) + c] * scale - m) * inv;
                }
            }
        }
    }

    /// <summary>Allocates and fills a normalised (3, H, W) float array of <paramref name="image"/>.</summary>
    public static float[] ToTensor(RgbImage image, ImageNormalization? normalization = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        var chw = new float[3 * image.Width * image.Height];
        ToTensor(image, normalization ?? ImageNormalization.ImageNet, chw);
        return chw;
    }
}
