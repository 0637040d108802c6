namespace GRcn.Kernels.Tests;

public class RoiPoolTests
{
    /// <summary>Forward values are copies of input cells: they must match the oracle exactly.</summary>
    private const double ForwardTolerance = 0;

    /// <summary>Backward sums float32 gradients where the oracle sums in double: relative and absolute tolerance.</summary>
    private const double BackwardRtol = 1e-5, BackwardAtol = 1e-5;


    /// <summary>RoIs of many kinds on an image of (h, w) cells at the given scale: inside, partly or fully outside, tiny, huge, inverted.</summary>
    internal static float[] RandomRois(Random rng, int k, int n, int h, int w, double scale)
    {
        double wp = w / scale, hp = h / scale;
        var r = new float[k * 5];
        for (int i = 0; i < k; i++)
        {
            double x1, y1, x2, y2;
            switch (i % 6)
            {
                case 0: // inside or partly outside
                    x1 = (rng.NextDouble() * 1.2 - 0.2) * wp; y1 = (rng.NextDouble() * 1.2 - 0.2) * hp;
                    x2 = x1 + rng.NextDouble() * 0.8 * wp; y2 = y1 + rng.NextDouble() * 0.8 * hp;
                    break;
                case 1: // smaller than one cell
                    x1 = rng.NextDouble() * wp; y1 = rng.NextDouble() * hp;
                    x2 = x1 + rng.NextDouble() * 0.9 / scale; y2 = y1 + rng.NextDouble() * 0.9 / scale;
                    break;
                case 2: // much larger than the map
                    x1 = -rng.NextDouble() * 3 * wp; y1 = -rng.NextDouble() * 3 * hp;
                    x2 = wp * (1 + rng.NextDouble() * 2); y2 = hp * (1 + rng.NextDouble() * 2);
                    break;
                case 3: // entirely outside
                    x1 = wp * (1.05 + rng.NextDouble()); y1 = (rng.NextDouble() * 4 - 2) * hp;
                    x2 = x1 + rng.NextDouble() * wp; y2 = y1 + rng.NextDouble() * hp;
                    break;
                case 4: // x2 < x1 and/or y2 < y1
                    x1 = rng.NextDouble() * wp; y1 = rng.NextDouble() * hp;
                    x2 = x1 - rng.NextDouble() * 0.7 * wp; y2 = y1 - rng.NextDouble() * 0.7 * hp;
                    break;
                default: // coordinates whose scaled value is exactly k + 0.5
                    x1 = (rng.Next(-3, w + 3) + 0.5) / scale; y1 = (rng.Next(-3, h + 3) + 0.5) / scale;
                    x2 = (rng.Next(-3, w + 3) + 0.5) / scale; y2 = (rng.Next(-3, h + 3) + 0.5) / scale;
                    break;
            }
            r[i * 5] = rng.Next(n);
            r[i * 5 + 1] = (float)x1; r[i * 5 + 2] = (float)y1; r[i * 5 + 3] = (float)x2; r[i * 5 + 4] = (float)y2;
        }
        return r;
    }


    public static TheoryData<int, int, int, int, int, int, int, double> RandomCases => new()
    {
        // n, c, h, w, k, ph, pw, scale
        { 1, 1, 5, 7, 12, 7, 7, 1.0 / 16 },
        { 2, 3, 12, 16, 18, 7, 7, 1.0 / 16 },
        { 3, 2, 9, 6, 12, 14, 14, 1.0 / 8 },
        { 2, 4, 8, 11, 24, 1, 1, 0.5 },
        { 1, 3, 10, 10, 18, 3, 5, 1.0 },
        { 2, 40, 13, 17, 30, 7, 7, 1.0 / 16 }, // enough work to run on several threads
    };

    [Theory]
    [MemberData(nameof(RandomCases))]
    public void MatchesReferenceOnRandomInputs(int n, int c, int h, int w, int k, int ph, int pw, double scale)
    {
        var rng = new Random(n * 1000 + c * 100 + h * 10 + k);
        float[] xv = TestData.Normal(rng, n * c * h * w, ties: k % 2 == 0 ? 0.5 : 0);
        float[] rv = RandomRois(rng, k, n, h, w, scale);
        float[] gyv = TestData.Normal(rng, k * c * ph * pw);
        var options = new RoiPoolOptions(ph, pw, scale);

        using var x = Tensor.FromArray(xv, n, c, h, w);
        using var rois = Tensor.FromArray(rv, k, 5);
        using var result = RoiPool.Forward(x, rois, options);
        var (wantY, wantArg) = RoiPoolReference.Forward(xv, n, c, h, w, rv, ph, pw, scale);
        Assert.Equal([k, c, ph, pw], result.Output.Shape.ToArray());
        TestData.AssertClose(wantY, result.Output.ToArray<float>(), 0, ForwardTolerance, "y");
        Assert.Equal(wantArg, result.Argmax.ToArray<long>());

        using var gy = Tensor.FromArray(gyv, k, c, ph, pw);
        using var gx = RoiPool.Backward(gy, rois, result.Argmax, [n, c, h, w], options);
        TestData.AssertClose(RoiPoolReference.Backward(gyv, wantArg, rv, n, c, h, w, ph, pw), gx.ToArray<float>(), BackwardRtol, BackwardAtol, "gradX");
    }

    /// <summary>Runs forward and backward with the kernel path pinned and compares both with the oracle.</summary>
    private static void CheckPath(Cpu.RoiKernelPath path, float[] xv, int n, int c, int h, int w, float[] rv, int ph, int pw, double scale, Random rng)
    {
        int k = rv.Length / 5;
        var options = new RoiPoolOptions(ph, pw, scale);
        var (wantY, wantArg) = RoiPoolReference.Forward(xv, n, c, h, w, rv, ph, pw, scale);
        float[] gyv = TestData.Normal(rng, k * c * ph * pw);
        double[] wantGx = RoiPoolReference.Backward(gyv, wantArg, rv, n, c, h, w, ph, pw);
        Cpu.RoiPoolCpu.Path = path;
        try
        {
            using var x = Tensor.FromArray(xv, n, c, h, w);
            using var rois = Tensor.FromArray(rv, k, 5);
            using var result = RoiPool.Forward(x, rois, options);
            // Values are copies of input cells (±inf included): compare exactly.
            Assert.Equal(wantY.Select(v => (float)v).ToArray(), result.Output.ToArray<float>());
            Assert.Equal(wantArg, result.Argmax.ToArray<long>());
            using var gy = Tensor.FromArray(gyv, k, c, ph, pw);
            using var gx = RoiPool.Backward(gy, rois, result.Argmax, [n, c, h, w], options);
            TestData.AssertClose(wantGx, gx.ToArray<float>(), BackwardRtol, BackwardAtol, $"{path} gradX");
        }
        finally
        {
            Cpu.RoiPoolCpu.Path = Cpu.RoiKernelPath.Auto;
        }
    }

    /// <summary>
    /// Random shapes (channel counts around the 8- and 32-channel blocks, odd bin counts, several
    /// images) through the scalar and the channel-blocked paths, with ties, NaN and ±inf in x.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void BothPathsMatchReferenceOnRandomShapes(bool blocked)
    {
        var path = blocked ? Cpu.RoiKernelPath.Blocked : Cpu.RoiKernelPath.Scalar;
        var rng = new Random(blocked ? 4243 : 4242);
        for (int trial = 0; trial < 24; trial++)
        {
            int n = rng.Next(1, 4), c = trial < 4 ? 32 * (trial + 1) : rng.Next(1, 75), h = rng.Next(1, 20), w = rng.Next(1, 20);
            int k = rng.Next(1, 14), ph = rng.Next(1, 9), pw = rng.Next(1, 9);
            double scale = new[] { 1.0, 0.5, 0.25, 1.0 / 16 }[rng.Next(4)];
            float[] xv = TestData.Normal(rng, n * c * h * w, ties: trial % 3 == 0 ? 0.5 : 0);
            if (trial % 4 == 1)
            {
                float[] special = [float.NaN, float.NegativeInfinity, float.PositiveInfinity, -float.MaxValue];
                for (int i = 0; i < xv.Length; i++)
                    if (rng.Next(6) == 0) xv[i] = special[rng.Next(special.Length)];
            }
            float[] rv = RandomRois(rng, k, n, h, w, scale);
            CheckPath(path, xv, n, c, h, w, rv, ph, pw, scale, rng);
        }
    }

    [Fact]
    public void PoolsQuadrantsOfA4x4Map()
    {
        float[] xv = Enumerable.Range(0, 16).Select(i => (float)i).ToArray();
        using var x = Tensor.FromArray(xv, 1, 1, 4, 4);
        using var rois = Tensor.FromArray(new float[] { 0, 0, 0, 3, 3, 0, 0, 0, 3, 3 }, 2, 5);
        var o = new RoiPoolOptions(2, 2, 1.0);
        using var r = RoiPool.Forward(x, rois, o);
        Assert.Equal(new float[] { 5, 7, 13, 15, 5, 7, 13, 15 }, r.Output.ToArray<float>());
        Assert.Equal(new long[] { 5, 7, 13, 15, 5, 7, 13, 15 }, r.Argmax.ToArray<long>());

        // The same RoI twice: gradients of both accumulate on the winning cells.
        using var gy = Tensor.FromArray(new float[] { 1, 2, 3, 4, 10, 20, 30, 40 }, 2, 1, 2, 2);
        using var gx = RoiPool.Backward(gy, rois, r.Argmax, [1, 1, 4, 4], o);
        var want = new float[16];
        want[5] = 11; want[7] = 22; want[13] = 33; want[15] = 44;
        Assert.Equal(want, gx.ToArray<float>());
    }

    [Fact]
    public void UnevenBinsOverlapAsFloorAndCeil()
    {
        // A 3-cell-high RoI cut into 2 bins: bin size 1.5, rows [0, 2) and [1, 3) overlap on row 1.
        float[] xv = [1, 9, 2, 0, 0, 0];
        using var x = Tensor.FromArray(xv, 1, 1, 3, 2);
        using var rois = Tensor.FromArray(new float[] { 0, 0, 0, 0, 2 }, 1, 5);
        using var r = RoiPool.Forward(x, rois, new RoiPoolOptions(2, 1, 1.0));
        Assert.Equal(new float[] { 2, 2 }, r.Output.ToArray<float>());
        Assert.Equal(new long[] { 2, 2 }, r.Argmax.ToArray<long>());
    }

    /// <summary>
    /// RoIs whose bin edges torchvision computes in float (T = float for float32 tensors): for a
    /// RoI of L cells cut into b bins, bin i spans [floor((float)i · bin), ceil((float)(i+1) · bin))
    /// with bin = (float)L / b, and for these lengths one edge falls on the other side of an
    /// integer than in double (29 / 7 · 7 = 29.000000000000004 in double, 29 in float; 57f / 7f · 7f
    /// = 57.000004 in float, 57 in double; at 14 bins it is bin 7's start). Channel 0 holds
    /// x[0, w] = w (a bin's argmax is its last cell), channel 1 holds −w (its first cell).
    /// Expected edges (relative to the RoI's first cell) are torchvision 0.14's float32 result.
    /// </summary>
    [Theory]
    [InlineData(29, 7, 6, 24, 29)]
    [InlineData(57, 7, 6, 48, 58)]
    [InlineData(58, 7, 6, 49, 58)]
    [InlineData(114, 7, 6, 97, 115)]
    [InlineData(62, 14, 7, 30, 36)]
    [InlineData(122, 14, 7, 61, 70)]
    public void BinEdgesAreTorchvisionsFloat32Edges(int length, int bins, int bin, int start, int end)
    {
        const int width = 160, first = 3;
        float[] xv = new float[2 * width];
        for (int w = 0; w < width; w++)
        {
            xv[w] = w;
            xv[width + w] = -w;
        }
        using var x = Tensor.FromArray(xv, 1, 2, 1, width);
        // Cells first .. first + length − 1 (scale 1: the coordinates are already whole).
        using var rois = Tensor.FromArray(new float[] { 0, first, 0, first + length - 1, 0 }, 1, 5);
        using var r = RoiPool.Forward(x, rois, new RoiPoolOptions(1, bins, 1.0));
        long[] argmax = r.Argmax.ToArray<long>();
        Assert.Equal(first + end - 1, argmax[bin]);
        Assert.Equal(first + start, argmax[bins + bin]);
        Assert.Equal((float)(first + end - 1), r.Output.ToArray<float>()[bin]);
        // The same bin in double arithmetic has another edge: the case tells the two apart.
        double binD = (double)length / bins;
        Assert.NotEqual((start, end), ((int)Math.Floor(bin * binD), (int)Math.Ceiling((bin + 1) * binD)));
    }

    [Theory]
    [InlineData(40f, 27L)]   // 40/16 = 2.5 rounds up to 3: cell (3, 3)
    [InlineData(24f, 18L)]   // 1.5 rounds to 2
    [InlineData(56f, 36L)]   // 3.5 rounds to 4
    [InlineData(-8f, -1L)]   // -0.5 rounds to -1 (away from zero): the 1-cell RoI at -1 is empty
    [InlineData(-24f, -1L)]  // -1.5 rounds to -2
    [InlineData(7.99f, 0L)]  // 0.49937... rounds to 0
    public void RoundsScaledCoordinatesHalfAwayFromZero(float coordinate, long wantArgmax)
    {
        float[] xv = Enumerable.Range(1, 64).Select(i => (float)i).ToArray();
        using var x = Tensor.FromArray(xv, 1, 1, 8, 8);
        using var rois = Tensor.FromArray(new float[] { 0, coordinate, coordinate, coordinate, coordinate }, 1, 5);
        using var r = RoiPool.Forward(x, rois, new RoiPoolOptions(1, 1, 1.0 / 16));
        Assert.Equal(wantArgmax, r.Argmax.ToArray<long>()[0]);
        Assert.Equal(wantArgmax < 0 ? 0f : xv[wantArgmax], r.Output.ToArray<float>()[0]);
    }

    [Fact]
    public void EmptyBinsGiveZeroAndNoGradient()
    {
        using var x = Tensor.FromArray(Enumerable.Repeat(-5f, 16).ToArray(), 1, 1, 4, 4);
        // Wholly right of the map; wholly above it.
        using var rois = Tensor.FromArray(new float[] { 0, 10, 0, 12, 3, 0, 0, -9, 3, -6 }, 2, 5);
        var o = new RoiPoolOptions(2, 2, 1.0);
        using var r = RoiPool.Forward(x, rois, o);
        Assert.All(r.Output.ToArray<float>(), v => Assert.Equal(0f, v));
        Assert.All(r.Argmax.ToArray<long>(), a => Assert.Equal(-1L, a));
        using var gy = Tensor.FromArray(Enumerable.Repeat(1f, 8).ToArray(), 2, 1, 2, 2);
        using var gx = RoiPool.Backward(gy, rois, r.Argmax, [1, 1, 4, 4], o);
        Assert.All(gx.ToArray<float>(), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void NonFiniteCellsNeverWinAStrictlyGreaterComparison()
    {
        float ninf = float.NegativeInfinity;
        // Top-left bin: NaN and -inf only -> -FLT_MAX, argmax -1. Top-right: NaN first, then 3.
        // Bottom-left: a tie of 4s -> the first in row-major order. Bottom-right: +inf wins.
        float[] xv =
        [
            float.NaN, ninf, float.NaN, 3,
            ninf, ninf, 3, 1,
            4, 0, 2, float.PositiveInfinity,
            0, 4, 2, 2,
        ];
        using var x = Tensor.FromArray(xv, 1, 1, 4, 4);
        using var rois = Tensor.FromArray(new float[] { 0, 0, 0, 3, 3 }, 1, 5);
        using var r = RoiPool.Forward(x, rois, new RoiPoolOptions(2, 2, 1.0));
        Assert.Equal(new float[] { -float.MaxValue, 3, 4, float.PositiveInfinity }, r.Output.ToArray<float>());
        Assert.Equal(new long[] { -1, 3, 8, 11 }, r.Argmax.ToArray<long>());
    }

    [Fact]
    public void InvertedRoiIsOneCell()
    {
        float[] xv = Enumerable.Range(0, 16).Select(i => (float)i).ToArray();
        using var x = Tensor.FromArray(xv, 1, 1, 4, 4);
        // start (2, 1), end before it: forced to 1×1, so every bin of a 2×2 output is the cell (1, 2).
        using var rois = Tensor.FromArray(new float[] { 0, 2, 1, 0, 0 }, 1, 5);
        using var r = RoiPool.Forward(x, rois, new RoiPoolOptions(2, 2, 1.0));
        Assert.Equal(new float[] { 6, 6, 6, 6 }, r.Output.ToArray<float>());
        Assert.Equal(new long[] { 6, 6, 6, 6 }, r.Argmax.ToArray<long>());
    }

    [Fact]
    public void SelectsTheImageOfEachRoi()
    {
        float[] xv = new float[2 * 2 * 2 * 2];
        for (int i = 0; i < xv.Length; i++) xv[i] = i;
        using var x = Tensor.FromArray(xv, 2, 2, 2, 2);
        using var rois = Tensor.FromArray(new float[] { 1, 0, 0, 1, 1, 0, 0, 0, 1, 1 }, 2, 5);
        var o = new RoiPoolOptions(1, 1, 1.0);
        using var r = RoiPool.Forward(x, rois, o);
        Assert.Equal(new float[] { 11, 15, 3, 7 }, r.Output.ToArray<float>());
        using var gy = Tensor.FromArray(new float[] { 1, 2, 3, 4 }, 2, 2, 1, 1);
        using var gx = RoiPool.Backward(gy, rois, r.Argmax, [2, 2, 2, 2], o);
        var want = new float[16];
        want[3] = 3; want[7] = 4; want[11] = 1; want[15] = 2;
        Assert.Equal(want, gx.ToArray<float>());
    }

    [Fact]
    public void BackwardOverwritesGradX()
    {
        using var x = Tensor.FromArray(new float[] { 1, 2, 3, 4 }, 1, 1, 2, 2);
        using var rois = Tensor.FromArray(new float[] { 0, 0, 0, 1, 1 }, 1, 5);
        var o = new RoiPoolOptions(1, 1, 1.0);
        using var r = RoiPool.Forward(x, rois, o);
        using var gy = Tensor.FromArray(new float[] { 5 }, 1, 1, 1, 1);
        using var gx = Tensor.FromArray(new float[] { 9, 9, 9, 9 }, 1, 1, 2, 2);
        RoiPool.Backward(gy, rois, r.Argmax, gx, o);
        Assert.Equal(new float[] { 0, 0, 0, 5 }, gx.ToArray<float>());
    }

    [Fact]
    public void ZeroRoisGiveEmptyOutputAndZeroGradient()
    {
        using var x = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6, 7, 8 }, 1, 2, 2, 2);
        using var rois = Tensor.Zeros(Device.Cpu, 0, 5);
        var o = new RoiPoolOptions(3, 2, 0.5);
        using var r = RoiPool.Forward(x, rois, o);
        Assert.Equal([0, 2, 3, 2], r.Output.Shape.ToArray());
        Assert.Equal([0, 2, 3, 2], r.Argmax.Shape.ToArray());
        using var gy = Tensor.Zeros(Device.Cpu, 0, 2, 3, 2);
        using var gx = Tensor.FromArray(Enumerable.Repeat(7f, 8).ToArray(), 1, 2, 2, 2);
        RoiPool.Backward(gy, rois, r.Argmax, gx, o);
        Assert.All(gx.ToArray<float>(), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void RejectsBadArguments()
    {
        using var x = Tensor.Zeros(Device.Cpu, 2, 3, 4, 4);
        using var x3 = Tensor.Zeros(Device.Cpu, 3, 4, 4);
        using var rois = Tensor.FromArray(new float[] { 1, 0, 0, 2, 2 }, 1, 5);
        var o = new RoiPoolOptions(2, 2, 1.0);

        Assert.Equal("x", Assert.ThrowsAny<ArgumentException>(() => RoiPool.Forward(x3, rois, o)).ParamName);
        using var xl = Tensor.Zeros(Device.Cpu, DataType.Int64, 2, 3, 4, 4);
        Assert.Equal("x", Assert.ThrowsAny<ArgumentException>(() => RoiPool.Forward(xl, rois, o)).ParamName);
        using var rois4 = Tensor.Zeros(Device.Cpu, 1, 4);
        Assert.Equal("rois", Assert.ThrowsAny<ArgumentException>(() => RoiPool.Forward(x, rois4, o)).ParamName);
        using var roisL = Tensor.Zeros(Device.Cpu, DataType.Int64, 1, 5);
        Assert.Equal("rois", Assert.ThrowsAny<ArgumentException>(() => RoiPool.Forward(x, roisL, o)).ParamName);
        foreach (float bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
        {
            using var nonFinite = Tensor.FromArray(new float[] { 0, 0, bad, 2, 2 }, 1, 5);
            Assert.Equal("rois", Assert.ThrowsAny<ArgumentException>(() => RoiPool.Forward(x, nonFinite, o)).ParamName);
        }
        foreach (float b in new[] { -1f, 2f, 0.5f })
        {
            using var badBatch = Tensor.FromArray(new float[] { b, 0, 0, 2, 2 }, 1, 5);
            Assert.Equal("rois", Assert.ThrowsAny<ArgumentException>(() => RoiPool.Forward(x, badBatch, o)).ParamName);
        }
        Assert.Equal("OutputH", Assert.ThrowsAny<ArgumentException>(() => RoiPool.Forward(x, rois, o with { OutputH = 0 })).ParamName);
        Assert.Equal("OutputW", Assert.ThrowsAny<ArgumentException>(() => RoiPool.Forward(x, rois, o with { OutputW = -1 })).ParamName);
        Assert.Equal("SpatialScale", Assert.ThrowsAny<ArgumentException>(() => RoiPool.Forward(x, rois, o with { SpatialScale = 0 })).ParamName);
        Assert.Equal("SpatialScale", Assert.ThrowsAny<ArgumentException>(() => RoiPool.Forward(x, rois, o with { SpatialScale = double.NaN })).ParamName);

        using var r = RoiPool.Forward(x, rois, o);
        using var gy = Tensor.Zeros(Device.Cpu, 1, 3, 2, 2);
        using var gyBad = Tensor.Zeros(Device.Cpu, 1, 3, 2, 3);
        Assert.Equal("gradY", Assert.ThrowsAny<ArgumentException>(() => RoiPool.Backward(gyBad, rois, r.Argmax, [2, 3, 4, 4], o)).ParamName);
        Assert.Equal("inputShape", Assert.ThrowsAny<ArgumentException>(() => RoiPool.Backward(gy, rois, r.Argmax, [3, 4, 4], o)).ParamName);
        Assert.Equal("gradY", Assert.ThrowsAny<ArgumentException>(() => RoiPool.Backward(gy, rois, r.Argmax, [2, 4, 4, 4], o)).ParamName);
        using var gxBad = Tensor.Zeros(Device.Cpu, 2, 3, 4);
        Assert.Equal("gradX", Assert.ThrowsAny<ArgumentException>(() => RoiPool.Backward(gy, rois, r.Argmax, gxBad, o)).ParamName);
        using var argF = Tensor.Zeros(Device.Cpu, 1, 3, 2, 2);
        Assert.Equal("argmax", Assert.ThrowsAny<ArgumentException>(() => RoiPool.Backward(gy, rois, argF, [2, 3, 4, 4], o)).ParamName);
        using var argShape = Tensor.Zeros(Device.Cpu, DataType.Int64, 1, 3, 2, 1);
        Assert.Equal("argmax", Assert.ThrowsAny<ArgumentException>(() => RoiPool.Backward(gy, rois, argShape, [2, 3, 4, 4], o)).ParamName);
        foreach (long bad in new[] { -2L, 16L })
        {
            using var argRange = Tensor.FromArray(Enumerable.Repeat(bad, 12).ToArray(), 1, 3, 2, 2);
            Assert.Equal("argmax", Assert.ThrowsAny<ArgumentException>(() => RoiPool.Backward(gy, rois, argRange, [2, 3, 4, 4], o)).ParamName);
        }
    }
}
