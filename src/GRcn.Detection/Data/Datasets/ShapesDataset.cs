// The built-in synthetic detection set: images of coloured shapes (rectangle, ellipse,
// triangle, plus, ring) with varied size (log-uniform, many small; or COCO-like, see
// ShapesSizeDistribution.CocoLike and ShapesOptions.Large), aspect ratio, colour and
// fill texture (solid, stripes, checker, noise) on a textured background with unannotated
// clutter (thin lines, faint soft blobs). Later shapes may cover earlier ones: an object's box
// is the full extent of its own pixels, and an object more than MaxOcclusion covered is not
// annotated. Sample i is a pure function of (seed, split, i): Load is thread-safe and
// order-independent, and builds a 128×128 image in well under a millisecond.
using System.Buffers;

namespace GRcn.Detection.Data;

/// <summary>Which half of the synthetic data: the splits draw from disjoint random streams.</summary>
public enum ShapesSplit
{
    /// <summary>Training images.</summary>
    Train,
    /// <summary>Held-out images.</summary>
    Test,
}

/// <summary>How the size √(w·h) of a drawn shape is distributed.</summary>
public enum ShapesSizeDistribution
{
    /// <summary>Log-uniform in [MinObjectSize, MaxObjectSize + 1): many small objects (the default set).</summary>
    LogUniform,

    /// <summary>
    /// COCO's mix by its area thresholds (pycocotools' 32² and 96² pixels): 41 % small (size in [MinObjectSize, 32)),
    /// 34 % medium ([32, 96)), 25 % large ([96, MaxObjectSize + 1)), log-uniform within each range. Needs
    /// MinObjectSize &lt; 32 and MaxObjectSize ≥ 96.
    /// </summary>
    CocoLike,
}

/// <summary>Options of <see cref="ShapesDataset"/>.</summary>
public sealed record ShapesOptions
{
    /// <summary>
    /// The "shapes-large" set: 320×240 images (COCO's 4:3 at half its 640×480) with up to 6 shapes of COCO-like sizes
    /// (<see cref="ShapesSizeDistribution.CocoLike"/>, 12 to 200 pixels). At the scale the detector sees them (1:1) a
    /// small object spans under two cells of the stride-16 map, a large one 6 to 12, about as COCO's objects do at the
    /// paper's 600-pixel input (docs/experiments.md).
    /// </summary>
    public static ShapesOptions Large => new()
    {
        Width = 320,
        Height = 240,
        MaxObjects = 6,
        MinObjectSize = 12,
        MaxObjectSize = 200,
        SizeDistribution = ShapesSizeDistribution.CocoLike,
    };

    /// <summary>Image width in pixels.</summary>
    public int Width { get; init; } = 128;

    /// <summary>Image height in pixels.</summary>
    public int Height { get; init; } = 128;

    /// <summary>Number of images.</summary>
    public int Count { get; init; } = 2000;

    /// <summary>Seed of the whole set.</summary>
    public ulong Seed { get; init; }

    /// <summary>Train or test stream.</summary>
    public ShapesSplit Split { get; init; } = ShapesSplit.Train;

    /// <summary>Most shapes drawn per image (1..254); the number drawn is uniform in [1, MaxObjects], or [0, MaxObjects] with <see cref="AllowEmpty"/>.</summary>
    public int MaxObjects { get; init; } = 4;

    /// <summary>Allow images with no shapes.</summary>
    public bool AllowEmpty { get; init; }

    /// <summary>Smallest drawn size, √(w·h) in pixels (≥ 4).</summary>
    public int MinObjectSize { get; init; } = 12;

    /// <summary>Largest drawn size, √(w·h) in pixels.</summary>
    public int MaxObjectSize { get; init; } = 64;

    /// <summary>How the drawn sizes are distributed between <see cref="MinObjectSize"/> and <see cref="MaxObjectSize"/>.</summary>
    public ShapesSizeDistribution SizeDistribution { get; init; } = ShapesSizeDistribution.LogUniform;

    /// <summary>Largest aspect ratio (w/h or h/w) of a drawn shape (≥ 1).</summary>
    public double MaxAspectRatio { get; init; } = 2.0;

    /// <summary>An object whose covered fraction exceeds this is left unannotated (0..1).</summary>
    public double MaxOcclusion { get; init; } = 0.7;

    /// <summary>Draw background clutter (lines and blobs).</summary>
    public bool Clutter { get; init; } = true;
}

/// <summary>Deterministic synthetic shapes; see the file comment.</summary>
public sealed class ShapesDataset : IDetectionDataset
{
    /// <summary>The class names, in label order.</summary>
    public static IReadOnlyList<string> ShapeClasses { get; } = ["rectangle", "ellipse", "triangle", "plus", "ring"];

    private const ulong StreamTag = 0x5348415045535631UL; // "SHAPESV1"
    private const ulong CocoLikeStreamTag = 0x5348415045534C31UL; // "SHAPESL1": COCO-like sizes draw from their own streams

    /// <summary>Upper size bounds of COCO's small and medium objects (√ of pycocotools' area thresholds 32² and 96²).</summary>
    private const double CocoSmall = 32, CocoMedium = 96;

    /// <summary>Shares of COCO's small and medium objects (train2017: 41 % and 34 %; the rest, 25 %, large).</summary>
    private const double SmallShare = 0.41, MediumShare = 0.34;

    /// <summary>Creates the set; validates <paramref name="options"/> (default: 128×128, 2000 images).</summary>
    public ShapesDataset(ShapesOptions? options = null)
    {
        options ??= new ShapesOptions();
        if (options.Width < 16 || options.Height < 16)
            throw new ArgumentException($"image size {options.Width}×{options.Height} must be at least 16×16", nameof(options));
        if (options.Count < 0) throw new ArgumentException($"Count {options.Count} must be ≥ 0", nameof(options));
        if (options.MaxObjects is < 0 or > 254) throw new ArgumentException($"MaxObjects {options.MaxObjects} must be in 0..254", nameof(options));
        if (options.MaxObjects == 0 && !options.AllowEmpty) throw new ArgumentException("MaxObjects 0 needs AllowEmpty", nameof(options));
        if (options.MinObjectSize < 4 || options.MaxObjectSize < options.MinObjectSize)
            throw new ArgumentException($"object sizes {options.MinObjectSize}..{options.MaxObjectSize} must satisfy 4 ≤ min ≤ max", nameof(options));
        if (options.MinObjectSize > Math.Min(options.Width, options.Height))
            throw new ArgumentException($"MinObjectSize {options.MinObjectSize} exceeds the image size {options.Width}×{options.Height}", nameof(options));
        if (options.SizeDistribution == ShapesSizeDistribution.CocoLike && (options.MinObjectSize >= CocoSmall || options.MaxObjectSize < CocoMedium))
            throw new ArgumentException($"COCO-like sizes need MinObjectSize < {CocoSmall} and MaxObjectSize ≥ {CocoMedium}; got {options.MinObjectSize}..{options.MaxObjectSize}", nameof(options));
        if (!Enum.IsDefined(options.SizeDistribution)) throw new ArgumentException($"SizeDistribution {options.SizeDistribution} is not defined", nameof(options));
        if (!(options.MaxAspectRatio >= 1) || !double.IsFinite(options.MaxAspectRatio))
            throw new ArgumentException($"MaxAspectRatio {options.MaxAspectRatio} must be ≥ 1", nameof(options));
        if (!(options.MaxOcclusion is >= 0 and <= 1)) throw new ArgumentException($"MaxOcclusion {options.MaxOcclusion} must be in [0, 1]", nameof(options));
        Options = options;
    }

    /// <summary>The options the set was made with.</summary>
    public ShapesOptions Options { get; }

    /// <inheritdoc />
    public IReadOnlyList<string> ClassNames => ShapeClasses;

    /// <inheritdoc />
    public int Count => Options.Count;

    private struct Shape
    {
        public int X0, Y0, W, H, Label, Total;
        public int MinX, MinY, MaxX, MaxY;
    }

    /// <inheritdoc />
    public DetectionSample Load(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
        var o = Options;
        int width = o.Width, height = o.Height;
        bool cocoLike = o.SizeDistribution == ShapesSizeDistribution.CocoLike;
        var rng = SeededRandom.For(cocoLike ? CocoLikeStreamTag : StreamTag, o.Seed, (ulong)o.Split, (ulong)index);
        var pixels = new byte[width * height * 3];
        // owner[p] = 1 + the index of the last shape drawn over pixel p, 0 for background.
        byte[] owner = ArrayPool<byte>.Shared.Rent(width * height);
        try
        {
            Array.Clear(owner, 0, width * height);
            var background = PaintBackground(pixels, width, height, ref rng);
            if (o.Clutter) PaintClutter(pixels, width, height, ref rng);

            int count = rng.NextInt(o.AllowEmpty ? 0 : 1, o.MaxObjects);
            Span<Shape> shapes = count <= 16 ? stackalloc Shape[count] : new Shape[count];
            for (int k = 0; k < count; k++)
                shapes[k] = DrawShape(pixels, owner, width, height, (byte)(k + 1), background, ref rng);

            Span<int> visible = count <= 64 ? stackalloc int[count] : new int[count];
            visible.Clear();
            for (int p = 0; p < width * height; p++)
                if (owner[p] != 0) visible[owner[p] - 1]++;

            var objects = new List<ObjectAnnotation>(count);
            for (int k = 0; k < count; k++)
            {
                ref Shape s = ref shapes[k];
                if (s.Total == 0 || visible[k] < (1 - o.MaxOcclusion) * s.Total) continue;
                objects.Add(new ObjectAnnotation(new Box(s.MinX, s.MinY, s.MaxX + 1, s.MaxY + 1), s.Label));
            }
            string split = o.Split == ShapesSplit.Train ? "train" : "test";
            return new DetectionSample($"{(cocoLike ? "shapes-large" : "shapes")}-{split}-{index}", new RgbImage(width, height, pixels), objects);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(owner);
        }
    }

    private readonly record struct Rgb(int R, int G, int B)
    {
        public int Distance(Rgb o) => Math.Abs(R - o.R) + Math.Abs(G - o.G) + Math.Abs(B - o.B);
    }

    /// <summary>Flat or gradient background with per-pixel noise; returns its base colour.</summary>
    private static Rgb PaintBackground(byte[] px, int width, int height, ref SeededRandom rng)
    {
        var c0 = new Rgb(rng.NextInt(20, 235), rng.NextInt(20, 235), rng.NextInt(20, 235));
        var delta = new Rgb(rng.NextInt(-40, 40), rng.NextInt(-40, 40), rng.NextInt(-40, 40));
        int gradient = rng.NextInt(3); // 0 flat, 1 left→right, 2 top→bottom
        int noise = rng.NextInt(0, 16);
        uint state = (uint)rng.NextULong() | 1;
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                float t = gradient switch { 1 => (float)x / width, 2 => (float)y / height, _ => 0f };
                int n = noise == 0 ? 0 : (int)(XorShift(ref state) & 0xFF) * noise / 128 - noise;
                int o = 3 * (y * width + x);
                px[o] = Clamp(c0.R + (int)(t * delta.R) + n);
                px[o + 1] = Clamp(c0.G + (int)(t * delta.G) + n);
                px[o + 2] = Clamp(c0.B + (int)(t * delta.B) + n);
            }
        }
        return c0;
    }

    /// <summary>Unannotated clutter: up to 3 thin lines and up to 2 faint soft-edged blobs.</summary>
    private static void PaintClutter(byte[] px, int width, int height, ref SeededRandom rng)
    {
        int lines = rng.NextInt(0, 3);
        for (int i = 0; i < lines; i++)
        {
            var c = new Rgb(rng.NextInt(256), rng.NextInt(256), rng.NextInt(256));
            int x0 = rng.NextInt(width), y0 = rng.NextInt(height), x1 = rng.NextInt(width), y1 = rng.NextInt(height);
            // Bresenham over the integer segment.
            int dx = Math.Abs(x1 - x0), dy = -Math.Abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
            while (true)
            {
                Put(px, width, x0, y0, c);
                if (x0 == x1 && y0 == y1) break;
                int e2 = 2 * err;
                if (e2 >= dy) { err += dy; x0 += sx; }
                if (e2 <= dx) { err += dx; y0 += sy; }
            }
        }
        int blobs = rng.NextInt(0, 2);
        for (int i = 0; i < blobs; i++)
        {
            var c = new Rgb(rng.NextInt(256), rng.NextInt(256), rng.NextInt(256));
            float r = (float)rng.NextDouble(3, 9);
            float cx = (float)rng.NextDouble(0, width), cy = (float)rng.NextDouble(0, height);
            int xa = Math.Max(0, (int)(cx - r)), xb = Math.Min(width - 1, (int)(cx + r));
            int ya = Math.Max(0, (int)(cy - r)), yb = Math.Min(height - 1, (int)(cy + r));
            for (int y = ya; y <= yb; y++)
                for (int x = xa; x <= xb; x++)
                {
                    float d = MathF.Sqrt((x + 0.5f - cx) * (x + 0.5f - cx) + (y + 0.5f - cy) * (y + 0.5f - cy)) / r;
                    if (d >= 1) continue;
                    float a = 0.35f * (1 - d); // fades to nothing at the rim
                    int o = 3 * (y * width + x);
                    px[o] = Clamp((int)(px[o] + a * (c.R - px[o])));
                    px[o + 1] = Clamp((int)(px[o + 1] + a * (c.G - px[o + 1])));
                    px[o + 2] = Clamp((int)(px[o + 2] + a * (c.B - px[o + 2])));
                }
        }
    }

    private Shape DrawShape(byte[] px, byte[] owner, int width, int height, byte id, Rgb background, ref SeededRandom rng)
    {
        var o = Options;
        int label = rng.NextInt(ShapeClasses.Count);
        double size = o.SizeDistribution == ShapesSizeDistribution.CocoLike
            ? CocoLikeSize(o, ref rng)
            : Math.Exp(rng.NextDouble(Math.Log(o.MinObjectSize), Math.Log(o.MaxObjectSize + 1)));
        double aspect = Math.Exp(rng.NextDouble(-Math.Log(o.MaxAspectRatio), Math.Log(o.MaxAspectRatio)));
        int w = Math.Clamp((int)Math.Round(size * Math.Sqrt(aspect)), 4, width);
        int h = Math.Clamp((int)Math.Round(size / Math.Sqrt(aspect)), 4, height);
        int x0 = rng.NextInt(0, width - w), y0 = rng.NextInt(0, height - h);

        // Object colour far (L1 ≥ 180) from the background's base colour; second texture colour
        // moved 60 further away from the background in every channel.
        Rgb c = default;
        for (int attempt = 0; attempt < 16; attempt++)
        {
            c = new Rgb(rng.NextInt(256), rng.NextInt(256), rng.NextInt(256));
            if (c.Distance(background) >= 180) break;
            if (attempt == 15) c = new Rgb(255 - background.R, 255 - background.G, 255 - background.B);
        }
        var c2 = new Rgb(Away(c.R, background.R), Away(c.G, background.G), Away(c.B, background.B));
        int texture = rng.NextInt(5); // 0–1 solid, 2 stripes, 3 checker, 4 noise
        int period = rng.NextInt(3, 6), cell = rng.NextInt(2, 5), dirX = rng.NextInt(-1, 1), dirY = rng.NextInt(0, 1);
        if (dirX == 0 && dirY == 0) dirY = 1;
        uint state = (uint)rng.NextULong() | 1;

        // Shape parameters in the box's normalised coordinates u, v ∈ (−1, 1).
        float arm = (float)rng.NextDouble(0.2, 0.36);        // plus: half-width of an arm
        float inner = (float)rng.NextDouble(0.45, 0.7);      // ring: inner radius
        int orientation = rng.NextInt(4);                    // triangle apex: up, down, left, right
        float inner2 = inner * inner;

        var s = new Shape { X0 = x0, Y0 = y0, W = w, H = h, Label = label, MinX = int.MaxValue, MinY = int.MaxValue, MaxX = -1, MaxY = -1 };
        float cx = x0 + w * 0.5f, cy = y0 + h * 0.5f, rx = w * 0.5f, ry = h * 0.5f;
        for (int y = y0; y < y0 + h; y++)
        {
            float v = (y + 0.5f - cy) / ry;
            for (int x = x0; x < x0 + w; x++)
            {
                float u = (x + 0.5f - cx) / rx;
                bool inside = label switch
                {
                    0 => true,
                    1 => u * u + v * v <= 1f,
                    2 => orientation switch
                    {
                        0 => MathF.Abs(u) <= (v + 1f) * 0.5f,
                        1 => MathF.Abs(u) <= (1f - v) * 0.5f,
                        2 => MathF.Abs(v) <= (u + 1f) * 0.5f,
                        _ => MathF.Abs(v) <= (1f - u) * 0.5f,
                    },
                    3 => MathF.Abs(u) <= arm || MathF.Abs(v) <= arm,
                    _ => u * u + v * v <= 1f && u * u + v * v >= inner2,
                };
                if (!inside) continue;
                bool alt = texture switch
                {
                    2 => Mod(dirX * x + dirY * y, 2 * period) < period,
                    3 => ((x / cell + y / cell) & 1) == 1,
                    _ => false,
                };
                Rgb fill = alt ? c2 : c;
                if (texture == 4)
                {
                    int n = (int)(XorShift(ref state) & 0x3F) - 32;
                    fill = new Rgb(fill.R + n, fill.G + n, fill.B + n);
                }
                Put(px, width, x, y, fill);
                owner[y * width + x] = id;
                s.Total++;
                s.MinX = Math.Min(s.MinX, x); s.MaxX = Math.Max(s.MaxX, x);
                s.MinY = Math.Min(s.MinY, y); s.MaxY = Math.Max(s.MaxY, y);
            }
        }
        return s;
    }

    /// <summary>A size of <see cref="ShapesSizeDistribution.CocoLike"/>: COCO's range by its share, log-uniform within it.</summary>
    private static double CocoLikeSize(ShapesOptions o, ref SeededRandom rng)
    {
        double u = rng.NextDouble();
        (double lo, double hi) = u < SmallShare ? (o.MinObjectSize, CocoSmall)
            : u < SmallShare + MediumShare ? (CocoSmall, CocoMedium)
            : (CocoMedium, o.MaxObjectSize + 1);
        return Math.Exp(rng.NextDouble(Math.Log(lo), Math.Log(hi)));
    }

    private static int Away(int c, int background) => c >= background ? Math.Min(255, c + 60) : Math.Max(0, c - 60);

    private static int Mod(int a, int m) => ((a % m) + m) % m;

    private static void Put(byte[] px, int width, int x, int y, Rgb c)
    {
        int o = 3 * (y * width + x);
        px[o] = Clamp(c.R); px[o + 1] = Clamp(c.G); px[o + 2] = Clamp(c.B);
    }

    private static byte Clamp(int v) => (byte)Math.Clamp(v, 0, 255);

    private static uint XorShift(ref uint s)
    {
        s ^= s << 13; s ^= s >> 17; s ^= s << 5;
        return s;
    }
}
