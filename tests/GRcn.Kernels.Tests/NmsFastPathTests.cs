using GRcn.Kernels.Cpu;
using GRcn.Kernels.Tests.Reference;

namespace GRcn.Kernels.Tests;

/// <summary>
/// The grid sweep of nms (float32 pre-filter, 4-lane double and scalar tests), the brute-force
/// sweep and the radix score order, each forced on random layouts and checked against the oracle.
/// </summary>
public class NmsFastPathTests
{
    public enum Layout
    {
        /// <summary>The benchmark's: sides uniform in [1, 100] in a 600 × 600 image.</summary>
        Uniform,
        /// <summary>Jittered copies around a few centres: many IoUs near any threshold.</summary>
        Clustered,
        /// <summary>Few distinct boxes, each repeated.</summary>
        Identical,
        /// <summary>Sides log-uniform over three decades.</summary>
        MixedSizes,
        /// <summary>Mostly tiny boxes with some covering most of the image (the grid's big-box list).</summary>
        TinyAndHuge,
        /// <summary>A third with x2 ≤ x1, y2 ≤ y1 or zero width, among normal boxes.</summary>
        Degenerate,
        /// <summary>Coordinates near 1e20: beyond the float32 pre-filter's range.</summary>
        HugeCoordinates,
        /// <summary>Areas near 1e-30: below the float32 pre-filter's range.</summary>
        TinyAreas,
        /// <summary>Integer coordinates on a small range: exact IoU ties with the thresholds.</summary>
        Quantised,
    }

    public enum Scores { Distinct, Ties, WithNaN }

    private static readonly NmsCpu.SuppressPath[] Paths =
    [
        NmsCpu.SuppressPath.Auto, NmsCpu.SuppressPath.Sweep, NmsCpu.SuppressPath.Grid,
        NmsCpu.SuppressPath.GridDouble, NmsCpu.SuppressPath.GridScalar,
    ];

    private static (float[] Boxes, float[] Scores) Make(int seed, int n, Layout layout, Scores scores)
    {
        var r = new Random(seed);
        var b = new float[4 * n];
        var s = new float[n];
        int distinct = Math.Max(1, n / 10);
        var centres = Enumerable.Range(0, 8).Select(_ => (X: r.NextSingle() * 500, Y: r.NextSingle() * 500)).ToArray();
        for (int i = 0; i < n; i++)
        {
            float x, y, w, h;
            switch (layout)
            {
                case Layout.Clustered:
                    var c = centres[r.Next(centres.Length)];
                    x = c.X + r.NextSingle() * 6;
                    y = c.Y + r.NextSingle() * 6;
                    w = 40 + r.NextSingle() * 8;
                    h = 40 + r.NextSingle() * 8;
                    break;
                case Layout.MixedSizes:
                    w = MathF.Pow(10, r.NextSingle() * 3 - 0.5f);
                    h = MathF.Pow(10, r.NextSingle() * 3 - 0.5f);
                    x = r.NextSingle() * 600;
                    y = r.NextSingle() * 600;
                    break;
                case Layout.TinyAndHuge:
                    bool huge = r.Next(10) == 0;
                    w = huge ? 200 + r.NextSingle() * 400 : 0.01f + r.NextSingle() * 2;
                    h = huge ? 200 + r.NextSingle() * 400 : 0.01f + r.NextSingle() * 2;
                    x = r.NextSingle() * (huge ? 100 : 60);
                    y = r.NextSingle() * (huge ? 100 : 60);
                    break;
                case Layout.HugeCoordinates:
                    x = 1e20f + r.NextSingle() * 4e19f;
                    y = -1e20f + r.NextSingle() * 4e19f;
                    w = r.NextSingle() * 1e19f;
                    h = r.NextSingle() * 1e19f;
                    break;
                case Layout.TinyAreas:
                    x = r.NextSingle() * 4e-15f;
                    y = r.NextSingle() * 4e-15f;
                    w = r.NextSingle() * 1e-15f;
                    h = r.NextSingle() * 1e-15f;
                    break;
                case Layout.Quantised:
                    x = r.Next(30);
                    y = r.Next(30);
                    w = 1 + r.Next(8);
                    h = 1 + r.Next(8);
                    break;
                default:
                    w = 1 + r.NextSingle() * 99;
                    h = 1 + r.NextSingle() * 99;
                    x = r.NextSingle() * (600 - w);
                    y = r.NextSingle() * (600 - h);
                    break;
            }
            if (layout == Layout.Degenerate)
            {
                switch (r.Next(6))
                {
                    case 0: w = -w; break;
                    case 1: h = -h; break;
                    case 2: w = 0; break;
                }
            }
            b[4 * i] = x;
            b[4 * i + 1] = y;
            b[4 * i + 2] = x + w;
            b[4 * i + 3] = y + h;
            s[i] = scores switch
            {
                Scores.Ties => r.Next(6) / 4f - 0.5f,
                Scores.WithNaN when r.Next(8) == 0 => float.NaN,
                _ => r.NextSingle(),
            };
        }
        if (layout == Layout.Identical)
        {
            for (int i = distinct; i < n; i++) Array.Copy(b, 4 * r.Next(distinct), b, 4 * i, 4);
        }
        return (b, s);
    }

    private static long[] RunNms(float[] boxes, float[] scores, double threshold, NmsCpu.SuppressPath path)
    {
        NmsCpu.ForcePath = path;
        try
        {
            using var b = Tensor.FromArray(boxes, scores.Length, 4);
            using var s = Tensor.FromArray(scores, scores.Length);
            using var keep = Nms.Forward(b, s, threshold);
            return keep.ToArray<long>();
        }
        finally
        {
            NmsCpu.ForcePath = NmsCpu.SuppressPath.Auto;
        }
    }

    public static TheoryData<Layout, Scores, int> Cases()
    {
        var data = new TheoryData<Layout, Scores, int>();
        foreach (Layout l in Enum.GetValues<Layout>())
            foreach (Scores s in Enum.GetValues<Scores>())
                data.Add(l, s, 300 + 97 * (int)l);
        data.Add(Layout.Uniform, Scores.Distinct, 1500);
        data.Add(Layout.Clustered, Scores.Ties, 1200);
        data.Add(Layout.TinyAndHuge, Scores.Distinct, 1500);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryPath_MatchesReference(Layout layout, Scores scores, int n)
    {
        foreach (int seed in new[] { 1, 2 })
        {
            var (b, s) = Make(seed * 1000 + (int)layout * 10 + (int)scores, n, layout, scores);
            foreach (double t in new[] { 0.0, 1e-12, 0.3, 0.5, 0.7, 1.0, -0.2 })
            {
                var want = NmsReference.Nms(b, s, t);
                foreach (var path in Paths)
                    Assert.True(want.SequenceEqual(RunNms(b, s, t, path)), $"{layout} {scores} n={n} seed={seed} t={t} path={path}");
            }
        }
    }

    /// <summary>
    /// Pairs whose double IoU is exactly the threshold (kept) or one ulp above it (suppressed),
    /// among enough far-away boxes that the grid runs: the float32 pre-filter must pass them all.
    /// </summary>
    [Theory]
    [InlineData(0f, 100f)]
    [InlineData(1e6f, 1000f)]
    [InlineData(0f, 0.001f)]
    [InlineData(-3e4f, 3e4f)]
    public void IouOneUlpAroundTheThreshold_IsDecidedExactly(float origin, float scale)
    {
        var r = new Random(BitConverter.SingleToInt32Bits(origin) ^ BitConverter.SingleToInt32Bits(scale));
        const int far = 80;
        int n = far + 2;
        var b = new float[4 * n];
        var s = new float[n];
        for (int i = 0; i < far; i++)
        {
            // unit-scale boxes well apart from the pair and from each other
            float x = origin + scale * (10 + 3 * (i % 10)), y = origin + scale * (10 + 3 * (i / 10));
            b[4 * i + 4 * 2] = x;
            b[4 * i + 4 * 2 + 1] = y;
            b[4 * i + 4 * 2 + 2] = x + scale;
            b[4 * i + 4 * 2 + 3] = y + scale;
            s[i + 2] = 0.5f;
        }
        s[0] = 0.9f;
        s[1] = 0.8f;
        int checkedPairs = 0;
        for (int trial = 0; trial < 200; trial++)
        {
            for (int j = 0; j < 2; j++)
            {
                float x = origin + scale * r.NextSingle() * 0.5f, y = origin + scale * r.NextSingle() * 0.5f;
                b[4 * j] = x;
                b[4 * j + 1] = y;
                b[4 * j + 2] = x + scale * (0.5f + r.NextSingle());
                b[4 * j + 3] = y + scale * (0.5f + r.NextSingle());
            }
            double iou = NmsReference.Iou(b, 0, 1);
            if (!(iou > 0)) continue;
            checkedPairs++;
            foreach (double t in new[] { iou, Math.BitDecrement(iou), Math.BitIncrement(iou) })
            {
                var want = NmsReference.Nms(b, s, t);
                Assert.Equal(iou > t ? far + 1 : far + 2, want.Length);
                foreach (var path in Paths)
                    Assert.True(want.SequenceEqual(RunNms(b, s, t, path)), $"trial {trial} iou={iou:R} t={t:R} path={path}");
            }
        }
        Assert.True(checkedPairs > 100);
    }

    /// <summary>With a threshold no IoU exceeds, nms returns every box in the stable score order.</summary>
    [Theory]
    [InlineData(255)]
    [InlineData(256)]
    [InlineData(257)]
    [InlineData(3000)]
    [InlineData(20000)]
    public void ScoreOrder_IsStableDescendingWithNaNFirst(int n)
    {
        var r = new Random(n);
        float[] special = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, 0f, -0f, float.Epsilon, -float.Epsilon, float.MaxValue, -float.MaxValue, 1f, -1f];
        var s = Enumerable.Range(0, n).Select(i => r.Next(4) switch
        {
            0 => special[r.Next(special.Length)],
            1 => r.Next(20) / 8f - 1f,
            2 => (float)(r.NextDouble() * 2e6 - 1e6),
            _ => BitConverter.Int32BitsToSingle(r.Next()) * (r.Next(2) == 0 ? 1 : -1),
        }).ToArray();
        var b = new float[4 * n];
        for (int i = 0; i < n; i++)
        {
            b[4 * i] = i % 50;
            b[4 * i + 1] = i / 50 % 50;
            b[4 * i + 2] = b[4 * i] + 5;
            b[4 * i + 3] = b[4 * i + 1] + 5;
        }
        var want = NmsReference.StableOrder(s, Enumerable.Range(0, n)).Select(i => (long)i).ToArray();
        Assert.Equal(want, RunNms(b, s, 2.0, NmsCpu.SuppressPath.Auto));
    }

    [Theory]
    [InlineData(Layout.Uniform, 0.7)]
    [InlineData(Layout.Clustered, 0.5)]
    [InlineData(Layout.MixedSizes, 0.0)]
    [InlineData(Layout.TinyAndHuge, 0.3)]
    public void LargeInputs_GridMatchesSweep(Layout layout, double threshold)
    {
        var (b, s) = Make(99, 8000, layout, Scores.Distinct);
        var sweep = RunNms(b, s, threshold, NmsCpu.SuppressPath.Sweep);
        Assert.Equal(sweep, RunNms(b, s, threshold, NmsCpu.SuppressPath.Grid));
        Assert.Equal(sweep, RunNms(b, s, threshold, NmsCpu.SuppressPath.Auto));
    }

    /// <summary>batched_nms with classes large enough for the grid, on both of torchvision's paths.</summary>
    [Theory]
    [InlineData(Layout.Uniform, 900, 0.7)]
    [InlineData(Layout.Clustered, 900, 0.0)]
    [InlineData(Layout.Uniform, 3000, 0.5)]
    [InlineData(Layout.MixedSizes, 2500, 0.3)]
    [InlineData(Layout.Degenerate, 2000, 0.7)]
    public void BatchedNms_LargeClasses_MatchReference(Layout layout, int n, double threshold)
    {
        var (b, s) = Make(7, n, layout, Scores.Distinct);
        var idxs = Enumerable.Range(0, n).Select(i => (long)(i * 7 % 3)).ToArray();
        using var tb = Tensor.FromArray(b, n, 4);
        using var ts = Tensor.FromArray(s, n);
        using var ti = Tensor.FromArray(idxs, n);
        using var keep = BatchedNms.Forward(tb, ts, ti, threshold);
        Assert.Equal(NmsReference.BatchedNms(b, s, idxs, threshold), keep.ToArray<long>());
    }
}
