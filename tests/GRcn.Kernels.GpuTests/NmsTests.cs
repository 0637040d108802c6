// nms, batched_nms and box_iou on the GPU devices against the CPU backend: keep lists equal
// element for element (order included) for random boxes at several sizes and thresholds, the
// score order alone (disjoint boxes: every box kept) with negative, tied, last-bit-apart, ±0 and
// NaN scores through the rank sort and the bitonic sort (its shared-memory chunks and global
// merge steps), identical and degenerate boxes, negative thresholds, an IoU equal to the
// threshold, batched_nms on both result-order paths with many and sparse classes and tied
// scores; box_iou within float tolerance; the IoU kernels' PTX free of contractible products.
using GRcn.Kernels.Gpu;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace GRcn.Kernels.GpuTests;

public class NmsTests
{
    /// <summary>k random boxes (x1, y1, x2, y2) in a square of side extent, sides up to maxSide.</summary>
    private static float[] RandomBoxes(int seed, int k, float extent = 100f, float maxSide = 30f)
    {
        var r = new Random(seed);
        var b = new float[4 * k];
        for (int i = 0; i < k; i++)
        {
            float x = extent * r.NextSingle(), y = extent * r.NextSingle();
            b[4 * i] = x;
            b[4 * i + 1] = y;
            b[4 * i + 2] = x + 1f + maxSide * r.NextSingle();
            b[4 * i + 3] = y + 1f + maxSide * r.NextSingle();
        }
        return b;
    }

    /// <summary>k scores uniform in [0, 1), or drawn from <paramref name="levels"/> values (ties) when levels &gt; 0.</summary>
    private static float[] RandomScores(int seed, int k, int levels = 0)
    {
        var r = new Random(seed);
        var s = new float[k];
        for (int i = 0; i < k; i++) s[i] = levels > 0 ? r.Next(levels) / (float)levels : r.NextSingle();
        return s;
    }

    private static long[] Nms(Device d, float[] boxes, float[] scores, double threshold)
    {
        int k = scores.Length;
        using var b = TestData.On(d, boxes, k, 4);
        using var s = TestData.On(d, scores, k);
        using var keep = Kernels.Nms.Forward(b, s, threshold);
        return keep.ToArray<long>();
    }

    private static long[] Batched(Device d, float[] boxes, float[] scores, long[] idxs, double threshold)
    {
        int k = scores.Length;
        using var b = TestData.On(d, boxes, k, 4);
        using var s = TestData.On(d, scores, k);
        using var c = TestData.On(d, idxs, k);
        using var keep = BatchedNms.Forward(b, s, c, threshold);
        return keep.ToArray<long>();
    }

    private static void SameNms(GpuDevice d, float[] boxes, float[] scores, double threshold, string what)
    {
        var want = Nms(Device.Cpu, boxes, scores, threshold);
        var got = Nms(d, boxes, scores, threshold);
        Assert.True(want.AsSpan().SequenceEqual(got), $"{what}: kept {Describe(got)}, expected {Describe(want)}");
    }

    private static void SameBatched(GpuDevice d, float[] boxes, float[] scores, long[] idxs, double threshold, string what)
    {
        var want = Batched(Device.Cpu, boxes, scores, idxs, threshold);
        var got = Batched(d, boxes, scores, idxs, threshold);
        Assert.True(want.AsSpan().SequenceEqual(got), $"{what}: kept {Describe(got)}, expected {Describe(want)}");
    }

    private static string Describe(long[] keep)
    {
        string head = string.Join(", ", keep.Take(12));
        return $"{keep.Length} [{head}{(keep.Length > 12 ? ", …" : "")}]";
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void NmsMatchesTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        foreach (int k in new[] { 0, 1, 2, 63, 64, 65, 500, 1500 })
        foreach (double t in k >= 500 ? new[] { 0.5 } : new[] { 0.0, 0.3, 0.5, 0.7, 1.0 })
        {
            SameNms(d, RandomBoxes(k, k), RandomScores(k + 1, k), t, $"nms k={k} t={t}");
        }
        // denser clusters and a lower threshold on a mid size
        SameNms(d, RandomBoxes(7, 500, extent: 40f), RandomScores(8, 500), 0.3, "nms dense k=500 t=0.3");
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void NmsEdgeCases(string name)
    {
        var d = GpuDevices.Get(name);
        // many tied scores
        SameNms(d, RandomBoxes(11, 300, extent: 50f), RandomScores(12, 300, levels: 4), 0.5, "ties");
        // identical boxes (all but the first of each copy set suppressed for t < 1; none at t = 1)
        var one = RandomBoxes(13, 20);
        var copies = new float[4 * 100];
        for (int i = 0; i < 100; i++) Array.Copy(one, 4 * (i % 20), copies, 4 * i, 4);
        foreach (double t in new[] { 0.5, 1.0 }) SameNms(d, copies, RandomScores(14, 100, levels: 3), t, $"identical t={t}");
        // degenerate boxes: zero width, zero height, points, inverted (x2 < x1), mixed with normal ones
        var deg = RandomBoxes(15, 130, extent: 20f);
        for (int i = 0; i < 130; i += 2)
        {
            switch (i % 8)
            {
                case 0: deg[4 * i + 2] = deg[4 * i]; break;
                case 2: deg[4 * i + 3] = deg[4 * i + 1]; break;
                case 4: deg[4 * i + 2] = deg[4 * i]; deg[4 * i + 3] = deg[4 * i + 1]; break;
                default: (deg[4 * i], deg[4 * i + 2]) = (deg[4 * i + 2], deg[4 * i]); break;
            }
        }
        foreach (double t in new[] { -0.5, -0.0, 0.0, 0.5, 1.0 }) SameNms(d, deg, RandomScores(16, 130), t, $"degenerate t={t}");
        // negative thresholds: disjoint boxes suppress each other
        SameNms(d, RandomBoxes(17, 70), RandomScores(18, 70), -0.1, "negative threshold");
        // an IoU equal to the threshold keeps the box: [0, 0, 1, 1] against [0, 0, 3, 1] is 1 / 3,
        // exactly the threshold in float64 (kept); [0, 0, 2, 1] and [1, 0, 3, 1] are at 2 / 3 (dropped)
        Assert.Equal([0L, 1L], Nms(d, [0, 0, 3, 1, 0, 0, 1, 1, 0, 0, 2, 1, 1, 0, 3, 1], [0.9f, 0.8f, 0.7f, 0.6f], 1.0 / 3));
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void ScoreOrderIsTheStableDescendingOrder(string name)
    {
        var d = GpuDevices.Get(name);
        // disjoint unit boxes on a line: nothing is suppressed, so keep is the score order itself
        static float[] Disjoint(int k)
        {
            var b = new float[4 * k];
            for (int i = 0; i < k; i++) (b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]) = (2f * i, 0f, 2f * i + 1f, 1f);
            return b;
        }
        float[] special =
        [
            0f, -0f, 1f, -1f, float.NaN, 1f, float.BitIncrement(1f), float.BitDecrement(1f), -float.Epsilon, float.Epsilon,
            float.NaN, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, -float.MaxValue, -0f, 0f, float.BitDecrement(-1f),
            -float.NaN, 0.5f, 0.5f, -0.5f, -0.5f,
        ];
        var sp = new float[64];
        for (int i = 0; i < sp.Length; i++) sp[i] = special[(i * 7) % special.Length];
        var want = Nms(Device.Cpu, Disjoint(sp.Length), sp, 0.5);
        Assert.Equal(sp.Length, want.Length);
        Assert.Equal(want, Nms(d, Disjoint(sp.Length), sp, 0.5));

        // negative scores, ties and last-bit neighbours through the rank sort (chunk −1) and the
        // bitonic sort: small shared chunks put most of it in the global merge steps
        var r = new Random(21);
        foreach (var (k, chunk) in new[] { (700, -1), (300, 2), (513, 16), (700, 64), (64, 0) })
        {
            var s = new float[k];
            for (int i = 0; i < k; i++)
            {
                float v = r.Next(40) / 8f - 2.5f;
                s[i] = r.Next(3) switch { 0 => v, 1 => float.BitIncrement(v), _ => r.NextSingle() * 4f - 2f };
                if (r.Next(50) == 0) s[i] = float.NaN;
            }
            GpuBackend.NmsSortChunk = Math.Max(chunk, 0);
            GpuBackend.NmsForceBitonic = chunk < 0 ? 0 : 1;
            try
            {
                Assert.Equal(Nms(Device.Cpu, Disjoint(k), s, 0.5), Nms(d, Disjoint(k), s, 0.5));
            }
            finally
            {
                GpuBackend.NmsSortChunk = 0;
                GpuBackend.NmsForceBitonic = 0;
            }
        }
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void BatchedNmsMatchesTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        // offset path (≤ 1000 boxes): the global score order; per-class path (> 1000): torch's unstable sort
        foreach (var (k, classes, levels) in new[] { (1, 1, 0), (65, 3, 0), (500, 80, 0), (1000, 20, 5), (1001, 80, 0), (1200, 40, 6) })
        {
            var boxes = RandomBoxes(100 + k, k, extent: 60f);
            var scores = RandomScores(200 + k, k, levels);
            var r = new Random(300 + k);
            var idxs = new long[k];
            for (int i = 0; i < k; i++) idxs[i] = r.Next(classes);
            SameBatched(d, boxes, scores, idxs, 0.5, $"batched k={k} classes={classes} levels={levels}");
        }
        // sparse, negative and huge class ids, NaN scores, on both paths
        foreach (int k in new[] { 200, 1050 })
        {
            var boxes = RandomBoxes(400 + k, k, extent: 40f);
            var scores = RandomScores(500 + k, k, levels: 7);
            long[] ids = [-7, 0, 3, 1L << 40, long.MinValue, long.MaxValue, 1000];
            var r = new Random(600 + k);
            var idxs = new long[k];
            for (int i = 0; i < k; i++) idxs[i] = ids[r.Next(ids.Length)];
            scores[5] = float.NaN;
            scores[17] = float.NaN;
            SameBatched(d, boxes, scores, idxs, 0.4, $"batched sparse ids k={k}");
        }
    }

    /// <summary>
    /// The float64 products of the IoU kernels are PTX mul.rn.f64, which the PTX assembler never
    /// contracts into an FMA (ILGPU's plain mul.f64 may be): the threshold decisions depend on
    /// the last bit, so a fused union would make cuda:N disagree with the CPU near the threshold.
    /// </summary>
    [Theory]
    [InlineData(nameof(NmsKernels.Mask))]
    [InlineData(nameof(NmsKernels.Gather))]
    [InlineData(nameof(NmsKernels.BoxIou))]
    public void Float64ProductsAreNeverFused(string kernel)
    {
        var method = typeof(NmsKernels).GetMethod(kernel, System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.Public)!;
        string ptx = PtxCompileTests.Ptx(method, CudaArchitecture.SM_70, CudaInstructionSet.ISA_70);
        // each Mul also leaves its emulator branch, a plain mul.f64 behind a constant-false
        // predicate (CudaAsm.IsSupported is not folded by ILGPU, the branch is dead in ptxas):
        // any other plain product shows up as one plain mul.f64 more than mul.rn.f64
        int rn = Count(ptx, "mul.rn.f64"), plain = Count(ptx, "mul.f64");
        Assert.True(rn >= 1 && plain == rn, $"{kernel}: {rn} mul.rn.f64, {plain} mul.f64");
        Assert.DoesNotContain("fma.rn.f64", ptx);
    }

    private static int Count(string text, string what)
    {
        int n = 0;
        for (int at = text.IndexOf(what, StringComparison.Ordinal); at >= 0; at = text.IndexOf(what, at + 1, StringComparison.Ordinal)) n++;
        return n;
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void BoxIouMatchesTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        foreach (var (na, nb) in new[] { (1, 1), (7, 33), (40, 65) })
        {
            var a = RandomBoxes(na, na, extent: 30f);
            var b = RandomBoxes(nb + 50, nb, extent: 30f);
            // degenerate and identical boxes: two empty boxes give 0 (0/0), identical ones 1
            a[2] = a[0];
            b[2] = b[0];
            b[3] = b[1];
            if (nb > 1) Array.Copy(a, 0, b, 4, 4);
            using var ca = TestData.On(Device.Cpu, a, na, 4);
            using var cb = TestData.On(Device.Cpu, b, nb, 4);
            using var ga = ca.To(d);
            using var gb = cb.To(d);
            using var want = BoxIou.Forward(ca, cb);
            using var got = BoxIou.Forward(ga, gb);
            Close.Tensors(want, got, 1e-6, 1e-7, $"box_iou {na}x{nb}");
        }
        using var empty = BoxIou.Forward(Tensor.Empty(d, DataType.Float32, 0, 4), Tensor.Empty(d, DataType.Float32, 3, 4));
        Assert.Equal("(0, 3)", empty.ShapeString);
    }
}
