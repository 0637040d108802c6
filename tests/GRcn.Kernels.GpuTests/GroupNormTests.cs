// group_norm on the GPU devices against the CPU backend: random shapes (rank 2 to 5), group
// counts from one group to instance norm, with and without affine parameters, a large mean over a
// small spread (the two-pass variance), every subset of requested gradients; backward bit-identical
// run to run; empty inputs and one-element groups.
using GRcn.Kernels.Gpu;

namespace GRcn.Kernels.GpuTests;

public class GroupNormTests
{
    private static IEnumerable<(int[] Shape, int Groups, bool Affine, float Epsilon, float Offset)> Cases()
    {
        yield return ([2, 6], 3, true, 1e-5f, 0f);
        yield return ([2, 8, 5], 4, true, 1e-5f, 0f);
        yield return ([2, 8, 7, 7], 2, true, 1e-5f, 0f);
        yield return ([1, 6, 3, 4], 6, false, 1e-3f, 0f);
        yield return ([3, 4, 2, 3, 2], 1, true, 1e-5f, 0f);
        yield return ([1, 4, 23, 19], 2, true, 1e-5f, 100f); // large mean, M = 874 > one group's threads
        yield return ([2, 3, 1, 1], 3, true, 1e-5f, 0f);     // one element per group: σ² = 0
        var r = new Random(11);
        for (int t = 0; t < 4; t++)
        {
            int groups = r.Next(1, 4), c = groups * r.Next(1, 4);
            yield return ([r.Next(1, 3), c, r.Next(1, 9), r.Next(1, 9)], groups, r.Next(2) == 1, 1e-5f, (float)r.NextDouble() * 4 - 2);
        }
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void MatchesTheCpuBackend(string name) => CheckCases(GpuDevices.Get(name), Cases());

    /// <summary>The reductions with a GPU's 256 threads per group (8 warps) on every device, the emulator included.</summary>
    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void MatchesTheCpuBackendWithFullGroups(string name)
    {
        GroupSums.ForceThreads = GroupSums.Threads;
        try
        {
            CheckCases(GpuDevices.Get(name), [([1, 4, 9, 37], 2, true, 1e-5f, 0.5f)]); // M = 666: every thread of 256 adds 2 or 3
        }
        finally
        {
            GroupSums.ForceThreads = 0;
        }
    }

    private static void CheckCases(GpuDevice d, IEnumerable<(int[] Shape, int Groups, bool Affine, float Epsilon, float Offset)> cases)
    {
        int seed = 0;
        foreach (var (shape, groups, affine, eps, offset) in cases)
        {
            seed++;
            string what = $"({string.Join(", ", shape)}) groups={groups} affine={affine}";
            int length = shape.Aggregate(1, (a, b) => a * b), c = shape[1];
            var xv = TestData.Uniform(seed, length, offset - 1, offset + 1);
            using var x = Tensor.FromArray(xv, shape);
            using var w = affine ? Tensor.FromArray(TestData.Uniform(seed + 1, c, 0.5f, 1.5f), c) : null;
            using var b = affine ? Tensor.FromArray(TestData.Uniform(seed + 2, c), c) : null;
            using var dy = Tensor.FromArray(TestData.Uniform(seed + 3, length), shape);
            using var gx = x.To(d);
            using var gw = w?.To(d);
            using var gb = b?.To(d);
            using var gdy = dy.To(d);

            using var want = GroupNorm.Forward(x, groups, w, b, eps);
            using var got = GroupNorm.Forward(gx, groups, gw, gb, eps);
            // the CPU's y = x·a + (β − μ·a), a = rstd·γ, rounds β − μ·a at the size of μ·a (the GPU
            // computes (x − μ)·a + β): allow a few float ulps of the largest μ·a
            float[] mu = want.Mean.ToArray<float>(), rs = want.Rstd.ToArray<float>();
            double muA = Enumerable.Range(0, mu.Length).Max(k => Math.Abs(mu[k]) * rs[k]) * (affine ? 1.5 : 1);
            Close.Tensors(want.Output, got.Output, 1e-5, 1e-5 + 8 * 6e-8 * muA, $"y of {what}");
            Close.Tensors(want.Mean, got.Mean, 1e-6, 1e-6, $"mean of {what}");
            Close.Tensors(want.Rstd, got.Rstd, 1e-5, 0, $"rstd of {what}");

            using var dxWant = Tensor.Empty(Device.Cpu, DataType.Float32, shape);
            using var dwWant = Tensor.Empty(Device.Cpu, DataType.Float32, c);
            using var dbWant = Tensor.Empty(Device.Cpu, DataType.Float32, c);
            GroupNorm.Backward(dy, x, want.Mean, want.Rstd, groups, w, dxWant, dwWant, dbWant);
            using var dx = Tensor.Empty(d, DataType.Float32, shape);
            using var dw = Tensor.Empty(d, DataType.Float32, c);
            using var db = Tensor.Empty(d, DataType.Float32, c);
            GroupNorm.Backward(gdy, gx, got.Mean, got.Rstd, groups, gw, dx, dw, db);
            // dx is a difference of terms of the size of dy·rstd: compare on that scale
            Close.Tensors(dxWant, dx, 1e-4, 1e-4, $"dx of {what}");
            Close.Tensors(dwWant, dw, 1e-4, 1e-4, $"dweight of {what}");
            Close.Tensors(dbWant, db, 1e-5, 1e-5, $"dbias of {what}");

            // the same gradients again, requested one at a time, bit for bit
            using var dx2 = Tensor.Empty(d, DataType.Float32, shape);
            using var dw2 = Tensor.Empty(d, DataType.Float32, c);
            using var db2 = Tensor.Empty(d, DataType.Float32, c);
            GroupNorm.Backward(gdy, gx, got.Mean, got.Rstd, groups, gw, dx2, null, null);
            GroupNorm.Backward(gdy, gx, got.Mean, got.Rstd, groups, gw, null, dw2, null);
            GroupNorm.Backward(gdy, gx, got.Mean, got.Rstd, groups, gw, null, null, db2);
            Assert.True(dx.ToArray<float>().AsSpan().SequenceEqual(dx2.ToArray<float>()), $"dx of {what} run to run");
            Assert.True(dw.ToArray<float>().AsSpan().SequenceEqual(dw2.ToArray<float>()), $"dweight of {what} run to run");
            Assert.True(db.ToArray<float>().AsSpan().SequenceEqual(db2.ToArray<float>()), $"dbias of {what} run to run");
        }
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void EmptyInputs(string name)
    {
        var d = GpuDevices.Get(name);
        using var x = Tensor.Zeros(d, 0, 4, 3, 3);
        using var r = GroupNorm.Forward(x, 2, null, null);
        Assert.Equal("(0, 4, 3, 3)", r.Output.ShapeString);
        Assert.Equal("(0, 2)", r.Mean.ShapeString);
        using var dw = TestData.On(d, [1f, 2f, 3f, 4f], 4);
        GroupNorm.Backward(x, x, r.Mean, r.Rstd, 2, null, null, dw, null);
        Assert.Equal([0f, 0f, 0f, 0f], dw.ToArray<float>());

        using var flat = Tensor.Zeros(d, 2, 4, 0);
        using var rf = GroupNorm.Forward(flat, 4, null, null);
        Assert.Equal("(2, 4, 0)", rf.Output.ShapeString);
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void OneElementGroupNormalisesToTheBias(string name)
    {
        var d = GpuDevices.Get(name);
        using var x = TestData.On(d, [3f, -7f], 1, 2);
        using var w = TestData.On(d, [2f, 5f], 2);
        using var b = TestData.On(d, [0.25f, -1f], 2);
        using var r = GroupNorm.Forward(x, 2, w, b, 1e-5f);
        Assert.Equal([0.25f, -1f], r.Output.ToArray<float>());
        Assert.Equal([3f, -7f], r.Mean.ToArray<float>());
        Close.Assert([(float)(1 / Math.Sqrt(1e-5f)), (float)(1 / Math.Sqrt(1e-5f))], r.Rstd.ToArray<float>(), 1e-6, 0);
    }
}
