namespace GRcn.Kernels.Tests;

public class RoiAlignTests
{
    /// <summary>The kernel accumulates float32 values with float32 weights, the oracle works in double.</summary>
    private const double ForwardRtol = 1e-5, ForwardAtol = 1e-5;

    /// <summary>Backward scatters float32 gradients; the oracle sums in double.</summary>
    private const double BackwardRtol = 1e-5, BackwardAtol = 2e-5;

    /// <summary>Hand-computed cases: exact up to float32 rounding of small numbers.</summary>
    private const double HandTolerance = 1e-6;



    /// <summary>Runs forward and backward through the public API and compares both with the oracle.</summary>
    private static void CheckAgainstReference(float[] xv, int n, int c, int h, int w, float[] rv, int ph, int pw,
        double scale, int sampling, bool aligned, Random rng)
    {
        int k = rv.Length / 5;
        var options = new RoiAlignOptions(ph, pw, scale, sampling, aligned);
        using var x = Tensor.FromArray(xv, n, c, h, w);
        using var rois = Tensor.FromArray(rv, k, 5);
        using var y = RoiAlign.Forward(x, rois, options);
        Assert.Equal([k, c, ph, pw], y.Shape.ToArray());
        TestData.AssertClose(RoiAlignReference.Forward(xv, n, c, h, w, rv, ph, pw, scale, sampling, aligned), y.ToArray<float>(), ForwardRtol, ForwardAtol, "y");

        float[] gyv = TestData.Normal(rng, k * c * ph * pw);
        using var gy = Tensor.FromArray(gyv, k, c, ph, pw);
        using var gx = RoiAlign.Backward(gy, rois, [n, c, h, w], options);
        TestData.AssertClose(RoiAlignReference.Backward(gyv, rv, n, c, h, w, ph, pw, scale, sampling, aligned), gx.ToArray<float>(), BackwardRtol, BackwardAtol, "gradX");
    }

    public static TheoryData<int, int, int, int, int, int, int, double, int, bool> RandomCases => new()
    {
        // n, c, h, w, k, ph, pw, scale, sampling, aligned
        { 1, 1, 5, 7, 12, 7, 7, 1.0 / 16, 0, true },
        { 2, 3, 12, 16, 12, 7, 7, 1.0 / 16, 2, true },
        { 2, 3, 12, 16, 12, 7, 7, 1.0 / 16, 2, false },
        { 3, 2, 9, 6, 12, 14, 14, 1.0 / 8, 1, false },
        { 2, 2, 8, 11, 18, 1, 1, 0.5, 0, false },
        { 2, 2, 8, 11, 18, 1, 1, 0.5, 3, true },
        { 1, 3, 10, 10, 12, 3, 5, 1.0, 0, true },
        { 1, 3, 10, 10, 12, 3, 5, 1.0, 3, false },
        { 2, 24, 13, 17, 24, 7, 7, 1.0 / 16, 2, true }, // enough work to run on several threads
    };

    [Theory]
    [MemberData(nameof(RandomCases))]
    public void MatchesReferenceOnRandomInputs(int n, int c, int h, int w, int k, int ph, int pw, double scale, int sampling, bool aligned)
    {
        var rng = new Random(n * 1000 + c * 100 + h * 10 + k + sampling);
        float[] xv = TestData.Normal(rng, n * c * h * w);
        float[] rv = RoiPoolTests.RandomRois(rng, k, n, h, w, scale);
        CheckAgainstReference(xv, n, c, h, w, rv, ph, pw, scale, sampling, aligned, rng);
    }

    /// <summary>
    /// Random shapes (channel counts around the 8- and 32-channel blocks, several images, fixed
    /// and adaptive sampling, RoIs of every kind) through the scalar and the channel-blocked paths.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void BothPathsMatchReferenceOnRandomShapes(bool blocked)
    {
        var rng = new Random(blocked ? 5151 : 5150);
        Cpu.RoiAlignCpu.Path = blocked ? Cpu.RoiKernelPath.Blocked : Cpu.RoiKernelPath.Scalar;
        try
        {
            for (int trial = 0; trial < 24; trial++)
            {
                int n = rng.Next(1, 4), c = trial < 4 ? 32 * (trial + 1) : rng.Next(1, 75), h = rng.Next(1, 20), w = rng.Next(1, 20);
                int k = rng.Next(1, 14), ph = rng.Next(1, 9), pw = rng.Next(1, 9), sampling = rng.Next(0, 4);
                double scale = new[] { 1.0, 0.5, 0.25, 1.0 / 16 }[rng.Next(4)];
                float[] xv = TestData.Normal(rng, n * c * h * w);
                float[] rv = RoiPoolTests.RandomRois(rng, k, n, h, w, scale);
                CheckAgainstReference(xv, n, c, h, w, rv, ph, pw, scale, sampling, trial % 2 == 0, rng);
            }
            // RoIs whose points overflow one run: whole bins in pieces, and one bin's points in pieces.
            float[] xl = TestData.Normal(rng, 2 * 40 * 20 * 24);
            float[] rl = [1, -20, -18, 41, 42, 0, 3, 2, 17, 15, 1, 50, 50, -10, -12, 0, -30, -30, 60, 60];
            CheckAgainstReference(xl, 2, 40, 20, 24, rl, 1, 1, 1.0, 0, true, rng);
            CheckAgainstReference(xl, 2, 40, 20, 24, rl, 2, 3, 1.0, 0, false, rng);
            CheckAgainstReference(xl, 2, 40, 20, 24, rl, 7, 7, 1.0, 0, true, rng);
            CheckAgainstReference(xl, 2, 40, 20, 24, rl, 9, 5, 1.0, 12, false, rng);
        }
        finally
        {
            Cpu.RoiAlignCpu.Path = Cpu.RoiKernelPath.Auto;
        }
    }

    [Fact]
    public void BinsWithMoreSamplePointsThanABlockMatchReference()
    {
        // Adaptive sampling of RoIs tens of cells across: 60 × 61 sample points in one bin.
        var rng = new Random(7);
        float[] xv = TestData.Normal(rng, 2 * 20 * 24);
        float[] rv = [0, -20, -18, 41, 42, 0, 3, 2, 17, 15, 0, 50, 50, -10, -12];
        CheckAgainstReference(xv, 1, 2, 20, 24, rv, 1, 1, 1.0, 0, true, rng);
        CheckAgainstReference(xv, 1, 2, 20, 24, rv, 2, 3, 1.0, 0, false, rng);
    }

    /// <summary>x[h, w] = 4h + w on a 4×4 map: bilinear interpolation inside the map is exact, 4y + x.</summary>
    private static float[] Ramp() => Enumerable.Range(0, 16).Select(i => (float)i).ToArray();

    private static float AlignOne(float[] roi, int sampling, bool aligned, int ph = 1, int pw = 1)
    {
        using var x = Tensor.FromArray(Ramp(), 1, 1, 4, 4);
        using var rois = Tensor.FromArray(roi, 1, 5);
        using var y = RoiAlign.Forward(x, rois, new RoiAlignOptions(ph, pw, 1.0, sampling, aligned));
        return y.ToArray<float>()[0];
    }

    [Theory]
    [InlineData(1f, 1f, 3f, 3f, 2, false, 10.0)]   // samples at 1.5 and 2.5 on both axes: 4·2 + 2
    [InlineData(1f, 1f, 3f, 3f, 2, true, 7.5)]     // shifted by −0.5: samples at 1 and 2
    [InlineData(1f, 1f, 3f, 3f, 0, false, 10.0)]   // adaptive: ceil(2 / 1) = 2 per axis
    [InlineData(0f, 3f, 1f, 4f, 1, false, 12.5)]   // y = 3.5 ≥ H − 1: clamped to row 3, x = 0.5
    [InlineData(0f, -1f, 1f, 0f, 1, false, 0.5)]   // y = −0.5 ∈ [−1, 0]: raised to 0
    [InlineData(0f, -3f, 1f, -2f, 1, false, 0.0)]  // y = −2.5 < −1: the sample contributes 0
    [InlineData(0f, -3f, 1f, 1f, 2, false, 0.25)]  // y ∈ {−2, 0}, x ∈ {0.25, 0.75}: (0.25 + 0.75 + 0 + 0) / 4
    [InlineData(1f, 1f, 1.2f, 1.2f, 0, false, 7.5)] // tiny RoI raised to 1 cell: sample at 1.5
    [InlineData(1f, 1f, 1.2f, 1.2f, 0, true, 3.0)] // aligned tiny RoI: 1 sample at 0.5 + 0.1
    [InlineData(3f, 3f, 1f, 1f, 0, true, 0.0)]     // aligned x2 < x1, adaptive: grid ceil(−2) < 0, no samples
    [InlineData(3f, 3f, 1f, 1f, 1, true, 7.5)]     // same RoI, 1 sample: 2.5 − 2·0.5 = 1.5
    [InlineData(3f, 3f, 1f, 1f, 1, false, 15.0)]   // not aligned: size raised to 1, sample (3.5, 3.5) clamped to cell (3, 3)
    public void HandComputedValues(float x1, float y1, float x2, float y2, int sampling, bool aligned, double want)
    {
        Assert.Equal(want, AlignOne([0, x1, y1, x2, y2], sampling, aligned), HandTolerance);
    }

    /// <summary>
    /// torchvision's float32 kernel computes the RoI size and the adaptive grid in float: y from
    /// 0.1f to 14.1f is 14.00000038 in double (grid ceil(2.00000005) = 3) but rounds to 14 in
    /// float (grid ceil(2) = 2). On x[h, w] = h² with 7 × 1 bins, bin i then samples rows
    /// 2i + 0.6 and 2i + 1.6 only, and its mean is 4i² + 4.4i + 1.7 (three samples give about
    /// 0.02 less). Forward and backward both follow the two-sample grid.
    /// </summary>
    [Fact]
    public void AdaptiveGridIsTheCeilingOfTheFloatQuotient()
    {
        float[] xv = new float[16 * 2];
        for (int h = 0; h < 16; h++) xv[2 * h] = xv[2 * h + 1] = h * h;
        using var x = Tensor.FromArray(xv, 1, 1, 16, 2);
        using var rois = Tensor.FromArray(new float[] { 0, 0, 0.1f, 1, 14.1f }, 1, 5);
        var options = new RoiAlignOptions(7, 1, 1.0, 0, false);
        using var y = RoiAlign.Forward(x, rois, options);
        float[] got = y.ToArray<float>();
        for (int i = 0; i < 7; i++) Assert.Equal(4.0 * i * i + 4.4 * i + 1.7, got[i], 1e-4);

        // Bin 0's gradient: two samples (rows 0.6 and 1.6, column 0.5), each carrying 1/2, so
        // row 0 gets 0.4 · 1/2, row 1 gets (0.6 + 0.4) · 1/2, row 2 gets 0.6 · 1/2, split over both columns.
        var gyv = new float[7];
        gyv[0] = 1;
        using var gy = Tensor.FromArray(gyv, 1, 1, 7, 1);
        using var gx = RoiAlign.Backward(gy, rois, [1, 1, 16, 2], options);
        float[] g = gx.ToArray<float>();
        double[] wantRows = [0.1, 0.25, 0.15];
        for (int h = 0; h < 16; h++)
            for (int w = 0; w < 2; w++)
                Assert.Equal(h < 3 ? wantRows[h] : 0.0, g[2 * h + w], 1e-6);
    }

    [Fact]
    public void BackwardSpreadsGradientOverFourNeighbours()
    {
        using var rois = Tensor.FromArray(new float[] { 0, 1, 1, 2, 2, 0, 1, 1, 2, 2 }, 2, 5);
        using var gy = Tensor.FromArray(new float[] { 4, 8 }, 2, 1, 1, 1);
        // One sample at (1.5, 1.5): a quarter of each gradient to cells (1,1), (1,2), (2,1), (2,2); both RoIs add up.
        using var gx = RoiAlign.Backward(gy, rois, [1, 1, 4, 4], new RoiAlignOptions(1, 1, 1.0, 1, false));
        var want = new float[16];
        want[5] = want[6] = want[9] = want[10] = 3;
        Assert.Equal(want, gx.ToArray<float>());
    }

    [Fact]
    public void BackwardDividesByTheFullSampleCountAndSkipsOutsidePoints()
    {
        // Grid 2×2: y ∈ {−2 (outside), 0}, x ∈ {0.25, 0.75}; each inside point carries 1/4 of the gradient.
        using var rois = Tensor.FromArray(new float[] { 0, 0, -3, 1, 1 }, 1, 5);
        using var gy = Tensor.FromArray(new float[] { 8 }, 1, 1, 1, 1);
        using var gx = RoiAlign.Backward(gy, rois, [1, 1, 4, 4], new RoiAlignOptions(1, 1, 1.0, 2, false));
        var want = new float[16];
        want[0] = 2 * (0.75f + 0.25f);
        want[1] = 2 * (0.25f + 0.75f);
        Assert.Equal(want, gx.ToArray<float>());
    }

    [Fact]
    public void NonFiniteValuesFollowTheReference()
    {
        float[] xv = Ramp();
        xv[0] = float.NaN;
        using var x = Tensor.FromArray(xv, 1, 1, 4, 4);
        // RoI 0 is wholly outside, yet the reference adds 0 · x[0] for its outside points: NaN.
        // RoI 1 samples only (2.5, 2.5): finite.
        using var rois = Tensor.FromArray(new float[] { 0, 10, 10, 12, 12, 0, 2, 2, 3, 3 }, 2, 5);
        var o = new RoiAlignOptions(1, 1, 1.0, 1, false);
        using var y = RoiAlign.Forward(x, rois, o);
        float[] yv = y.ToArray<float>();
        Assert.True(float.IsNaN(yv[0]));
        Assert.Equal(12.5f, yv[1]);

        // Backward skips outside points, so an infinite gradient there leaves gradX untouched.
        using var gy = Tensor.FromArray(new float[] { float.PositiveInfinity, 1 }, 2, 1, 1, 1);
        using var gx = RoiAlign.Backward(gy, rois, [1, 1, 4, 4], o);
        float[] g = gx.ToArray<float>();
        Assert.Equal(0f, g[0]);
        Assert.Equal(1f, g.Sum());
    }

    [Fact]
    public void SelectsTheImageOfEachRoiAndOverwritesGradX()
    {
        float[] xv = new float[2 * 2 * 4 * 4];
        for (int i = 0; i < xv.Length; i++) xv[i] = i % 16 + 100 * (i / 16);
        using var x = Tensor.FromArray(xv, 2, 2, 4, 4);
        using var rois = Tensor.FromArray(new float[] { 1, 1, 1, 3, 3, 0, 1, 1, 3, 3 }, 2, 5);
        var o = new RoiAlignOptions(1, 1, 1.0, 2, false);
        using var y = RoiAlign.Forward(x, rois, o);
        Assert.Equal(new float[] { 210, 310, 10, 110 }, y.ToArray<float>());

        using var gy = Tensor.FromArray(new float[] { 4, 8, 12, 16 }, 2, 2, 1, 1);
        using var gx = Tensor.FromArray(Enumerable.Repeat(5f, 64).ToArray(), 2, 2, 4, 4);
        RoiAlign.Backward(gy, rois, gx, o);
        float[] g = gx.ToArray<float>();
        // Samples at 1.5 and 2.5 on both axes: along each axis cells 1, 2, 3 get 1/4, 1/2, 1/4 of the gradient.
        double[] axis = [0, 0.25, 0.5, 0.25];
        double[] planeGrad = [12, 16, 4, 8]; // (image 0, ch 0), (0, 1), (1, 0), (1, 1)
        for (int p = 0; p < 4; p++)
            for (int i = 0; i < 16; i++)
                Assert.Equal(planeGrad[p] * axis[i / 4] * axis[i % 4], g[p * 16 + i], HandTolerance);
    }

    [Fact]
    public void ZeroRoisGiveEmptyOutputAndZeroGradient()
    {
        using var x = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6, 7, 8 }, 1, 2, 2, 2);
        using var rois = Tensor.Zeros(Device.Cpu, 0, 5);
        var o = new RoiAlignOptions(3, 2, 0.5, 2, true);
        using var y = RoiAlign.Forward(x, rois, o);
        Assert.Equal([0, 2, 3, 2], y.Shape.ToArray());
        using var gy = Tensor.Zeros(Device.Cpu, 0, 2, 3, 2);
        using var gx = Tensor.FromArray(Enumerable.Repeat(7f, 8).ToArray(), 1, 2, 2, 2);
        RoiAlign.Backward(gy, rois, gx, o);
        Assert.All(gx.ToArray<float>(), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void RejectsBadArguments()
    {
        using var x = Tensor.Zeros(Device.Cpu, 2, 3, 4, 4);
        using var x3 = Tensor.Zeros(Device.Cpu, 3, 4, 4);
        using var rois = Tensor.FromArray(new float[] { 1, 0, 0, 2, 2 }, 1, 5);
        var o = new RoiAlignOptions(2, 2, 1.0, 0, true);

        Assert.Equal("x", Assert.ThrowsAny<ArgumentException>(() => RoiAlign.Forward(x3, rois, o)).ParamName);
        using var xl = Tensor.Zeros(Device.Cpu, DataType.Int64, 2, 3, 4, 4);
        Assert.Equal("x", Assert.ThrowsAny<ArgumentException>(() => RoiAlign.Forward(xl, rois, o)).ParamName);
        using var rois6 = Tensor.Zeros(Device.Cpu, 1, 6);
        Assert.Equal("rois", Assert.ThrowsAny<ArgumentException>(() => RoiAlign.Forward(x, rois6, o)).ParamName);
        using var roisL = Tensor.Zeros(Device.Cpu, DataType.Int64, 1, 5);
        Assert.Equal("rois", Assert.ThrowsAny<ArgumentException>(() => RoiAlign.Forward(x, roisL, o)).ParamName);
        foreach (float bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
        {
            using var nonFinite = Tensor.FromArray(new float[] { 0, 0, 0, bad, 2 }, 1, 5);
            Assert.Equal("rois", Assert.ThrowsAny<ArgumentException>(() => RoiAlign.Forward(x, nonFinite, o)).ParamName);
        }
        using var badBatch = Tensor.FromArray(new float[] { 2, 0, 0, 2, 2 }, 1, 5);
        Assert.Equal("rois", Assert.ThrowsAny<ArgumentException>(() => RoiAlign.Forward(x, badBatch, o)).ParamName);
        Assert.Equal("OutputH", Assert.ThrowsAny<ArgumentException>(() => RoiAlign.Forward(x, rois, o with { OutputH = 0 })).ParamName);
        Assert.Equal("OutputW", Assert.ThrowsAny<ArgumentException>(() => RoiAlign.Forward(x, rois, o with { OutputW = 0 })).ParamName);
        Assert.Equal("SpatialScale", Assert.ThrowsAny<ArgumentException>(() => RoiAlign.Forward(x, rois, o with { SpatialScale = -1 })).ParamName);
        Assert.Equal("SpatialScale", Assert.ThrowsAny<ArgumentException>(() => RoiAlign.Forward(x, rois, o with { SpatialScale = double.PositiveInfinity })).ParamName);
        // An adaptive grid of 10^6 × 10^6 points per bin cannot be sampled.
        using var enormous = Tensor.FromArray(new float[] { 0, -1e6f, -1e6f, 1e6f, 1e6f }, 1, 5);
        Assert.Equal("rois", Assert.ThrowsAny<ArgumentException>(() => RoiAlign.Forward(x, enormous, o with { OutputH = 1, OutputW = 1 })).ParamName);

        using var gy = Tensor.Zeros(Device.Cpu, 1, 3, 2, 2);
        using var gyBad = Tensor.Zeros(Device.Cpu, 2, 3, 2, 2);
        Assert.Equal("gradY", Assert.ThrowsAny<ArgumentException>(() => RoiAlign.Backward(gyBad, rois, [2, 3, 4, 4], o)).ParamName);
        using var gyLong = Tensor.Zeros(Device.Cpu, DataType.Int64, 1, 3, 2, 2);
        Assert.Equal("gradY", Assert.ThrowsAny<ArgumentException>(() => RoiAlign.Backward(gyLong, rois, [2, 3, 4, 4], o)).ParamName);
        Assert.Equal("inputShape", Assert.ThrowsAny<ArgumentException>(() => RoiAlign.Backward(gy, rois, [2, 3, 4, 4, 1], o)).ParamName);
        Assert.Equal("rois", Assert.ThrowsAny<ArgumentException>(() => RoiAlign.Backward(gy, rois, [1, 3, 4, 4], o)).ParamName);
        using var gxBad = Tensor.Zeros(Device.Cpu, DataType.Int64, 2, 3, 4, 4);
        Assert.Equal("gradX", Assert.ThrowsAny<ArgumentException>(() => RoiAlign.Backward(gy, rois, gxBad, o)).ParamName);
    }
}
