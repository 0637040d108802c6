// max_pool2d on the GPU devices against the CPU backend: random geometries (windows, strides,
// padding, ceil mode) over data with NaN, −inf and ties; outputs and indices exactly equal;
// backward in both modes (the deterministic gather bit-identical to the CPU and run to run, the
// atomic scatter within rounding); indices that are not the forward's; empty and one-element inputs.
namespace GRcn.Kernels.GpuTests;

public class MaxPool2dTests
{
    /// <summary>Quantised values (many ties), with some NaN and −inf.</summary>
    private static float[] Data(int seed, int n)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++)
        {
            int pick = r.Next(40);
            a[i] = pick == 0 ? float.NaN : pick == 1 ? float.NegativeInfinity : r.Next(-6, 7) * 0.5f;
        }
        return a;
    }

    private static IEnumerable<(int N, int C, int H, int W, MaxPool2dOptions O)> Cases()
    {
        yield return (2, 3, 8, 9, MaxPool2dOptions.Create(2, 1));
        yield return (1, 4, 10, 10, MaxPool2dOptions.Create(2));
        yield return (1, 2, 7, 9, MaxPool2dOptions.Create(2, ceilMode: true));
        yield return (2, 2, 9, 8, MaxPool2dOptions.Create(3, 2, 1));
        yield return (1, 3, 9, 9, MaxPool2dOptions.Create(3, 2, 1, ceilMode: true));
        yield return (1, 2, 6, 7, MaxPool2dOptions.Create(3, 1, 1));
        yield return (1, 1, 5, 6, new MaxPool2dOptions(5, 6, 1, 1));
        yield return (1, 2, 7, 8, new MaxPool2dOptions(2, 3, 1, 2, 1, 1));
        yield return (2, 1, 9, 7, new MaxPool2dOptions(3, 2, 2, 1, 0, 1, CeilMode: true));
        yield return (1, 1, 5, 5, MaxPool2dOptions.Create(1, 2));
        yield return (1, 1, 5, 5, MaxPool2dOptions.Create(2, 3, ceilMode: true));
        var r = new Random(7);
        for (int t = 0; t < 6; t++)
        {
            int kh = r.Next(1, 5), kw = r.Next(1, 5);
            var o = new MaxPool2dOptions(kh, kw, r.Next(1, 4), r.Next(1, 4), r.Next(0, kh / 2 + 1), r.Next(0, kw / 2 + 1), r.Next(2) == 1);
            yield return (r.Next(1, 3), r.Next(1, 4), r.Next(kh, 12), r.Next(kw, 12), o);
        }
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void MatchesTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        int seed = 0;
        foreach (var (n, c, h, w, o) in Cases())
        {
            seed++;
            string what = $"{n}x{c}x{h}x{w} {o}";
            using var x = Tensor.FromArray(Data(seed, n * c * h * w), n, c, h, w);
            using var gx = x.To(d);
            using var want = MaxPool2d.Forward(x, o);
            using var got = MaxPool2d.Forward(gx, o);
            Assert.Equal(want.Output.ShapeString, got.Output.ShapeString);
            Assert.True(want.Output.ToArray<float>().AsSpan().SequenceEqual(got.Output.ToArray<float>()), $"y of {what}");
            Assert.True(want.Indices.ToArray<long>().AsSpan().SequenceEqual(got.Indices.ToArray<long>()), $"indices of {what}");

            var shape = want.Output.Shape.ToArray();
            using var dy = Tensor.FromArray(TestData.Uniform(seed + 100, (int)want.Output.Length), shape);
            using var gdy = dy.To(d);
            using var dxWant = MaxPool2d.Backward(dy, want.Indices, h, w, o);
            using var dxGather = Backward(d, gdy, got.Indices, h, w, o, deterministic: true);
            using var dxAgain = Backward(d, gdy, got.Indices, h, w, o, deterministic: true);
            using var dxAtomic = Backward(d, gdy, got.Indices, h, w, o, deterministic: false);
            float[] gather = dxGather.ToArray<float>();
            Assert.True(dxWant.ToArray<float>().AsSpan().SequenceEqual(gather), $"deterministic gradX of {what} equals the CPU's bit for bit");
            Assert.True(gather.AsSpan().SequenceEqual(dxAgain.ToArray<float>()), $"deterministic gradX of {what} run to run");
            Close.Tensors(dxWant, dxAtomic, 1e-6, 1e-6, $"atomic gradX of {what}");
        }
    }

    /// <summary>Indices chosen freely inside each output's window (not the forward's winners) are scattered like the CPU does.</summary>
    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void BackwardFollowsAnyInWindowIndices(string name)
    {
        var d = GpuDevices.Get(name);
        var o = MaxPool2dOptions.Create(3, 1, 1);
        int n = 2, c = 2, h = 6, w = 5;
        int oh = MaxPool2d.OutputSize(h, 3, 1, 1, false), ow = MaxPool2d.OutputSize(w, 3, 1, 1, false);
        var r = new Random(3);
        var idx = new long[n * c * oh * ow];
        for (int p = 0, e = 0; p < n * c; p++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++, e++)
                {
                    int hh = Math.Clamp(i - 1 + r.Next(3), 0, h - 1), ww = Math.Clamp(j - 1 + r.Next(3), 0, w - 1);
                    idx[e] = (long)hh * w + ww;
                }
        using var indices = Tensor.FromArray(idx, n, c, oh, ow);
        using var gi = indices.To(d);
        using var dy = Tensor.FromArray(TestData.Uniform(5, idx.Length), n, c, oh, ow);
        using var gdy = dy.To(d);
        using var want = MaxPool2d.Backward(dy, indices, h, w, o);
        using var gather = Backward(d, gdy, gi, h, w, o, deterministic: true);
        using var atomic = Backward(d, gdy, gi, h, w, o, deterministic: false);
        Assert.True(want.ToArray<float>().AsSpan().SequenceEqual(gather.ToArray<float>()));
        Close.Tensors(want, atomic, 1e-6, 1e-6);
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void EmptyAndSingleElement(string name)
    {
        var d = GpuDevices.Get(name);
        using (var empty = Tensor.Zeros(d, 0, 3, 4, 4))
        {
            using var r = MaxPool2d.Forward(empty, MaxPool2dOptions.Create(2));
            Assert.Equal("(0, 3, 2, 2)", r.Output.ShapeString);
            foreach (bool deterministic in new[] { true, false })
            {
                using var dx = Backward(d, r.Output, r.Indices, 4, 4, MaxPool2dOptions.Create(2), deterministic);
                Assert.Equal(0, dx.Length);
            }
        }
        using var one = TestData.On(d, [-2.5f], 1, 1, 1, 1);
        using var p = MaxPool2d.Forward(one, MaxPool2dOptions.Create(1));
        Assert.Equal([-2.5f], p.Output.ToArray<float>());
        Assert.Equal([0L], p.Indices.ToArray<long>());
        using var g = TestData.On(d, [4f], 1, 1, 1, 1);
        foreach (bool deterministic in new[] { true, false })
        {
            using var dx = Backward(d, g, p.Indices, 1, 1, MaxPool2dOptions.Create(1), deterministic);
            Assert.Equal([4f], dx.ToArray<float>());
        }
        // a window of only −inf and NaN: the NaN wins; a window of only −inf reports its first element
        using var special = TestData.On(d, [float.NegativeInfinity, float.NegativeInfinity, float.NaN, float.NegativeInfinity], 1, 1, 1, 4);
        using var s = MaxPool2d.Forward(special, new MaxPool2dOptions(1, 2, 1, 2));
        var ys = s.Output.ToArray<float>();
        Assert.True(float.IsNegativeInfinity(ys[0]) && float.IsNaN(ys[1]));
        Assert.Equal([0L, 2L], s.Indices.ToArray<long>());
    }

    private static Tensor Backward(GpuDevice d, Tensor gradY, Tensor indices, int h, int w, MaxPool2dOptions o, bool deterministic) =>
        GpuDevices.WithDeterminism(d, deterministic, () => MaxPool2d.Backward(gradY, indices, h, w, o));
}
