// roi_align on the GPU devices: random RoIs (inside, across and beyond the map, inverted, several
// images, both aligned modes, fixed and adaptive sampling) against the CPU backend, forward and both
// backward modes; empty K; determinism of the gather backward; torchvision's float32 semantics on
// RoIs where float and double arithmetic pick different adaptive grids (fingerprints computed with
// torch 1.13 / torchvision 0.14, float32); the adaptive grid limit; rounded products in the PTX.
using GRcn.Kernels.Gpu;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace GRcn.Kernels.GpuTests;

public class RoiAlignTests
{
    /// <summary>K random RoIs [b, x1, y1, x2, y2] in pixels over n images of a (h, w) map at 1/scale: mostly inside, some across or beyond the border, some inverted.</summary>
    internal static float[] RandomRois(int seed, int k, int n, int h, int w, float scale)
    {
        var r = new Random(seed);
        var rois = new float[k * 5];
        for (int i = 0; i < k; i++)
        {
            float x1 = (r.NextSingle() * (w + 4) - 3) / scale, y1 = (r.NextSingle() * (h + 4) - 3) / scale;
            float bw = (r.NextSingle() * w * 0.9f + 0.1f) / scale, bh = (r.NextSingle() * h * 0.9f + 0.1f) / scale;
            if (i % 7 == 6) bw = -bw * 0.2f; // inverted box
            rois[i * 5] = r.Next(n);
            rois[i * 5 + 1] = x1;
            rois[i * 5 + 2] = y1;
            rois[i * 5 + 3] = x1 + bw;
            rois[i * 5 + 4] = y1 + bh;
        }
        return rois;
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void MatchesTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        int seed = 0;
        // Both backends compute the geometry in float32 with torchvision's expressions, so any
        // scale and bin count gives the same samples; the sums differ in order (tolerances).
        foreach (var (n, c, h, w, k) in new[] { (1, 1, 1, 1, 1), (2, 5, 9, 11, 9), (3, 8, 6, 13, 14) })
        foreach (var (ph, pw) in new[] { (2, 4), (1, 1), (3, 7) })
        foreach (int sr in new[] { 0, 2, -1 })
        foreach (bool aligned in new[] { true, false })
        {
            seed++;
            float scale = (seed % 3) switch { 0 => 0.5f, 1 => 0.25f, _ => 0.3f };
            var options = new RoiAlignOptions(ph, pw, scale, sr, aligned);
            using var x = Tensor.FromArray(TestData.Uniform(seed, n * c * h * w), n, c, h, w);
            using var rois = Tensor.FromArray(RandomRois(seed, k, n, h, w, scale), k, 5);
            using var gy = Tensor.FromArray(TestData.Uniform(seed + 500, k * c * ph * pw), k, c, ph, pw);
            using var gx = x.To(d);
            using var grois = rois.To(d);
            using var ggy = gy.To(d);
            string what = $"n{n} c{c} {h}x{w} k{k} {ph}x{pw} sr{sr} aligned={aligned} scale={scale}";
            using var want = RoiAlign.Forward(x, rois, options);
            using var got = RoiAlign.Forward(gx, grois, options);
            Close.Tensors(want, got, 1e-5, 1e-5, "forward " + what);
            using var wantGrad = RoiAlign.Backward(gy, rois, [n, c, h, w], options);
            foreach (bool deterministic in new[] { true, false })
                GpuDevices.WithDeterminism(d, deterministic, () =>
                {
                    using var gotGrad = RoiAlign.Backward(ggy, grois, [n, c, h, w], options);
                    Close.Tensors(wantGrad, gotGrad, 1e-5, 1e-5, $"backward deterministic={deterministic} " + what);
                });
        }
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void SevenBySevenOnAFeatureMapMatchesTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        const int n = 2, c = 6, h = 20, w = 27, k = 12;
        var options = new RoiAlignOptions(7, 7, 0.0625, 0, true);
        using var x = Tensor.FromArray(TestData.Uniform(11, n * c * h * w), n, c, h, w);
        using var rois = Tensor.FromArray(RandomRois(12, k, n, h, w, 0.0625f), k, 5);
        using var gx = x.To(d);
        using var grois = rois.To(d);
        using var want = RoiAlign.Forward(x, rois, options);
        using var got = RoiAlign.Forward(gx, grois, options);
        Close.Tensors(want, got, 1e-5, 1e-5);
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void ZeroRoisGiveAnEmptyOutputAndAZeroGradient(string name)
    {
        var d = GpuDevices.Get(name);
        var options = new RoiAlignOptions(3, 3, 0.5, 2, true);
        using var x = Tensor.FromArray(TestData.Uniform(1, 2 * 3 * 4 * 5), 2, 3, 4, 5).To(d);
        using var rois = Tensor.Empty(d, DataType.Float32, 0, 5);
        using var y = RoiAlign.Forward(x, rois, options);
        Assert.Equal("(0, 3, 3, 3)", y.ShapeString);
        using var gy = Tensor.Empty(d, DataType.Float32, 0, 3, 3, 3);
        using var gx = RoiAlign.Backward(gy, rois, [2, 3, 4, 5], options);
        Assert.All(gx.ToArray<float>(), v => Assert.Equal(0f, v));
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void RoisOutsideTheMapGiveZeros(string name)
    {
        var d = GpuDevices.Get(name);
        var options = new RoiAlignOptions(2, 2, 1.0, 0, false);
        // Far right, far above, and one ending just beyond −1 (all its samples have x < −1).
        float[] r = [0, 50, 1, 60, 3, 0, 1, -40, 3, -30, 0, -9, 0, -1.5f, 2];
        using var x = Tensor.FromArray(TestData.Uniform(3, 2 * 4 * 5), 1, 2, 4, 5).To(d);
        using var rois = Tensor.FromArray(r, 3, 5).To(d);
        using var y = RoiAlign.Forward(x, rois, options);
        Assert.All(y.ToArray<float>(), v => Assert.Equal(0f, v));
        using var gy = Tensor.FromArray(TestData.Uniform(4, 3 * 2 * 4), 3, 2, 2, 2).To(d);
        foreach (bool deterministic in new[] { true, false })
            GpuDevices.WithDeterminism(d, deterministic, () =>
            {
                using var gx = RoiAlign.Backward(gy, rois, [1, 2, 4, 5], options);
                Assert.All(gx.ToArray<float>(), v => Assert.Equal(0f, v));
            });
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void DeterministicBackwardIsBitIdenticalAndAgreesWithAtomics(string name)
    {
        var d = GpuDevices.Get(name);
        const int n = 2, c = 5, h = 10, w = 12, k = 40;
        var options = new RoiAlignOptions(3, 3, 0.5, 0, true);
        // Many overlapping RoIs: cells receive many terms, so the sum order matters.
        using var rois = Tensor.FromArray(RandomRois(21, k, n, h, w, 0.5f), k, 5).To(d);
        using var gy = Tensor.FromArray(TestData.Uniform(22, k * c * 9), k, c, 3, 3).To(d);
        float[] first = [], second = [], atomic = [];
        GpuDevices.WithDeterminism(d, true, () =>
        {
            using var a = RoiAlign.Backward(gy, rois, [n, c, h, w], options);
            using var b = RoiAlign.Backward(gy, rois, [n, c, h, w], options);
            first = a.ToArray<float>();
            second = b.ToArray<float>();
        });
        GpuDevices.WithDeterminism(d, false, () =>
        {
            using var a = RoiAlign.Backward(gy, rois, [n, c, h, w], options);
            atomic = a.ToArray<float>();
        });
        Assert.Equal(first.Select(BitConverter.SingleToInt32Bits), second.Select(BitConverter.SingleToInt32Bits));
        Assert.Contains(first, v => v != 0f);
        Close.Assert(first, atomic, 1e-5, 1e-5);
    }

    /// <summary>
    /// RoIs (scale 1/16, 7×7, adaptive) whose float32 size differs from the double one just enough to
    /// change ceil(size / 7): the fingerprints Σ y and Σ y·(i + 1) per RoI (and Σ gradX, Σ gradX·(i + 1)
    /// for gradY = 1) are torchvision 0.14's float32 values; float64 gives visibly different ones.
    /// </summary>
    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void FollowsTorchvisionFloat32Geometry(string name)
    {
        var d = GpuDevices.Get(name);
        const int h = 40, w = 40;
        var xv = new float[h * w];
        for (int i = 0; i < xv.Length; i++) xv[i] = i % 97 * 0.25f;
        float[] r = [0, 304f, 44.8f, 416f, 156.8f, 0, 262.4f, 78.4f, 710.4f, 526.4f, 0, 99.2f, 134.4f, 547.2f, 582.4f, 0, 240f, 171.2f, 688f, 619.2f];
        using var x = Tensor.FromArray(xv, 1, 1, h, w).To(d);
        using var rois = Tensor.FromArray(r, 4, 5).To(d);
        using var ones = Tensor.FromArray(Enumerable.Repeat(1f, 4 * 49).ToArray(), 4, 1, 7, 7).To(d);
        foreach (var (aligned, sums, weighted, gradSum, gradWeighted) in new[]
        {
            (false, new[] { 663.599984, 502.532595, 586.842279, 526.234360 }, new[] { 16931.77469, 12286.20957, 14579.47161, 12894.27133 }, 183.750001, 135898.4268),
            (true, new[] { 633.149999, 498.871238, 591.433446, 548.039046 }, new[] { 16527.00059, 12165.59375, 14717.52906, 13435.49022 }, 185.500001, 133897.4069),
        })
        {
            var options = new RoiAlignOptions(7, 7, 0.0625, 0, aligned);
            using var y = RoiAlign.Forward(x, rois, options);
            float[] yv = y.ToArray<float>();
            for (int k = 0; k < 4; k++)
            {
                double s = 0, ws = 0;
                for (int i = 0; i < 49; i++)
                {
                    s += yv[k * 49 + i];
                    ws += yv[k * 49 + i] * (i + 1.0);
                }
                Assert.True(Math.Abs(s - sums[k]) < 2e-3, $"aligned={aligned} RoI {k}: Σy = {s}, torchvision float32 {sums[k]}");
                Assert.True(Math.Abs(ws - weighted[k]) < 5e-2, $"aligned={aligned} RoI {k}: Σy·(i+1) = {ws}, torchvision float32 {weighted[k]}");
            }
            foreach (bool deterministic in new[] { true, false })
                GpuDevices.WithDeterminism(d, deterministic, () =>
                {
                    using var gx = RoiAlign.Backward(ones, rois, [1, 1, h, w], options);
                    float[] g = gx.ToArray<float>();
                    double s = 0, ws = 0;
                    for (int i = 0; i < g.Length; i++)
                    {
                        s += g[i];
                        ws += g[i] * (i + 1.0);
                    }
                    Assert.True(Math.Abs(s - gradSum) < 2e-3, $"aligned={aligned} deterministic={deterministic}: ΣgradX = {s}, torchvision float32 {gradSum}");
                    Assert.True(Math.Abs(ws - gradWeighted) < 5e-2, $"aligned={aligned} deterministic={deterministic}: ΣgradX·(i+1) = {ws}, torchvision float32 {gradWeighted}");
                });
        }
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void AdaptiveGridsOver2To31PointsAreRefusedAsOnTheCpu(string name)
    {
        var d = GpuDevices.Get(name);
        var options = new RoiAlignOptions(1, 1, 1.0, 0, false);
        float[] r = [0, 0, 0, 100000, 100000];
        using var x = Tensor.FromArray(new float[4], 1, 1, 2, 2);
        using var rois = Tensor.FromArray(r, 1, 5);
        var cpu = Assert.Throws<ArgumentException>(() => RoiAlign.Forward(x, rois, options).Dispose());
        using var gxd = x.To(d);
        using var gr = rois.To(d);
        var gpu = Assert.Throws<ArgumentException>(() => RoiAlign.Forward(gxd, gr, options).Dispose());
        Assert.Equal(cpu.Message, gpu.Message);
    }

    /// <summary>The sample positions use rounded multiplications on CUDA (no FMA contraction): the PTX holds mul.rn.f32.</summary>
    [Fact]
    public void PositionsUseRoundedMultiplicationsInPtx()
    {
        foreach (var method in new[] { nameof(RoiAlignKernels.Forward), nameof(RoiAlignKernels.BackwardGather), nameof(RoiAlignKernels.BackwardAtomic) })
        {
            string ptx = PtxCompileTests.Ptx(typeof(RoiAlignKernels).GetMethod(method)!, CudaArchitecture.SM_70, CudaInstructionSet.ISA_70);
            Assert.Contains("mul.rn.f32", ptx);
        }
    }
}
