using System.Runtime.Intrinsics.X86;
using GRcn.Kernels.Cpu;
using GRcn.Kernels.Tests.Reference;

namespace GRcn.Kernels.Tests;

public sealed class MaxPool2dTests
{
    /// <summary>Allowed error of the input gradient relative to |want| (float32 sums of a few dy values).</summary>
    private const double GradRelTol = 1e-6;
    /// <summary>Absolute floor of the allowed gradient error.</summary>
    private const double GradAbsTol = 1e-6;

    private const float Nan = float.NaN;
    private const float NegInf = float.NegativeInfinity;

    public static TheoryData<MaxPool2dCase> Cases => new()
    {
        new MaxPool2dCase(2, 3, 7, 9, 2, 2, 1, 1),                      // G-RCN pool(2,2,1)
        new MaxPool2dCase(2, 4, 10, 12, 2, 2, 2, 2),                    // VGG pool
        new MaxPool2dCase(2, 3, 11, 12, 2, 2, 2, 2, CeilMode: true),    // odd size, ceil adds a window
        new MaxPool2dCase(1, 3, 9, 7, 3, 3, 2, 2, 1, 1),                // ResNet stem pool
        new MaxPool2dCase(1, 2, 5, 6, 3, 3, 1, 1, 1, 1),                // 3×3/s1 pad 1
        new MaxPool2dCase(1, 2, 9, 8, 3, 3, 2, 2, 0, 0, true),
        new MaxPool2dCase(1, 2, 3, 3, 2, 2, 2, 2, 1, 1, true),          // ceil mode drops a window that starts in the padding
        new MaxPool2dCase(2, 3, 11, 13, 3, 2, 3, 2, 1, 1, true),
        new MaxPool2dCase(1, 2, 6, 5, 5, 5, 3, 3, 2, 2, true),
        new MaxPool2dCase(1, 1, 1, 1, 1, 1, 1, 1),
        new MaxPool2dCase(1, 1, 4, 4, 4, 4, 1, 1),
        new MaxPool2dCase(3, 2, 8, 8, 2, 3, 1, 2, 1, 1),                // rectangular window
        new MaxPool2dCase(1, 2, 10, 10, 2, 2, 3, 3),                    // stride above the window (gaps)
        new MaxPool2dCase(1, 2, 13, 13, 2, 2, 3, 3, 1, 1, true),
    };

    /// <summary>Random values of three kinds: continuous, small integers (many ties), and with −inf and NaN sprinkled in.</summary>
    private static float[] Values(Random rng, int count, int kind)
    {
        var v = new float[count];
        for (int i = 0; i < count; i++)
        {
            v[i] = kind switch
            {
                0 => 2f * rng.NextSingle() - 1f,
                1 => rng.Next(-2, 3),
                _ => rng.Next(8) switch { 0 => NegInf, 1 => Nan, _ => rng.Next(-3, 4) },
            };
        }
        return v;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ForwardAndBackward_MatchReference(MaxPool2dCase k)
    {
        var rng = new Random(k.H * 1009 + k.W * 101 + k.KH * 11 + k.StrideH);
        for (int kind = 0; kind < 3; kind++)
        {
            var x = Values(rng, k.N * k.C * k.H * k.W, kind);
            using var tx = Tensor.FromArray(x, k.N, k.C, k.H, k.W);
            using var r = MaxPool2d.Forward(tx, k.Options);
            Assert.Equal([k.N, k.C, k.OH, k.OW], r.Output.Shape.ToArray());
            var (wantY, wantI) = MaxPool2dReference.Forward(k, x);
            var gotY = r.Output.ToArray<float>();
            var gotI = r.Indices.ToArray<long>();
            for (int i = 0; i < gotY.Length; i++)
            {
                if (gotI[i] != wantI[i] || !gotY[i].Equals(wantY[i]))
                    Assert.Fail($"{k} kind {kind}: output {i} = ({gotY[i]}, {gotI[i]}), want ({wantY[i]}, {wantI[i]})");
            }

            var dy = Values(rng, gotY.Length, 0);
            using var tdy = Tensor.FromArray(dy, k.N, k.C, k.OH, k.OW);
            using var dx = MaxPool2d.Backward(tdy, r.Indices, k.H, k.W, k.Options);
            var want = MaxPool2dReference.Backward(k, dy, wantI);
            var got = dx.ToArray<float>();
            Assert.Equal(want.Length, got.Length);
            for (int i = 0; i < got.Length; i++)
            {
                if (!(Math.Abs(got[i] - want[i]) <= GradAbsTol + GradRelTol * Math.Abs(want[i])))
                    Assert.Fail($"{k} kind {kind}: dx[{i}] = {got[i]}, want {want[i]}");
            }
        }
    }

    /// <summary>Values for the 2×2 paths: kinds of <see cref="Values"/>, plus signed zeros and −inf runs.</summary>
    private static float[] Window2Values(Random rng, int count, int kind) => kind < 3
        ? Values(rng, count, kind)
        : Enumerable.Range(0, count).Select(_ => rng.Next(6) switch { 0 => NegInf, 1 => -0f, 2 => 0f, 3 => Nan, _ => rng.Next(-1, 2) }).ToArray();

    private static (float[] Y, long[] Index, float[] Dx) Run(MaxPool2dCase k, float[] x, float[] dy, long[]? indices, bool generic)
    {
        MaxPool2dCpu.ForceGeneric = generic;
        try
        {
            using var tx = Tensor.FromArray(x, k.N, k.C, k.H, k.W);
            using var r = MaxPool2d.Forward(tx, k.Options);
            using var ti = Tensor.FromArray(indices ?? r.Indices.ToArray<long>(), k.N, k.C, k.OH, k.OW);
            using var tdy = Tensor.FromArray(dy, k.N, k.C, k.OH, k.OW);
            using var dx = MaxPool2d.Backward(tdy, ti, k.H, k.W, k.Options);
            return (r.Output.ToArray<float>(), r.Indices.ToArray<long>(), dx.ToArray<float>());
        }
        finally
        {
            MaxPool2dCpu.ForceGeneric = false;
        }
    }

    private static void AssertSameBits(float[] want, float[] got, string what)
    {
        Assert.Equal(want.Length, got.Length);
        for (int i = 0; i < got.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(got[i]) != BitConverter.SingleToInt32Bits(want[i]))
                Assert.Fail($"{what}[{i}] = {got[i]} ({BitConverter.SingleToInt32Bits(got[i]):x8}), generic path gives {want[i]} ({BitConverter.SingleToInt32Bits(want[i]):x8})");
        }
    }

    private static void AssertGradient(MaxPool2dCase k, double[] want, float[] got, string what)
    {
        Assert.Equal(want.Length, got.Length);
        for (int i = 0; i < got.Length; i++)
        {
            if (!(Math.Abs(got[i] - want[i]) <= GradAbsTol + GradRelTol * Math.Abs(want[i])))
                Assert.Fail($"{k} {what}: dx[{i}] = {got[i]}, want {want[i]}");
        }
    }

    private static MaxPool2dGeometry Geometry(MaxPool2dCase k) =>
        new(k.N, k.C, k.H, k.W, k.OH, k.OW, k.KH, k.KW, k.StrideH, k.StrideW, k.PadH, k.PadW);

    /// <summary>The 2×2 paths need AVX2; elsewhere everything is generic.</summary>
    private static MaxPool2dPath Fast(MaxPool2dPath path) => Avx2.IsSupported ? path : MaxPool2dPath.Generic;

    [Theory]
    [InlineData(2)]
    [InlineData(1)]
    public void Window2FastPaths_MatchReferenceAndGenericPath_OnRandomShapes(int stride)
    {
        var rng = new Random(4242 + stride);
        for (int trial = 0; trial < 60; trial++)
        {
            // Widths around and off multiples of 8 (vector steps plus scalar tails), odd heights, and
            // ceil mode, which keeps whole windows on even sizes and adds a partial one (generic) on odd.
            int h = rng.Next(2, 20), w = trial < 8 ? 2 * stride * 8 + trial : rng.Next(2, 60);
            var k = new MaxPool2dCase(rng.Next(1, 3), rng.Next(1, 4), h, w, 2, 2, stride, stride, CeilMode: rng.Next(4) == 0);
            bool whole = stride == 1 || (h % 2 == 0 && w % 2 == 0) || !k.CeilMode;
            Assert.Equal(whole ? Fast(stride == 2 ? MaxPool2dPath.Window2Stride2 : MaxPool2dPath.Window2Stride1) : MaxPool2dPath.Generic,
                MaxPool2dCpu.Choose(Geometry(k)));
            int kind = trial % 4;
            var x = Window2Values(rng, k.N * k.C * k.H * k.W, kind);
            // Gradients with signed zeros: the fast backward must give the scatter's bits (0 + −0 = +0).
            var dy = Window2Values(rng, k.N * k.C * k.OH * k.OW, 0).Select(v => rng.Next(5) == 0 ? -0f : v).ToArray();

            var fast = Run(k, x, dy, null, generic: false);
            var (wantY, wantI) = MaxPool2dReference.Forward(k, x);
            for (int i = 0; i < wantY.Length; i++)
            {
                if (fast.Index[i] != wantI[i] || !fast.Y[i].Equals(wantY[i]))
                    Assert.Fail($"{k} kind {kind}: output {i} = ({fast.Y[i]}, {fast.Index[i]}), want ({wantY[i]}, {wantI[i]})");
            }
            AssertGradient(k, MaxPool2dReference.Backward(k, dy, wantI), fast.Dx, $"kind {kind}");

            var generic = Run(k, x, dy, null, generic: true);
            AssertSameBits(generic.Y, fast.Y, "y");
            Assert.Equal(generic.Index, fast.Index);
            AssertSameBits(generic.Dx, fast.Dx, "dx");
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(1)]
    public void Window2Backward_IndexOutsideItsWindow_ScattersAsGiven(int stride)
    {
        // Indices a forward pass would not give (another cell of the plane) make the fast backward
        // decline the plane; the scatter must then give the reference sums. W = 21: vector columns and a tail.
        var rng = new Random(77 + stride);
        var k = new MaxPool2dCase(1, 4, 9, 21, 2, 2, stride, stride);
        var x = Values(rng, k.N * k.C * k.H * k.W, 0);
        var dy = Values(rng, k.N * k.C * k.OH * k.OW, 0);
        var (_, indices) = MaxPool2dReference.Forward(k, x);
        int plane = k.OH * k.OW;
        indices[0 * plane + 3] = k.H * k.W - 1;               // vector part of plane 0
        indices[1 * plane + k.OW - 1] = 0;                     // scalar tail of plane 1
        indices[2 * plane + plane - 1] = indices[2 * plane + plane - 1] + 2; // two columns right of its window
        var want = MaxPool2dReference.Backward(k, dy, indices);
        var fast = Run(k, x, dy, indices, generic: false);
        AssertGradient(k, want, fast.Dx, "moved indices");
        AssertSameBits(Run(k, x, dy, indices, generic: true).Dx, fast.Dx, "dx");
    }

    [Fact]
    public void Choose_TakesTheGenericPathUnlessEveryWindowIsAWhole2x2WithStride2Or1()
    {
        Assert.Equal(Fast(MaxPool2dPath.Window2Stride2), MaxPool2dCpu.Choose(Geometry(new MaxPool2dCase(1, 2, 76, 100, 2, 2, 2, 2))));
        Assert.Equal(Fast(MaxPool2dPath.Window2Stride2), MaxPool2dCpu.Choose(Geometry(new MaxPool2dCase(1, 2, 7, 9, 2, 2, 2, 2))));
        Assert.Equal(Fast(MaxPool2dPath.Window2Stride2), MaxPool2dCpu.Choose(Geometry(new MaxPool2dCase(1, 2, 8, 10, 2, 2, 2, 2, CeilMode: true))));
        Assert.Equal(Fast(MaxPool2dPath.Window2Stride1), MaxPool2dCpu.Choose(Geometry(new MaxPool2dCase(1, 2, 76, 100, 2, 2, 1, 1))));
        Assert.Equal(Fast(MaxPool2dPath.Window2Stride1), MaxPool2dCpu.Choose(Geometry(new MaxPool2dCase(1, 2, 7, 9, 2, 2, 1, 1, CeilMode: true))));
        MaxPool2dCase[] generic =
        [
            new(1, 2, 11, 12, 2, 2, 2, 2, CeilMode: true),   // odd height: ceil adds a window hanging over the edge
            new(1, 2, 12, 11, 2, 2, 2, 2, CeilMode: true),
            new(1, 2, 3, 3, 2, 2, 2, 2, 1, 1, true),
            new(1, 2, 8, 8, 2, 2, 1, 1, 1, 1),                // padding
            new(1, 2, 8, 8, 2, 2, 2, 2, 1, 0),
            new(1, 2, 8, 8, 2, 2, 2, 1),                      // mixed strides
            new(1, 2, 10, 10, 2, 2, 3, 3),                    // stride above the window
            new(1, 2, 9, 9, 3, 3, 2, 2),
            new(1, 2, 8, 8, 2, 3, 1, 1),
        ];
        foreach (var k in generic) Assert.Equal(MaxPool2dPath.Generic, MaxPool2dCpu.Choose(Geometry(k)));
        MaxPool2dCpu.ForceGeneric = true;
        try
        {
            Assert.Equal(MaxPool2dPath.Generic, MaxPool2dCpu.Choose(Geometry(new MaxPool2dCase(1, 2, 76, 100, 2, 2, 2, 2))));
        }
        finally
        {
            MaxPool2dCpu.ForceGeneric = false;
        }
    }

    [Theory]
    [InlineData(3, 2, 2, 1, 2, 2)]
    [InlineData(9, 3, 2, 0, 4, 4)]
    [InlineData(5, 3, 1, 1, 5, 5)]
    [InlineData(6, 5, 3, 2, 3, 2)]
    [InlineData(11, 3, 3, 1, 4, 4)]
    [InlineData(7, 2, 2, 0, 4, 3)]
    public void OutputSize_MatchesTorch(int input, int kernel, int stride, int pad, int ceilSize, int floorSize)
    {
        // Sizes printed by torch.nn.functional.max_pool2d on an input×input plane.
        Assert.Equal(ceilSize, MaxPool2d.OutputSize(input, kernel, stride, pad, ceilMode: true));
        Assert.Equal(floorSize, MaxPool2d.OutputSize(input, kernel, stride, pad, ceilMode: false));
    }

    [Fact]
    public void HandComputed_2x2Stride2()
    {
        float[] x =
        [
            1, 3, 2, 0,
            4, 2, 8, 1,
            0, 0, 5, 6,
            7, 1, 6, 5,
        ];
        using var tx = Tensor.FromArray(x, 1, 1, 4, 4);
        using var r = MaxPool2d.Forward(tx, MaxPool2dOptions.Create(2));
        Assert.Equal([4f, 8f, 7f, 6f], r.Output.ToArray<float>());
        Assert.Equal([4L, 6L, 12L, 11L], r.Indices.ToArray<long>());
        using var dy = Tensor.FromArray(new float[] { 1, 2, 3, 4 }, 1, 1, 2, 2);
        using var dx = MaxPool2d.Backward(dy, r.Indices, 4, 4, MaxPool2dOptions.Create(2));
        Assert.Equal([0f, 0f, 0f, 0f, 1f, 0f, 2f, 0f, 0f, 0f, 0f, 4f, 3f, 0f, 0f, 0f], dx.ToArray<float>());
    }

    [Fact]
    public void TiesPickFirstInRowMajorOrder_AndOverlappingGradientsAccumulate()
    {
        // 3×3 of equal values, 2×2/s1: each window's winner is its top-left element.
        using var tx = Tensor.FromArray(Enumerable.Repeat(1f, 9).ToArray(), 1, 1, 3, 3);
        var o = MaxPool2dOptions.Create(2, stride: 1);
        using var r = MaxPool2d.Forward(tx, o);
        Assert.Equal([0L, 1L, 3L, 4L], r.Indices.ToArray<long>());

        // A single peak in the centre wins all four overlapping windows: its gradient is the sum.
        float[] peak = [0, 0, 0, 0, 9, 0, 0, 0, 0];
        using var tp = Tensor.FromArray(peak, 1, 1, 3, 3);
        using var rp = MaxPool2d.Forward(tp, o);
        Assert.Equal([4L, 4L, 4L, 4L], rp.Indices.ToArray<long>());
        using var dy = Tensor.FromArray(new float[] { 1, 2, 3, 4 }, 1, 1, 2, 2);
        using var dx = MaxPool2d.Backward(dy, rp.Indices, 3, 3, o);
        Assert.Equal([0f, 0f, 0f, 0f, 10f, 0f, 0f, 0f, 0f], dx.ToArray<float>());
    }

    [Fact]
    public void AllNegativeInfinityWindow_ReportsFirstInBoundsElement()
    {
        // torch: max_pool2d(full((1,1,3,3), -inf), 3, 1, 1) gives indices [[0,0,1],[0,0,1],[3,3,4]].
        using var tx = Tensor.FromArray(Enumerable.Repeat(NegInf, 9).ToArray(), 1, 1, 3, 3);
        using var r = MaxPool2d.Forward(tx, MaxPool2dOptions.Create(3, stride: 1, padding: 1));
        Assert.All(r.Output.ToArray<float>(), v => Assert.Equal(NegInf, v));
        Assert.Equal([0L, 0L, 1L, 0L, 0L, 1L, 3L, 3L, 4L], r.Indices.ToArray<long>());
    }

    [Fact]
    public void NaNWins_TheLastNaNOfTheWindow()
    {
        // torch: max_pool2d([[1,nan,5],[nan,7,2],[0,0,0]], 2, 1) gives [[nan,nan],[nan,7]] with indices [[3,1],[3,4]].
        float[] x = [1, Nan, 5, Nan, 7, 2, 0, 0, 0];
        using var tx = Tensor.FromArray(x, 1, 1, 3, 3);
        using var r = MaxPool2d.Forward(tx, MaxPool2dOptions.Create(2, stride: 1));
        var y = r.Output.ToArray<float>();
        Assert.True(float.IsNaN(y[0]) && float.IsNaN(y[1]) && float.IsNaN(y[2]));
        Assert.Equal(7f, y[3]);
        Assert.Equal([3L, 1L, 3L, 4L], r.Indices.ToArray<long>());
    }

    [Fact]
    public void BackwardOverwritesGradX()
    {
        var k = new MaxPool2dCase(1, 2, 4, 4, 2, 2, 2, 2);
        var x = Values(new Random(2), 32, 0);
        using var tx = Tensor.FromArray(x, 1, 2, 4, 4);
        using var r = MaxPool2d.Forward(tx, k.Options);
        using var dy = Tensor.FromArray(Enumerable.Repeat(1f, 8).ToArray(), 1, 2, 2, 2);
        using var dx = Tensor.Empty(Device.Cpu, DataType.Float32, 1, 2, 4, 4);
        dx.Fill(Nan);
        MaxPool2d.Backward(dy, r.Indices, dx, k.Options);
        var got = dx.ToArray<float>();
        Assert.Equal(8, got.Count(v => v == 1f));
        Assert.Equal(24, got.Count(v => v == 0f));
    }

    [Fact]
    public void EmptyBatch_GivesEmptyResults()
    {
        using var x = Tensor.Zeros(Device.Cpu, 0, 3, 6, 6);
        var o = MaxPool2dOptions.Create(2);
        using var r = MaxPool2d.Forward(x, o);
        Assert.Equal([0, 3, 3, 3], r.Output.Shape.ToArray());
        Assert.Equal([0, 3, 3, 3], r.Indices.Shape.ToArray());
        using var dx = MaxPool2d.Backward(r.Output, r.Indices, 6, 6, o);
        Assert.Equal([0, 3, 6, 6], dx.Shape.ToArray());
    }

    [Fact]
    public void Validation_NamesTheParameter()
    {
        using var x = Tensor.Zeros(Device.Cpu, 1, 2, 6, 6);
        using var x3 = Tensor.Zeros(Device.Cpu, 2, 6, 6);
        using var xi = Tensor.Zeros(Device.Cpu, DataType.Int64, 1, 2, 6, 6);
        using var xSmall = Tensor.Zeros(Device.Cpu, 1, 2, 1, 1);
        Assert.Equal("x", Assert.ThrowsAny<ArgumentException>(() => MaxPool2d.Forward(x3, MaxPool2dOptions.Create(2))).ParamName);
        Assert.Equal("x", Assert.ThrowsAny<ArgumentException>(() => MaxPool2d.Forward(xi, MaxPool2dOptions.Create(2))).ParamName);
        Assert.Equal("x", Assert.ThrowsAny<ArgumentException>(() => MaxPool2d.Forward(xSmall, MaxPool2dOptions.Create(2))).ParamName);
        using var xEmptyPlane = Tensor.Zeros(Device.Cpu, 1, 2, 0, 5);
        Assert.Equal("x", Assert.ThrowsAny<ArgumentException>(() => MaxPool2d.Forward(xEmptyPlane, MaxPool2dOptions.Create(2, stride: 1, padding: 1))).ParamName);
        Assert.Equal("PadH", Assert.ThrowsAny<ArgumentException>(() => MaxPool2d.Forward(x, MaxPool2dOptions.Create(2, padding: 2))).ParamName);
        Assert.Equal("KernelW", Assert.ThrowsAny<ArgumentException>(() => MaxPool2d.Forward(x, new MaxPool2dOptions(2, 0, 1, 1))).ParamName);
        Assert.Equal("StrideH", Assert.ThrowsAny<ArgumentException>(() => MaxPool2d.Forward(x, new MaxPool2dOptions(2, 2, 0, 1))).ParamName);

        var o = MaxPool2dOptions.Create(2);
        using var r = MaxPool2d.Forward(x, o);
        using var dyBad = Tensor.Zeros(Device.Cpu, 1, 2, 3, 2);
        Assert.Equal("gradY", Assert.ThrowsAny<ArgumentException>(() => MaxPool2d.Backward(dyBad, r.Indices, 6, 6, o)).ParamName);
        using var dxSmall = Tensor.Zeros(Device.Cpu, 1, 2, 1, 6);
        Assert.Equal("gradX", Assert.ThrowsAny<ArgumentException>(() => MaxPool2d.Backward(r.Output, r.Indices, dxSmall, o)).ParamName);
        Assert.Equal("indices", Assert.ThrowsAny<ArgumentException>(() => MaxPool2d.Backward(r.Output, r.Output, 6, 6, o)).ParamName);
        using var badIndex = Tensor.FromArray(Enumerable.Repeat(36L, 18).ToArray(), 1, 2, 3, 3);
        Assert.Equal("indices", Assert.ThrowsAny<ArgumentException>(() => MaxPool2d.Backward(r.Output, badIndex, 6, 6, o)).ParamName);
        using var negIndex = Tensor.FromArray(Enumerable.Repeat(-1L, 18).ToArray(), 1, 2, 3, 3);
        Assert.Equal("indices", Assert.ThrowsAny<ArgumentException>(() => MaxPool2d.Backward(r.Output, negIndex, 6, 6, o)).ParamName);
    }
}
