// Anchors of one feature map, as torchvision's AnchorGenerator: A = ratios·sizes cell anchors
// centred on 0, for ratio r (height/width) and size s: h = √r·s, w = s/√r (float32), cell
// anchor round([−w, −h, w, h] / 2) (round half to even as torch.round), ordered ratio-major
// (index = ratioIndex·sizes + sizeIndex). The map's anchors are the cell anchors shifted by
// (x·strideW, y·strideH, x·strideW, y·strideH), ordered (y, x, a): anchor (y, x, a) is row
// (y·W + x)·A + a. Shapes: cell anchors (A, 4), map anchors (H·W·A, 4), flat float arrays.
// Results are cached per (H, W, strideH, strideW); the cache is thread-safe and bounded.
using System.Collections.Concurrent;

namespace GRcn.Detection.Rpn;

/// <summary>Generates the anchors of a single-level feature map (torchvision's AnchorGenerator).</summary>
public sealed class AnchorGenerator
{
    /// <summary>Most cached maps kept; the cache is emptied when it would grow beyond (multi-scale inputs).</summary>
    public const int CacheCapacity = 64;

    private readonly float[] _cell;
    private readonly ConcurrentDictionary<(int H, int W, int Sh, int Sw), float[]> _cache = new();

    /// <summary>Creates a generator of sizes × aspect ratios anchors per location.</summary>
    /// <param name="sizes">Anchor sizes (√area) in input pixels, e.g. 128, 256, 512.</param>
    /// <param name="aspectRatios">Height/width ratios, e.g. 0.5, 1, 2.</param>
    public AnchorGenerator(IReadOnlyList<float> sizes, IReadOnlyList<float> aspectRatios)
    {
        ArgumentNullException.ThrowIfNull(sizes);
        ArgumentNullException.ThrowIfNull(aspectRatios);
        if (sizes.Count == 0) throw new ArgumentException("need at least one anchor size", nameof(sizes));
        if (aspectRatios.Count == 0) throw new ArgumentException("need at least one aspect ratio", nameof(aspectRatios));
        foreach (var s in sizes)
            if (!(s > 0) || float.IsInfinity(s)) throw new ArgumentException($"anchor sizes must be positive and finite; got {s}", nameof(sizes));
        foreach (var r in aspectRatios)
            if (!(r > 0) || float.IsInfinity(r)) throw new ArgumentException($"aspect ratios must be positive and finite; got {r}", nameof(aspectRatios));
        Sizes = [.. sizes];
        AspectRatios = [.. aspectRatios];
        NumAnchorsPerLocation = sizes.Count * aspectRatios.Count;
        _cell = new float[NumAnchorsPerLocation * 4];
        int a = 0;
        foreach (float ratio in aspectRatios)
        {
            float hRatio = MathF.Sqrt(ratio);
            float wRatio = 1f / hRatio;
            foreach (float size in sizes)
            {
                float ws = wRatio * size, hs = hRatio * size;
                _cell[4 * a] = MathF.Round(-ws / 2f, MidpointRounding.ToEven);
                _cell[4 * a + 1] = MathF.Round(-hs / 2f, MidpointRounding.ToEven);
                _cell[4 * a + 2] = MathF.Round(ws / 2f, MidpointRounding.ToEven);
                _cell[4 * a + 3] = MathF.Round(hs / 2f, MidpointRounding.ToEven);
                a++;
            }
        }
    }

    /// <summary>Anchor sizes.</summary>
    public IReadOnlyList<float> Sizes { get; }

    /// <summary>Aspect ratios (height/width).</summary>
    public IReadOnlyList<float> AspectRatios { get; }

    /// <summary>A = ratios · sizes.</summary>
    public int NumAnchorsPerLocation { get; }

    /// <summary>The cell anchors (A, 4), centred on 0 (a copy).</summary>
    public float[] CellAnchors() => (float[])_cell.Clone();

    /// <summary>
    /// Anchors (H·W·A, 4) of a <paramref name="featH"/> × <paramref name="featW"/> map whose cells are
    /// <paramref name="strideH"/> × <paramref name="strideW"/> input pixels apart; row (y·W + x)·A + a.
    /// </summary>
    /// <remarks>The array is cached and shared between callers: do not modify it.</remarks>
    public float[] Anchors(int featH, int featW, int strideH, int strideW)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(featH);
        ArgumentOutOfRangeException.ThrowIfNegative(featW);
        ArgumentOutOfRangeException.ThrowIfLessThan(strideH, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(strideW, 1);
        var key = (featH, featW, strideH, strideW);
        if (_cache.TryGetValue(key, out var cached)) return cached;
        var anchors = Generate(featH, featW, strideH, strideW);
        if (_cache.Count >= CacheCapacity) _cache.Clear();
        return _cache.GetOrAdd(key, anchors);
    }

    private float[] Generate(int featH, int featW, int strideH, int strideW)
    {
        int a = NumAnchorsPerLocation;
        var anchors = new float[checked((long)featH * featW * a * 4)];
        int o = 0;
        for (int y = 0; y < featH; y++)
        {
            // integer shifts (torchvision builds them in int32) added to the float cell anchors
            float sy = y * strideH;
            for (int x = 0; x < featW; x++)
            {
                float sx = x * strideW;
                for (int c = 0; c < 4 * a; c += 4)
                {
                    anchors[o++] = sx + _cell[c];
                    anchors[o++] = sy + _cell[c + 1];
                    anchors[o++] = sx + _cell[c + 2];
                    anchors[o++] = sy + _cell[c + 3];
                }
            }
        }
        return anchors;
    }
}
