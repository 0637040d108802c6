using GRcn.Kernels.Cpu;
using GRcn.Kernels.Tests.Reference;

namespace GRcn.Kernels.Tests;

/// <summary>nms, batched_nms and box_iou against the oracle, hand cases and torchvision's own outputs.</summary>
public class NmsTests
{
    /// <summary>box_iou is computed in float64 and rounded once: it must equal the oracle's rounding.</summary>
    private const float BoxIouTol = 0f;

    public enum Kind { Plain, Ties, Quantised, Duplicates, ZeroArea, Degenerate }

    /// <summary>Random boxes in a size × size image, many overlapping; scores with optional ties.</summary>
    private static (float[] Boxes, float[] Scores) Random(int seed, int n, Kind kind, float size = 100f)
    {
        var r = new Random(seed);
        var b = new float[4 * n];
        var s = new float[n];
        int distinct = Math.Max(1, n / 3);
        for (int i = 0; i < n; i++)
        {
            float x = (float)r.NextDouble() * size, y = (float)r.NextDouble() * size;
            float w = (float)r.NextDouble() * 40, h = (float)r.NextDouble() * 40;
            if (kind == Kind.Quantised) { x = MathF.Round(x / 4) * 4; y = MathF.Round(y / 4) * 4; w = MathF.Round(w / 4) * 4; h = MathF.Round(h / 4) * 4; }
            if (kind == Kind.ZeroArea && r.Next(3) == 0) w = 0;
            if (kind == Kind.Degenerate && r.Next(3) == 0) w = -w;
            b[4 * i] = x; b[4 * i + 1] = y; b[4 * i + 2] = x + w; b[4 * i + 3] = y + h;
            s[i] = kind == Kind.Plain ? (float)r.NextDouble() : r.Next(7) / 8f;
        }
        if (kind == Kind.Duplicates)
        {
            for (int i = distinct; i < n; i++)
                Array.Copy(b, 4 * r.Next(distinct), b, 4 * i, 4);
        }
        return (b, s);
    }

    private static long[] RunNms(float[] boxes, float[] scores, double threshold)
    {
        using var b = Tensor.FromArray(boxes, scores.Length, 4);
        using var s = Tensor.FromArray(scores, scores.Length);
        using var keep = Nms.Forward(b, s, threshold);
        Assert.Equal(DataType.Int64, keep.DataType);
        return keep.ToArray<long>();
    }

    private static long[] RunBatched(float[] boxes, float[] scores, long[] idxs, double threshold)
    {
        using var b = Tensor.FromArray(boxes, scores.Length, 4);
        using var s = Tensor.FromArray(scores, scores.Length);
        using var i = Tensor.FromArray(idxs, idxs.Length);
        using var keep = BatchedNms.Forward(b, s, i, threshold);
        return keep.ToArray<long>();
    }

    public static TheoryData<int, Kind, double> RandomCases()
    {
        var data = new TheoryData<int, Kind, double>();
        foreach (double t in new[] { 0.3, 0.5, 0.7 })
            foreach (int n in new[] { 1, 2, 17, 300 })
                foreach (Kind k in Enum.GetValues<Kind>())
                    data.Add(n, k, t);
        data.Add(2000, Kind.Ties, 0.5);
        data.Add(2000, Kind.Plain, 0.7);
        return data;
    }

    [Theory]
    [MemberData(nameof(RandomCases))]
    public void Nms_RandomBoxes_MatchReference(int n, Kind kind, double threshold)
    {
        var (b, s) = Random(n * 7 + (int)kind, n, kind);
        Assert.Equal(NmsReference.Nms(b, s, threshold), RunNms(b, s, threshold));
    }

    [Theory]
    [MemberData(nameof(RandomCases))]
    public void BatchedNms_RandomBoxes_MatchReference(int n, Kind kind, double threshold)
    {
        var (b, s) = Random(n * 13 + (int)kind, n, kind);
        var r = new Random(n);
        foreach (int classes in new[] { 1, 3, 80 })
        {
            // sparse, negative class ids too
            var idxs = Enumerable.Range(0, n).Select(_ => (long)r.Next(classes) * 7 - 5).ToArray();
            var got = RunBatched(b, s, idxs, threshold);
            var want = NmsReference.BatchedNms(b, s, idxs, threshold);
            if (n <= NmsCpu.CoordinateTrickMaxBoxes)
                Assert.Equal(want, got);
            else
            {
                // torchvision's per-class path: same set, descending scores, ties in its own order
                Assert.Equal(want.Order(), got.Order());
                for (int i = 1; i < got.Length; i++) Assert.True(s[got[i - 1]] >= s[got[i]]);
            }
        }
    }

    [Fact]
    public void BatchedNms_LargeInputWithDistinctScores_MatchesReferenceOrder()
    {
        var (b, s) = Random(5, 1500, Kind.Plain, 300f);
        var idxs = Enumerable.Range(0, 1500).Select(i => (long)(i % 5)).ToArray();
        Assert.Equal(NmsReference.BatchedNms(b, s, idxs, 0.5), RunBatched(b, s, idxs, 0.5));
    }

    /// <summary>
    /// A 30-column grid of 12-pixel boxes at a 10-pixel pitch (vertical neighbours share a class
    /// and have IoU 24/264), scores in 11 tied levels; expected values from torchvision 0.14
    /// batched_nms (float64) at IoU 0.05: above 1000 boxes ties come in torch's unstable-sort order.
    /// </summary>
    [Theory]
    [InlineData(1200, 561, 91735936L, new long[] { 217, 195, 646, 1064, 1152, 635, 206, 624, 613, 657, 602, 228, 591, 580, 239, 1075, 569, 558, 701, 1042, 745, 140, 734, 1163 })]
    [InlineData(1000, 470, 56775024L, new long[] { 8, 19, 30, 41, 52, 63, 74, 85, 96, 107, 118, 129, 140, 151, 162, 173, 184, 195, 206, 217, 228, 239, 250, 261 })]
    public void BatchedNms_TiedScores_FollowTorchvisionOrder(int n, int kept, long fingerprint, long[] head)
    {
        var b = new float[4 * n];
        var s = new float[n];
        var idxs = new long[n];
        for (int i = 0; i < n; i++)
        {
            float x = i % 30 * 10, y = i / 30 * 10;
            b[4 * i] = x; b[4 * i + 1] = y; b[4 * i + 2] = x + 12; b[4 * i + 3] = y + 12;
            s[i] = i * 37 % 11 / 8f;
            idxs[i] = i % 2;
        }
        var got = RunBatched(b, s, idxs, 0.05);
        Assert.Equal(kept, got.Length);
        Assert.Equal(head, got[..head.Length]);
        long fp = 0;
        for (int t = 0; t < got.Length; t++) fp += (t + 1) * got[t];
        Assert.Equal(fingerprint, fp);
        Assert.Equal(NmsReference.BatchedNms(b, s, idxs, 0.05).Order(), got.Order());
    }

    [Fact]
    public void IntroSort_MatchesTorchUnstableSortOnTies()
    {
        // torch.tensor(...).sort(descending=True)[1] from torch 1.13 on the CPU
        float[] alternating = Enumerable.Range(0, 20).Select(i => i % 2 == 0 ? 1f : 0f).ToArray();
        Assert.Equal(new long[] { 0, 2, 18, 4, 6, 16, 8, 10, 14, 12, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1 }, SortIndices(alternating));
        float[] levels = Enumerable.Range(0, 40).Select(i => i * 5 % 7 / 4f).ToArray();
        Assert.Equal(new long[] { 39, 32, 4, 25, 18, 11, 1, 36, 29, 22, 15, 8, 12, 19, 33, 5, 26, 37, 2, 9, 16, 30, 23, 6, 34, 27, 20, 13, 10, 24, 31, 3, 17, 38, 28, 7, 21, 35, 14, 0 },
            SortIndices(levels));

        static long[] SortIndices(float[] v)
        {
            var pairs = v.Select((x, i) => new ScoreIndex(x, i)).ToArray();
            IntroSort.Sort(pairs);
            return pairs.Select(p => p.Index).ToArray();
        }
    }

    [Fact]
    public void IntroSort_SortsLargeInputsDescendingWithNaNFirst()
    {
        var r = new Random(4);
        var v = Enumerable.Range(0, 5000).Select(_ => r.Next(10) == 0 ? float.NaN : r.Next(50) / 4f).ToArray();
        var pairs = v.Select((x, i) => new ScoreIndex(x, i)).ToArray();
        IntroSort.Sort(pairs);
        Assert.Equal(Enumerable.Range(0, 5000).Select(i => (long)i), pairs.Select(p => p.Index).Order());
        int nan = v.Count(float.IsNaN);
        Assert.All(pairs[..nan], p => Assert.True(float.IsNaN(p.Score)));
        for (int i = nan + 1; i < pairs.Length; i++) Assert.True(pairs[i - 1].Score >= pairs[i].Score);
    }

    [Fact]
    public void IouExactlyAtThreshold_IsKept_AboveIsSuppressed()
    {
        // [0,0,2,1] and [0,0,1,1]: inter 1, union 2 → IoU exactly 0.5
        float[] b = [0, 0, 2, 1, 0, 0, 1, 1];
        float[] s = [0.9f, 0.8f];
        Assert.Equal([0L, 1L], RunNms(b, s, 0.5));
        Assert.Equal([0L], RunNms(b, s, 0.4999));
    }

    [Fact]
    public void HandComputed_OrderAndSuppression()
    {
        float[] b =
        [
            0, 0, 10, 10,    // 0
            1, 1, 11, 11,    // 1: IoU with 0 = 81/119 ≈ 0.68
            20, 20, 30, 30,  // 2: disjoint
            0, 0, 10, 10,    // 3: duplicate of 0
            5, 0, 15, 10,    // 4: IoU with 0 = 50/150 = 1/3
        ];
        float[] s = [0.5f, 0.9f, 0.1f, 0.7f, 0.6f];
        // order 1, 3, 4, 0, 2; 3 vs 1: 0.68 > 0.5 → dropped; 4 vs 1: 54/146 ≈ 0.37 kept; 0 dropped by 1
        Assert.Equal([1L, 4L, 2L], RunNms(b, s, 0.5));
        // at 0.7 nothing overlaps enough except the duplicate pair 0/3 (IoU 1): 3 beats 0
        Assert.Equal([1L, 3L, 4L, 2L], RunNms(b, s, 0.7));
        // batched: 0, 2 and 3 in another class than 1 and 4 → 3 survives, 0 still loses to 3
        Assert.Equal([1L, 3L, 4L, 2L], RunBatched(b, s, [0, 1, 0, 0, 1], 0.5));
        // 1 and 3 share a class: 3 is dropped, 0 survives beside 4 (IoU 1/3)
        Assert.Equal([1L, 4L, 0L, 2L], RunBatched(b, s, [0, 1, 0, 1, 0], 0.5));
    }

    [Fact]
    public void TiedScores_KeepTheLowerIndex_NaNScoresComeFirst()
    {
        float[] b = [0, 0, 10, 10, 0, 0, 10, 10, 0, 0, 10, 10, 50, 50, 60, 60];
        Assert.Equal([0L, 3L], RunNms(b, [1f, 1f, 1f, 1f], 0.5));
        Assert.Equal([1L, 3L], RunNms(b, [0.5f, 1f, 1f, 1f], 0.9));
        Assert.Equal([1L, 3L], RunNms(b, [1f, float.NaN, 2f, 0.5f], 0.5));
        // -0 and +0 tie
        Assert.Equal([0L, 3L], RunNms(b, [-0f, 0f, 0f, -1f], 0.5));
    }

    [Fact]
    public void ZeroAreaAndDegenerateBoxes_FollowTheReferenceArithmetic()
    {
        // identical empty boxes: IoU 0/0 = NaN is never above the threshold, all kept
        float[] empty = [5, 5, 5, 9, 5, 5, 5, 9, 5, 5, 5, 9];
        Assert.Equal([0L, 1L, 2L], RunNms(empty, [3f, 2f, 1f], 0.5));
        // x2 < x1: area −1 against area 1 gives union 0 and IoU NaN; with itself IoU −0
        float[] degenerate = [0, 0, -1, 1, 0, 0, 1, 1, 0, 0, -1, 1];
        Assert.Equal([0L, 1L, 2L], RunNms(degenerate, [2f, 1f, 0.5f], 0.5));
        // a negative threshold suppresses everything whose IoU is ±0 (but not NaN)
        Assert.Equal([0L, 1L], RunNms(degenerate, [2f, 1f, 0.5f], -0.5));
        float[] apart = [0, 0, 1, 1, 5, 5, 6, 6];
        Assert.Equal([1L], RunNms(apart, [1f, 2f], -0.1));
    }

    [Fact]
    public void BatchedNms_ClassesNeverSuppressEachOther()
    {
        float[] b = [0, 0, 10, 10, 0, 0, 10, 10, 0, 0, 10, 10, 0, 0, 10, 10];
        float[] s = [0.1f, 0.4f, 0.3f, 0.2f];
        Assert.Equal([1L, 2L], RunBatched(b, s, [7, 7, -3, -3], 0.5));
        Assert.Equal([1L, 2L, 3L, 0L], RunBatched(b, s, [0, 1, 2, 3], 0.5));
        Assert.Equal([1L], RunBatched(b, s, [4, 4, 4, 4], 0.5));
    }

    [Fact]
    public void Nms_ManyBoxes_MatchReference()
    {
        var (b, s) = Random(77, 4000, Kind.Ties, 800f);
        Assert.Equal(NmsReference.Nms(b, s, 0.7), RunNms(b, s, 0.7));
    }

    [Fact]
    public void BoxIou_HandComputed()
    {
        using var a = Tensor.FromArray([0f, 0, 2, 2, 1, 1, 3, 3, 5, 5, 5, 8], 3, 4);
        using var b = Tensor.FromArray([1f, 0, 3, 2, 0, 0, 2, 2, 5, 5, 5, 8], 3, 4);
        using var iou = BoxIou.Forward(a, b);
        Assert.Equal([3, 3], iou.Shape.ToArray());
        Assert.Equal(
            [2f / 6, 1f, 0f, 2f / 6, 1f / 7, 0f, 0f, 0f, 0f /* empty vs empty: 0/0 → 0 */],
            iou.ToArray<float>());
    }

    [Theory]
    [InlineData(Kind.Plain)]
    [InlineData(Kind.ZeroArea)]
    [InlineData(Kind.Degenerate)]
    [InlineData(Kind.Quantised)]
    public void BoxIou_RandomBoxes_MatchReference(Kind kind)
    {
        var (a, _) = Random(1, 37, kind);
        var (b, _) = Random(2, 53, kind);
        using var ta = Tensor.FromArray(a, 37, 4);
        using var tb = Tensor.FromArray(b, 53, 4);
        using var iou = BoxIou.Forward(ta, tb);
        var want = NmsReference.BoxIou(a, b);
        var got = iou.ToArray<float>();
        for (int i = 0; i < want.Length; i++) Assert.True(Math.Abs(want[i] - got[i]) <= BoxIouTol, $"iou[{i}] {got[i]} vs {want[i]}");
        Assert.DoesNotContain(got, float.IsNaN);
    }

    [Fact]
    public void ZeroBoxes_GiveEmptyResults()
    {
        using var b = Tensor.Zeros(Device.Cpu, 0, 4);
        using var s = Tensor.Zeros(Device.Cpu, 0);
        using var i = Tensor.Empty(Device.Cpu, DataType.Int64, 0);
        using var one = Tensor.FromArray([0f, 0, 1, 1], 1, 4);
        using var k1 = Nms.Forward(b, s, 0.5);
        using var k2 = BatchedNms.Forward(b, s, i, 0.5);
        using var iou = BoxIou.Forward(b, one);
        Assert.Equal(0, k1.Length);
        Assert.Equal(DataType.Int64, k1.DataType);
        Assert.Equal(0, k2.Length);
        Assert.Equal([0, 1], iou.Shape.ToArray());
    }

    [Fact]
    public void InvalidArguments_NameTheParameter()
    {
        using var b = Tensor.FromArray([0f, 0, 1, 1, 0, 0, 2, 2], 2, 4);
        using var s = Tensor.FromArray([1f, 2f], 2);
        using var idx = Tensor.FromArray([0L, 1L], 2);
        using var b3 = Tensor.Zeros(Device.Cpu, 2, 3);
        using var b1 = Tensor.Zeros(Device.Cpu, 8);
        using var s3 = Tensor.Zeros(Device.Cpu, 3);
        using var s2d = Tensor.Zeros(Device.Cpu, 2, 1);
        using var idxFloat = Tensor.Zeros(Device.Cpu, 2);
        using var idxShort = Tensor.FromArray([0L], 1);
        using var bNaN = Tensor.FromArray([0f, 0, float.NaN, 1, 0, 0, 2, 2], 2, 4);
        using var bInf = Tensor.FromArray([0f, 0, 1, 1, 0, float.NegativeInfinity, 2, 2], 2, 4);
        using var bLong = Tensor.FromArray(new long[8], 2, 4);

        Assert.Equal("boxes", Assert.ThrowsAny<ArgumentException>(() => Nms.Forward(b3, s, 0.5)).ParamName);
        Assert.Equal("boxes", Assert.ThrowsAny<ArgumentException>(() => Nms.Forward(b1, s, 0.5)).ParamName);
        Assert.Equal("boxes", Assert.ThrowsAny<ArgumentException>(() => Nms.Forward(bLong, s, 0.5)).ParamName);
        Assert.Equal("boxes", Assert.ThrowsAny<ArgumentException>(() => Nms.Forward(bNaN, s, 0.5)).ParamName);
        Assert.Equal("boxes", Assert.ThrowsAny<ArgumentException>(() => Nms.Forward(bInf, s, 0.5)).ParamName);
        Assert.Equal("scores", Assert.ThrowsAny<ArgumentException>(() => Nms.Forward(b, s3, 0.5)).ParamName);
        Assert.Equal("scores", Assert.ThrowsAny<ArgumentException>(() => Nms.Forward(b, s2d, 0.5)).ParamName);
        Assert.Equal("iouThreshold", Assert.ThrowsAny<ArgumentException>(() => Nms.Forward(b, s, double.NaN)).ParamName);
        Assert.Equal("boxes", Assert.ThrowsAny<ArgumentException>(() => BatchedNms.Forward(bNaN, s, idx, 0.5)).ParamName);
        Assert.Equal("scores", Assert.ThrowsAny<ArgumentException>(() => BatchedNms.Forward(b, s3, idx, 0.5)).ParamName);
        Assert.Equal("idxs", Assert.ThrowsAny<ArgumentException>(() => BatchedNms.Forward(b, s, idxFloat, 0.5)).ParamName);
        Assert.Equal("idxs", Assert.ThrowsAny<ArgumentException>(() => BatchedNms.Forward(b, s, idxShort, 0.5)).ParamName);
        Assert.Equal("a", Assert.ThrowsAny<ArgumentException>(() => BoxIou.Forward(b3, b)).ParamName);
        Assert.Equal("b", Assert.ThrowsAny<ArgumentException>(() => BoxIou.Forward(b, bInf)).ParamName);
        Assert.Equal("a", Assert.ThrowsAny<ArgumentException>(() => BoxIou.Forward(bNaN, b)).ParamName);
    }
}
