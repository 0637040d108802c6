// conv2d on the GPU devices against the CPU backend: fixed and seeded random geometries (stride,
// padding, dilation, 1×1 pointwise and strided, no bias, batches, padding beyond the kernel),
// forward and all three gradients, each gradient computed alone, the column buffer split into
// several chunks of images, N = 0, and bit-identical backward runs (no atomics).
using GRcn.Kernels.Gpu;

namespace GRcn.Kernels.GpuTests;

public class Conv2dTests
{
    private const double Rtol = 1e-4, Atol = 1e-5;

    /// <summary>One convolution: sizes, options, bias.</summary>
    public readonly record struct Geometry(int N, int C, int H, int W, int O, int KH, int KW, Conv2dOptions Options, bool Bias)
    {
        public override string ToString() =>
            $"x ({N},{C},{H},{W}) w ({O},{C},{KH},{KW}) stride ({Options.StrideH},{Options.StrideW}) pad ({Options.PadH},{Options.PadW}) " +
            $"dilation ({Options.DilationH},{Options.DilationW}) bias={Bias}";
    }

    private static IEnumerable<Geometry> Geometries()
    {
        yield return new(2, 3, 7, 8, 4, 3, 3, Conv2dOptions.Create(padding: 1), true);
        yield return new(1, 2, 9, 7, 3, 3, 2, new Conv2dOptions(2, 1, 1, 0, 1, 1), false);
        yield return new(1, 2, 8, 8, 3, 3, 3, Conv2dOptions.Create(padding: 2, dilation: 2), true);
        yield return new(2, 4, 5, 6, 3, 1, 1, Conv2dOptions.Create(), false);                // pointwise: no column buffer
        yield return new(1, 2, 7, 7, 2, 1, 1, Conv2dOptions.Create(stride: 2), true);        // 1×1 strided
        yield return new(1, 2, 3, 4, 2, 2, 2, Conv2dOptions.Create(padding: 3), true);       // padding beyond the kernel
        yield return new(1, 1, 1, 1, 1, 1, 1, Conv2dOptions.Create(), true);                 // one element
        yield return new(1, 3, 1, 1, 2, 3, 3, Conv2dOptions.Create(padding: 1), false);      // 1×1 image, 3×3 kernel
        var r = new Random(11);
        for (int i = 0; i < 3; i++)
        {
            int kh = r.Next(1, 4), kw = r.Next(1, 4), dh = r.Next(1, 3), dw = r.Next(1, 3);
            var o = new Conv2dOptions(r.Next(1, 4), r.Next(1, 4), r.Next(0, 3), r.Next(0, 3), dh, dw);
            int h = Math.Max(1, dh * (kh - 1) + 1 - 2 * o.PadH + r.Next(0, 6));
            int w = Math.Max(1, dw * (kw - 1) + 1 - 2 * o.PadW + r.Next(0, 6));
            yield return new(r.Next(1, 3), r.Next(1, 4), h, w, r.Next(1, 5), kh, kw, o, r.Next(2) == 0);
        }
    }

    /// <summary>Inputs of one geometry on the host: x, weight, bias (or null), dY.</summary>
    private static (Tensor X, Tensor Weight, Tensor? Bias, Tensor GradY) Inputs(Geometry g, int seed)
    {
        var (oh, ow) = Conv2d.OutputSize(g.H, g.W, g.KH, g.KW, g.Options);
        Assert.True(oh >= 1 && ow >= 1, $"{g}: output {oh}×{ow}");
        return (Tensor.FromArray(TestData.Uniform(seed, g.N * g.C * g.H * g.W), g.N, g.C, g.H, g.W),
            Tensor.FromArray(TestData.Uniform(seed + 1, g.O * g.C * g.KH * g.KW), g.O, g.C, g.KH, g.KW),
            g.Bias ? Tensor.FromArray(TestData.Uniform(seed + 2, g.O), g.O) : null,
            Tensor.FromArray(TestData.Uniform(seed + 3, g.N * g.O * oh * ow), g.N, g.O, oh, ow));
    }

    private static void CrossCheck(GpuDevice d, Geometry g, int seed)
    {
        var (x, w, b, dy) = Inputs(g, seed);
        using var _x = x;
        using var _w = w;
        using var _b = b;
        using var _dy = dy;
        using var gx = x.To(d);
        using var gw = w.To(d);
        using var gb = b?.To(d);
        using var gdy = dy.To(d);

        using var y = Conv2d.Forward(x, w, b, g.Options);
        using var gy = Conv2d.Forward(gx, gw, gb, g.Options);
        Close.Tensors(y, gy, Rtol, Atol, $"forward {g}");

        using var grads = Conv2d.Backward(dy, x, w, g.Bias, g.Options);
        using var ggrads = Conv2d.Backward(gdy, gx, gw, g.Bias, g.Options);
        Close.Tensors(grads.Input!, ggrads.Input!, Rtol, Atol, $"dx {g}");
        Close.Tensors(grads.Weight, ggrads.Weight, Rtol, Atol, $"dw {g}");
        if (g.Bias) Close.Tensors(grads.Bias!, ggrads.Bias!, Rtol, Atol, $"db {g}");
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void MatchesTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        int seed = 0;
        foreach (var g in Geometries()) CrossCheck(d, g, seed += 10);
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void ColumnBufferInChunksMatchesTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        // A limit of two images' columns: a chunk of two images, then a shorter one of one.
        var g = new Geometry(3, 2, 6, 5, 3, 3, 3, new Conv2dOptions(1, 2, 1, 1, 1, 1), true);
        var (oh, ow) = Conv2d.OutputSize(g.H, g.W, g.KH, g.KW, g.Options);
        long image = (long)g.C * g.KH * g.KW * oh * ow;
        foreach (long limit in new[] { 2 * image })
        {
            d.Kernels.ConvColumnLimitOverride = limit;
            try
            {
                CrossCheck(d, g, 77);
            }
            finally
            {
                d.Kernels.ConvColumnLimitOverride = 0;
            }
        }
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void EachGradientAloneMatchesAndOthersAreUntouched(string name)
    {
        var d = GpuDevices.Get(name);
        foreach (var g in new[]
                 {
                     new Geometry(2, 3, 7, 6, 4, 3, 2, new Conv2dOptions(2, 1, 1, 1, 1, 2), true),
                     new Geometry(2, 3, 4, 5, 2, 1, 1, Conv2dOptions.Create(), true),
                 })
        {
            var (x, w, _, dy) = Inputs(g, 5);
            using var _x = x;
            using var _w = w;
            using var _dy = dy;
            using var want = Conv2d.Backward(dy, x, w, true, g.Options);
            using var gx = x.To(d);
            using var gw = w.To(d);
            using var gdy = dy.To(d);
            for (int which = 0; which < 3; which++)
            {
                using var dx = Tensor.Empty(d, DataType.Float32, g.N, g.C, g.H, g.W);
                using var dw = Tensor.Empty(d, DataType.Float32, g.O, g.C, g.KH, g.KW);
                using var db = Tensor.Empty(d, DataType.Float32, g.O);
                foreach (var t in new[] { dx, dw, db }) t.Fill(float.NaN);
                Conv2d.Backward(gdy, gx, gw, which == 0 ? dx : null, which == 1 ? dw : null, which == 2 ? db : null, g.Options);
                var (got, expected) = which switch { 0 => (dx, want.Input!), 1 => (dw, want.Weight), _ => (db, want.Bias!) };
                Close.Tensors(expected, got, Rtol, Atol, $"gradient {which} alone, {g}");
                foreach (var other in new[] { dx, dw, db }.Where(t => t != got))
                    Assert.All(other.ToArray<float>(), v => Assert.True(float.IsNaN(v), $"gradient {which} alone wrote another gradient"));
            }
        }
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void EmptyBatchGivesEmptyOutputAndZeroGradients(string name)
    {
        var d = GpuDevices.Get(name);
        var o = Conv2dOptions.Create(padding: 1);
        using var x = Tensor.Empty(d, DataType.Float32, 0, 2, 5, 5);
        using var w = TestData.On(d, TestData.Uniform(3, 3 * 2 * 9), 3, 2, 3, 3);
        using var b = TestData.On(d, TestData.Uniform(4, 3), 3);
        using var y = Conv2d.Forward(x, w, b, o);
        Assert.Equal("(0, 3, 5, 5)", y.ShapeString);
        using var dy = Tensor.Empty(d, DataType.Float32, 0, 3, 5, 5);
        using var grads = Conv2d.Backward(dy, x, w, true, o);
        Assert.Empty(grads.Input!.ToArray<float>());
        Assert.All(grads.Weight.ToArray<float>(), v => Assert.Equal(0f, v));
        Assert.All(grads.Bias!.ToArray<float>(), v => Assert.Equal(0f, v));
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void BackwardIsBitIdenticalRunToRun(string name)
    {
        var d = GpuDevices.Get(name);
        var g = new Geometry(3, 3, 6, 6, 4, 3, 3, new Conv2dOptions(2, 2, 1, 1, 1, 1), true);
        var (x, w, _, dy) = Inputs(g, 9);
        using var _x = x;
        using var _w = w;
        using var _dy = dy;
        using var gx = x.To(d);
        using var gw = w.To(d);
        using var gdy = dy.To(d);
        using var first = Conv2d.Backward(gdy, gx, gw, true, g.Options);
        using var second = Conv2d.Backward(gdy, gx, gw, true, g.Options);
        Assert.Equal(first.Input!.ToArray<float>(), second.Input!.ToArray<float>());
        Assert.Equal(first.Weight.ToArray<float>(), second.Weight.ToArray<float>());
        Assert.Equal(first.Bias!.ToArray<float>(), second.Bias!.ToArray<float>());
    }
}
