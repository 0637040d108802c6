// The losses (softmax cross-entropy, smooth-L1, binary cross-entropy with logits), their backward,
// the sum of squares and the dropout mask on the GPU devices against the CPU backend: random
// shapes with and without weights, β = 0 (L1), extreme logits, empty selections, sums spread over
// many groups, and bit-identical results run to run.
namespace GRcn.Kernels.GpuTests;

public class LossTests
{
    private static (int[] Indices, float[] Targets) Selection(int seed, long length, int count)
    {
        var rng = new Random(seed);
        var indices = Enumerable.Range(0, (int)length).OrderBy(_ => rng.Next()).Take(count).ToArray();
        return (indices, TestData.Uniform(seed + 1, count, -2f, 2f));
    }

    /// <summary>Runs a loss on the CPU and on d over the same x; compares the scalar and the gradient.</summary>
    private static void Compare(GpuDevice d, float[] x, int[] shape, Action<Tensor, Tensor, Tensor> loss, string what)
    {
        using var xc = Tensor.FromSpan<float>(Device.Cpu, x, shape);
        using var xg = xc.To(d);
        using Tensor lc = Tensor.Empty(Device.Cpu, DataType.Float32, 1), gc = Tensor.Empty(Device.Cpu, DataType.Float32, shape);
        using Tensor lg = Tensor.Empty(d, DataType.Float32, 1), gg = Tensor.Empty(d, DataType.Float32, shape);
        gg.Fill(float.NaN);
        loss(xc, lc, gc);
        loss(xg, lg, gg);
        // double sums in another order, exponentials of another library on a GPU
        Close.Tensors(lc, lg, 1e-6, 1e-7, $"{what}: loss");
        Close.Tensors(gc, gg, 1e-5, 1e-8, $"{what}: gradient");
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void SoftmaxCrossEntropyMatchesTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        foreach (var (rows, k, seed) in new[] { (1, 2, 1), (37, 21, 2), (300, 81, 3), (70, 5, 4) })
        {
            var x = TestData.Uniform(seed, rows * k, -8f, 8f);
            var rng = new Random(seed);
            var labels = Enumerable.Range(0, rows).Select(_ => rng.Next(k)).ToArray();
            var weights = TestData.Uniform(seed + 7, rows, 0.5f, 2f);
            Compare(d, x, [rows, k], (t, l, g) => Loss.SoftmaxCrossEntropy(t, labels, [], rows, l, g), $"cross-entropy {rows}×{k}");
            Compare(d, x, [rows, k], (t, l, g) => Loss.SoftmaxCrossEntropy(t, labels, weights, 512, l, g), $"weighted cross-entropy {rows}×{k}");
        }
        // no rows: loss 0
        using var empty = Tensor.Empty(d, DataType.Float32, 0, 3);
        using var loss = Tensor.Empty(d, DataType.Float32, 1);
        using var grad = Tensor.Empty(d, DataType.Float32, 0, 3);
        Loss.SoftmaxCrossEntropy(empty, [], [], 1, loss, grad);
        Assert.Equal(0f, loss.ToArray<float>()[0]);
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void SmoothL1MatchesTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        foreach (var (length, count, seed) in new[] { (8, 4, 1), (1000, 256, 2), (4 * 2 * 36 * 9, 1024, 3), (50, 0, 4) })
        {
            var x = TestData.Uniform(seed, length, -2f, 2f);
            var (indices, targets) = Selection(seed, length, count);
            var weights = TestData.Uniform(seed + 5, count / 4, 0f, 3f);
            Compare(d, x, [length], (t, l, g) => Loss.SmoothL1(t, indices, targets, [], 4, 1f / 9, Math.Max(count, 1), l, g), $"smooth-L1 {count} of {length}");
            Compare(d, x, [length], (t, l, g) => Loss.SmoothL1(t, indices, targets, weights, 4, 1f / 9, 512, l, g), $"weighted smooth-L1 {count} of {length}");
            Compare(d, x, [length], (t, l, g) => Loss.SmoothL1(t, indices, targets, [], 4, 0f, 7, l, g), $"L1 {count} of {length}");
        }
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void BinaryCrossEntropyWithLogitsMatchesTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        foreach (var (length, count, seed) in new[] { (3, 3, 1), (2 * 9 * 19 * 25, 512, 2), (10, 0, 3) })
        {
            var x = TestData.Uniform(seed, length, -6f, 6f);
            var (indices, _) = Selection(seed, length, count);
            var targets = indices.Select(i => (float)(i % 2)).ToArray();
            Compare(d, x, [length], (t, l, g) => Loss.BinaryCrossEntropyWithLogits(t, indices, targets, Math.Max(count, 1), l, g), $"BCE {count} of {length}");
        }
        // the stable form at extreme logits: finite loss, gradients σ(z) − t
        float[] extreme = [-100f, 100f, -30f, 30f];
        Compare(d, extreme, [4], (t, l, g) => Loss.BinaryCrossEntropyWithLogits(t, [0, 1, 2, 3], [1f, 0f, 0f, 1f], 4, l, g), "BCE extreme logits");
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void HarmonicWeightsMatchTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        var coding = new BoxCoding(10f, 10f, 5f, 5f, 4.135166556742356f);
        foreach (var (r, k, fg, seed) in new[] { (40, 6, 9, 1), (70, 3, 0, 2), (5, 21, 5, 3) })
        {
            var logits = TestData.Uniform(seed, r * k, -4f, 4f);
            var deltas = TestData.Uniform(seed + 1, r * 4 * k, -1f, 1f);
            var corners = TestData.Uniform(seed + 2, 4 * r, 0f, 50f);
            var rois = new float[5 * r];
            for (int i = 0; i < r; i++)
            {
                rois[5 * i + 1] = corners[4 * i];
                rois[5 * i + 2] = corners[4 * i + 1];
                rois[5 * i + 3] = corners[4 * i] + 4f + corners[4 * i + 2] / 2;
                rois[5 * i + 4] = corners[4 * i + 1] + 4f + corners[4 * i + 3] / 2;
            }
            var rng = new Random(seed);
            var rows = Enumerable.Range(0, r).OrderBy(_ => rng.Next()).Take(fg).ToArray();
            var classes = rows.Select(_ => 1 + rng.Next(k - 1)).ToArray();
            // ground truth near each RoI, so IoUs spread over (0, 1)
            var gt = rows.SelectMany(row => new[] { rois[5 * row + 1] + 1f, rois[5 * row + 2] - 1f, rois[5 * row + 3] + 2f, rois[5 * row + 4] }).ToArray();
            var (cwCpu, bwCpu) = Harmonic(Device.Cpu, logits, deltas, rois, r, k, rows, classes, gt, coding);
            var (cwGpu, bwGpu) = Harmonic(d, logits, deltas, rois, r, k, rows, classes, gt, coding);
            Close.Assert(cwCpu, cwGpu, 1e-5, 1e-6, $"class weights {r}×{k}, {fg} foreground");
            Close.Assert(bwCpu, bwGpu, 1e-5, 1e-6, $"box weights {r}×{k}, {fg} foreground");
            Assert.Contains(cwCpu, w => w > 1f == (fg > 0));
        }
    }

    private static (float[] ClassWeights, float[] BoxWeights) Harmonic(Device device, float[] logits, float[] deltas, float[] rois, int r, int k,
        int[] rows, int[] classes, float[] gt, BoxCoding coding)
    {
        using var l = TestData.On(device, logits, r, k);
        using var dl = TestData.On(device, deltas, r, 4 * k);
        using var ro = TestData.On(device, rois, r, 5);
        using var cw = Tensor.Empty(device, DataType.Float32, r);
        using var bw = Tensor.Empty(device, DataType.Float32, rows.Length);
        Loss.HarmonicWeights(l, dl, ro, rows, classes, gt, 1f, coding, cw, bw);
        return (cw.ToArray<float>(), bw.ToArray<float>());
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void BackwardScalesByTheUpstreamGradientOnTheDevice(string name)
    {
        var d = GpuDevices.Get(name);
        var values = TestData.Uniform(9, 1001);
        using var grad = TestData.On(d, values, 1001);
        using var up = TestData.On(d, [1f], 1);
        using var gx = Tensor.Empty(d, DataType.Float32, 1001);
        Loss.Backward(grad, up, gx);
        Assert.Equal(values, gx.ToArray<float>());
        up.Fill(-0.5f);
        Loss.Backward(grad, up, gx);
        Assert.Equal(values.Select(v => -0.5f * v).ToArray(), gx.ToArray<float>());
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void SumOfSquaresMatchesADoubleSumAndRepeatsBitForBit(string name)
    {
        var d = GpuDevices.Get(name);
        // 9000 elements: more than 256 groups' worth of 32 threads, so threads take strided shares
        int[] lengths = [1, 0, 9000, 33, 257];
        var data = lengths.Select((n, i) => TestData.Uniform(20 + i, n, -3f, 3f)).ToArray();
        var tensors = data.Select(a => TestData.On(d, a, a.Length)).ToArray();
        try
        {
            double want = data.SelectMany(a => a).Sum(v => (double)v * v);
            double got = Loss.SumOfSquares(tensors);
            Assert.Equal(want, got, want * 1e-12);
            Assert.Equal(BitConverter.DoubleToInt64Bits(got), BitConverter.DoubleToInt64Bits(Loss.SumOfSquares(tensors)));
            Assert.Equal(0.0, Loss.SumOfSquares([]));
        }
        finally
        {
            foreach (var t in tensors) t.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void DropoutMaskIsTheCpuMaskBitForBit(string name)
    {
        var d = GpuDevices.Get(name);
        foreach (var (n, p, state) in new[] { (1, 0.5f, 0UL), (1000, 0.5f, 12345UL), (4097, 0.1f, ulong.MaxValue - 3), (64, 0f, 7UL) })
        {
            using var cpu = Tensor.Empty(Device.Cpu, DataType.Float32, n);
            using var gpu = Tensor.Empty(d, DataType.Float32, n);
            Elementwise.DropoutMask(cpu, state, p);
            Elementwise.DropoutMask(gpu, state, p);
            Assert.Equal(cpu.ToArray<float>(), gpu.ToArray<float>());
        }
    }
}
