// roi_pool on the GPU devices: random RoIs (inside, across and beyond the map, inverted, several
// images) against the CPU backend, forward (output and argmax exactly) and both backward modes;
// empty K; RoIs outside the map (0, argmax −1, no gradient); determinism of the gather backward;
// torchvision's float32 bin edges on RoIs of 29/57/58/114 cells at 7 bins, where float and double
// arithmetic end the last bin on different cells (values from torch 1.13 / torchvision 0.14).
using GRcn.Kernels.Gpu;

namespace GRcn.Kernels.GpuTests;

public class RoiPoolTests
{
    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void MatchesTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        int seed = 100;
        // Both backends compute bin edges in float32 with torchvision's expressions: any scale and
        // bin count gives the same cells, so outputs and argmax are equal exactly.
        foreach (var (n, c, h, w, k) in new[] { (1, 1, 1, 1, 1), (2, 5, 9, 11, 9), (3, 4, 6, 13, 14) })
        foreach (var (ph, pw) in new[] { (2, 4), (1, 1), (4, 2), (7, 3) })
        {
            seed++;
            float scale = (seed % 3) switch { 0 => 0.5f, 1 => 0.25f, _ => 0.3f };
            var options = new RoiPoolOptions(ph, pw, scale);
            var xv = TestData.Uniform(seed, n * c * h * w);
            // Some ties (the first maximum wins) and a NaN (never wins).
            for (int i = 0; i < xv.Length; i += 5) xv[i] = MathF.Round(xv[i] * 2) / 2;
            if (xv.Length > 7) xv[7] = float.NaN;
            using var x = Tensor.FromArray(xv, n, c, h, w);
            using var rois = Tensor.FromArray(RoiAlignTests.RandomRois(seed, k, n, h, w, scale), k, 5);
            using var gy = Tensor.FromArray(TestData.Uniform(seed + 500, k * c * ph * pw), k, c, ph, pw);
            using var gx = x.To(d);
            using var grois = rois.To(d);
            using var ggy = gy.To(d);
            string what = $"n{n} c{c} {h}x{w} k{k} {ph}x{pw} scale={scale}";
            using var want = RoiPool.Forward(x, rois, options);
            using var got = RoiPool.Forward(gx, grois, options);
            Assert.Equal(want.Output.ToArray<float>(), got.Output.ToArray<float>());
            Assert.Equal(want.Argmax.ToArray<long>(), got.Argmax.ToArray<long>());
            using var wantGrad = RoiPool.Backward(gy, rois, want.Argmax, [n, c, h, w], options);
            foreach (bool deterministic in new[] { true, false })
                GpuDevices.WithDeterminism(d, deterministic, () =>
                {
                    using var gotGrad = RoiPool.Backward(ggy, grois, got.Argmax, [n, c, h, w], options);
                    Close.Tensors(wantGrad, gotGrad, 1e-6, 1e-6, $"backward deterministic={deterministic} " + what);
                });
        }
    }

    /// <summary>
    /// One row of 130 cells valued by column, RoIs of 29, 57, 58 and 114 cells from column 1, 1×7
    /// bins: each bin's maximum is its last column, so y shows where float32 arithmetic ends each bin
    /// (7·(29/7) rounds to 29 in float, 30 in double: the last bin ends at column 29, not 30).
    /// </summary>
    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void BinEdgesFollowTorchvisionFloat32(string name)
    {
        var d = GpuDevices.Get(name);
        const int w = 130;
        int[] torchvisionFloat32 =
        [
            5, 9, 13, 17, 21, 25, 29,
            9, 17, 25, 33, 41, 49, 58,
            9, 17, 25, 34, 42, 50, 58,
            17, 33, 49, 66, 82, 98, 115,
        ];
        int[] lengths = [29, 57, 58, 114];
        using var x = Tensor.FromArray(Enumerable.Range(0, w).Select(v => (float)v).ToArray(), 1, 1, 1, w).To(d);
        foreach (float scale in new[] { 1f, 0.0625f })
        {
            var r = new float[4 * 5];
            for (int k = 0; k < 4; k++)
            {
                r[k * 5 + 1] = 1 / scale;
                r[k * 5 + 3] = lengths[k] / scale;
            }
            using var rois = Tensor.FromArray(r, 4, 5).To(d);
            using var result = RoiPool.Forward(x, rois, new RoiPoolOptions(1, 7, scale));
            Assert.Equal(torchvisionFloat32.Select(v => (float)v), result.Output.ToArray<float>());
            Assert.Equal(torchvisionFloat32.Select(v => (long)v), result.Argmax.ToArray<long>());
        }
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void ZeroRoisGiveAnEmptyOutputAndAZeroGradient(string name)
    {
        var d = GpuDevices.Get(name);
        var options = new RoiPoolOptions(2, 2, 0.5);
        using var x = Tensor.FromArray(TestData.Uniform(1, 2 * 3 * 4 * 5), 2, 3, 4, 5).To(d);
        using var rois = Tensor.Empty(d, DataType.Float32, 0, 5);
        using var result = RoiPool.Forward(x, rois, options);
        Assert.Equal("(0, 3, 2, 2)", result.Output.ShapeString);
        Assert.Equal("(0, 3, 2, 2)", result.Argmax.ShapeString);
        using var gy = Tensor.Empty(d, DataType.Float32, 0, 3, 2, 2);
        using var gx = RoiPool.Backward(gy, rois, result.Argmax, [2, 3, 4, 5], options);
        Assert.All(gx.ToArray<float>(), v => Assert.Equal(0f, v));
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void RoisOutsideTheMapGiveEmptyBins(string name)
    {
        var d = GpuDevices.Get(name);
        var options = new RoiPoolOptions(2, 3, 1.0);
        float[] r = [0, 50, 1, 60, 3, 0, 1, -40, 3, -30, 0, -9, -9, -2, -2];
        using var x = Tensor.FromArray(TestData.Uniform(3, 2 * 4 * 5, -5f, -1f), 1, 2, 4, 5).To(d);
        using var rois = Tensor.FromArray(r, 3, 5).To(d);
        using var result = RoiPool.Forward(x, rois, options);
        Assert.All(result.Output.ToArray<float>(), v => Assert.Equal(0f, v));
        Assert.All(result.Argmax.ToArray<long>(), v => Assert.Equal(-1L, v));
        using var gy = Tensor.FromArray(TestData.Uniform(4, 3 * 2 * 6), 3, 2, 2, 3).To(d);
        foreach (bool deterministic in new[] { true, false })
            GpuDevices.WithDeterminism(d, deterministic, () =>
            {
                using var gx = RoiPool.Backward(gy, rois, result.Argmax, [1, 2, 4, 5], options);
                Assert.All(gx.ToArray<float>(), v => Assert.Equal(0f, v));
            });
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void DeterministicBackwardIsBitIdenticalAndAgreesWithAtomics(string name)
    {
        var d = GpuDevices.Get(name);
        const int n = 2, c = 3, h = 10, w = 12, k = 40;
        var options = new RoiPoolOptions(3, 3, 0.5);
        // Quantised inputs: many bins of overlapping RoIs share a winning cell.
        var xv = TestData.Uniform(30, n * c * h * w).Select(v => MathF.Round(v * 2) / 2).ToArray();
        using var x = Tensor.FromArray(xv, n, c, h, w).To(d);
        using var rois = Tensor.FromArray(RoiAlignTests.RandomRois(31, k, n, h, w, 0.5f), k, 5).To(d);
        using var gy = Tensor.FromArray(TestData.Uniform(32, k * c * 9), k, c, 3, 3).To(d);
        using var result = RoiPool.Forward(x, rois, options);
        float[] first = [], second = [], atomic = [];
        GpuDevices.WithDeterminism(d, true, () =>
        {
            using var a = RoiPool.Backward(gy, rois, result.Argmax, [n, c, h, w], options);
            using var b = RoiPool.Backward(gy, rois, result.Argmax, [n, c, h, w], options);
            first = a.ToArray<float>();
            second = b.ToArray<float>();
        });
        GpuDevices.WithDeterminism(d, false, () =>
        {
            using var a = RoiPool.Backward(gy, rois, result.Argmax, [n, c, h, w], options);
            atomic = a.ToArray<float>();
        });
        Assert.Equal(first.Select(BitConverter.SingleToInt32Bits), second.Select(BitConverter.SingleToInt32Bits));
        Assert.Contains(first, v => v != 0f);
        Close.Assert(first, atomic, 1e-5, 1e-5);
    }
}
