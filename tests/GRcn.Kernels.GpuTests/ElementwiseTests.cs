// Elementwise and per-channel ops on the GPU devices against the CPU backend: every op on odd
// lengths, in place where the op allows it, ReLU's NaN and signed zero, per-channel ops with and
// without their optional operands, channel sums with and without accumulation (and bit-identical
// run to run), global average pooling both ways, several AdamW steps, and empty tensors.
namespace GRcn.Kernels.GpuTests;

public class ElementwiseTests
{
    private static readonly int[] s_lengths = [1, 7, 33, 1000];

    /// <summary>Runs op on CPU tensors and on copies of them on d, then compares every tensor (outputs and in-place inputs).</summary>
    private static void Compare(GpuDevice d, float[][] data, Action<Tensor[]> op, double rtol, double atol, string what)
    {
        var cpu = data.Select(a => Tensor.FromArray((float[])a.Clone(), a.Length)).ToArray();
        var gpu = cpu.Select(t => t.To(d)).ToArray();
        try
        {
            op(cpu);
            op(gpu);
            for (int i = 0; i < cpu.Length; i++)
                if (rtol == 0 && atol == 0) Exact(cpu[i], gpu[i], $"{what}: tensor {i}");
                else Close.Tensors(cpu[i], gpu[i], rtol, atol, $"{what}: tensor {i}");
        }
        finally
        {
            foreach (var t in cpu.Concat(gpu)) t.Dispose();
        }
    }

    /// <summary>Bit-identical tensors (any NaN matches any NaN).</summary>
    private static void Exact(Tensor want, Tensor got, string what)
    {
        Assert.Equal(want.ShapeString, got.ShapeString);
        float[] a = want.ToArray<float>(), b = got.ToArray<float>();
        for (int i = 0; i < a.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(a[i]) == BitConverter.SingleToInt32Bits(b[i]) || (float.IsNaN(a[i]) && float.IsNaN(b[i])),
                $"{what}: element {i} is {b[i]}, expected {a[i]} bit for bit");
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void FlatOpsMatchTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        int seed = 0;
        foreach (int n in s_lengths)
        {
            seed += 10;
            float[] a = TestData.Uniform(seed, n), b = TestData.Uniform(seed + 1, n), y = TestData.Uniform(seed + 2, n);
            Compare(d, [a, y], t => Elementwise.Relu(t[0], t[1]), 0, 0, $"relu {n}");
            Compare(d, [a], t => Elementwise.Relu(t[0], t[0]), 0, 0, $"relu in place {n}");
            Compare(d, [b, a, y], t => Elementwise.ReluBackward(t[0], t[1], t[2]), 0, 0, $"relu backward {n}");
            Compare(d, [b, a], t => Elementwise.ReluBackward(t[0], t[1], t[0]), 0, 0, $"relu backward in place {n}");
            Compare(d, [a, b, y], t => Elementwise.Add(t[0], t[1], t[2]), 0, 0, $"add {n}");
            Compare(d, [a, b], t => Elementwise.Add(t[0], t[1], t[1]), 0, 0, $"add in place {n}");
            Compare(d, [y, a], t => Elementwise.AddScaled(t[0], t[1], -0.75f), 1e-6, 1e-7, $"add scaled {n}");
            Compare(d, [a, y], t => Elementwise.Scale(t[0], 3.5f, t[1]), 0, 0, $"scale {n}");
            Compare(d, [a], t => Elementwise.Scale(t[0], -0.5f, t[0]), 0, 0, $"scale in place {n}");
            Compare(d, [a, b, y], t => Elementwise.Multiply(t[0], t[1], t[2]), 0, 0, $"multiply {n}");
            Compare(d, [a, b], t => Elementwise.Multiply(t[0], t[1], t[0]), 0, 0, $"multiply in place {n}");
        }
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void ReluPropagatesNaNAndClearsNegativeZero(string name)
    {
        var d = GpuDevices.Get(name);
        using var x = TestData.On(d, [float.NaN, -0f, -1f, 2f, float.NegativeInfinity, float.PositiveInfinity, 0f, -3f], 8);
        using var y = Tensor.Empty(d, DataType.Float32, 8);
        Elementwise.Relu(x, y);
        float[] got = y.ToArray<float>();
        Assert.True(float.IsNaN(got[0]));
        Assert.Equal([0f, 0f, 2f, 0f, float.PositiveInfinity, 0f, 0f], got[1..]);
        Assert.False(float.IsNegative(got[1]), "relu(−0) is +0");
        // relu's gradient is 0 where y is NaN, 0 or negative
        using var dy = TestData.On(d, [1f, 2f, 3f, 4f, 5f, 6f, 7f, 8f], 8);
        using var dx = Tensor.Empty(d, DataType.Float32, 8);
        Elementwise.ReluBackward(dy, y, dx);
        Assert.Equal([0f, 0f, 0f, 4f, 0f, 6f, 0f, 0f], dx.ToArray<float>());
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void ChannelOpsMatchTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        int seed = 100;
        foreach (int[] shape in new[] { new[] { 1, 1 }, [2, 3], [2, 5, 7], [3, 4, 5, 6], [1, 3, 1, 1], [2, 2, 2, 3, 2] })
        {
            seed += 10;
            int n = shape.Aggregate(1, (p, q) => p * q), c = shape[1], planes = shape[0] * c;
            string what = $"({string.Join(", ", shape)})";
            float[] x = TestData.Uniform(seed, n), scale = TestData.Uniform(seed + 1, c), shift = TestData.Uniform(seed + 2, c);
            using var cx = Tensor.FromArray(x, shape);
            using var gx = cx.To(d);
            using var cs = Tensor.FromArray(scale, c);
            using var gs = cs.To(d);
            using var ch = Tensor.FromArray(shift, c);
            using var gh = ch.To(d);
            foreach (var (useScale, useShift) in new[] { (true, true), (true, false), (false, true), (false, false) })
            {
                using var cy = Tensor.Empty(Device.Cpu, DataType.Float32, shape);
                using var gy = Tensor.Empty(d, DataType.Float32, shape);
                Elementwise.ChannelAffine(cx, useScale ? cs : null, useShift ? ch : null, cy);
                Elementwise.ChannelAffine(gx, useScale ? gs : null, useShift ? gh : null, gy);
                Close.Tensors(cy, gy, 1e-6, 1e-6, $"channel affine {what} scale={useScale} shift={useShift}");
            }
            using (var inPlace = gx.Clone())
            {
                using var cy = Tensor.Empty(Device.Cpu, DataType.Float32, shape);
                Elementwise.ChannelAffine(cx, cs, ch, cy);
                Elementwise.ChannelAffine(inPlace, gs, gh, inPlace);
                Close.Tensors(cy, inPlace, 1e-6, 1e-6, $"channel affine in place {what}");
            }

            foreach (bool accumulate in new[] { false, true })
            {
                using var cSum = Tensor.FromArray(TestData.Uniform(seed + 3, c), c);
                using var gSum = cSum.To(d);
                using var gSum2 = cSum.To(d);
                Elementwise.ChannelSum(cx, cSum, accumulate);
                Elementwise.ChannelSum(gx, gSum, accumulate);
                Elementwise.ChannelSum(gx, gSum2, accumulate);
                Close.Tensors(cSum, gSum, 1e-5, 1e-6, $"channel sum {what} accumulate={accumulate}");
                Assert.True(gSum.ToArray<float>().AsSpan().SequenceEqual(gSum2.ToArray<float>()), $"channel sum {what} run to run");
            }

            using var cAvg = Tensor.Empty(Device.Cpu, DataType.Float32, shape[0], c);
            using var gAvg = Tensor.Empty(d, DataType.Float32, shape[0], c);
            Elementwise.GlobalAveragePool(cx, cAvg);
            Elementwise.GlobalAveragePool(gx, gAvg);
            Close.Tensors(cAvg, gAvg, 1e-5, 1e-6, $"global average pool {what}");
            using var cdy = Tensor.FromArray(TestData.Uniform(seed + 4, planes), shape[0], c);
            using var gdy = cdy.To(d);
            using var cdx = Tensor.Empty(Device.Cpu, DataType.Float32, shape);
            using var gdx = Tensor.Empty(d, DataType.Float32, shape);
            Elementwise.GlobalAveragePoolBackward(cdy, cdx);
            Elementwise.GlobalAveragePoolBackward(gdy, gdx);
            Exact(cdx, gdx, $"global average pool backward {what}");
        }
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void AdamWMatchesTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        foreach (int n in s_lengths)
        {
            float[] w = TestData.Uniform(n, n), m = new float[n], v = new float[n];
            Compare(d, [w, m, v], t =>
            {
                for (int step = 1; step <= 4; step++)
                {
                    using var g = TestData.On(t[0].Device, TestData.Uniform(1000 + step, n, -0.1f, 0.1f), n);
                    Elementwise.AdamWUpdate(t[0], g, t[1], t[2], new AdamWStep(1e-3f, 0.9f, 0.999f, 1e-8f, 0.05f, step));
                }
            }, 1e-6, 1e-7, $"adamw {n}");
        }
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void EmptyTensors(string name)
    {
        var d = GpuDevices.Get(name);
        using var e = Tensor.Empty(d, DataType.Float32, 0, 3, 4);
        Elementwise.Relu(e, e);
        Elementwise.Add(e, e, e);
        Elementwise.ChannelAffine(e, null, null, e);
        using var sum = TestData.On(d, [1f, 2f, 3f], 3);
        Elementwise.ChannelSum(e, sum, accumulate: true);
        Assert.Equal([1f, 2f, 3f], sum.ToArray<float>());
        Elementwise.ChannelSum(e, sum);
        Assert.Equal([0f, 0f, 0f], sum.ToArray<float>());
        using var avg = Tensor.Empty(d, DataType.Float32, 0, 3);
        Elementwise.GlobalAveragePool(e, avg);
        Elementwise.GlobalAveragePoolBackward(avg, e);
        using var noSpace = Tensor.Empty(d, DataType.Float32, 2, 3, 0);
        Elementwise.ChannelSum(noSpace, sum, accumulate: false);
        Assert.Equal([0f, 0f, 0f], sum.ToArray<float>());
    }
}
