using GRcn.Kernels.Tests.Reference;

namespace GRcn.Kernels.Tests;

public sealed class GroupNormTests
{
    /// <summary>Allowed error of y, μ and rstd relative to max(1, |want|) (float32 output of a double-accumulated computation).</summary>
    private const double ForwardTol = 2e-5;
    /// <summary>Allowed error of the gradients relative to max(1, |want|) (float32 products of sums over the group).</summary>
    private const double GradTol = 1e-4;

    public static TheoryData<int, int, int, int, bool> Shapes => new()
    {
        { 2, 8, 37, 4, true },      // S not a multiple of the vector width
        { 1, 6, 1, 3, true },       // (N, C) input, 2 elements per group
        { 3, 64, 100, 32, true },   // the detector's setting
        { 2, 16, 9000, 4, false },  // long groups: the vector sums flush into double
        { 2, 5, 12, 5, true },      // instance norm
        { 4, 12, 7, 1, false },     // layer norm
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ForwardAndBackward_MatchReference(int n, int c, int s, int groups, bool affine)
    {
        var rng = new Random(n * 131 + c * 17 + s);
        float[] Rand(int count, float offset = 0f, float scale = 1f) =>
            [.. Enumerable.Range(0, count).Select(_ => offset + scale * (float)(rng.NextDouble() * 2 - 1))];
        var x = Rand(n * c * s, offset: 3f);
        var dy = Rand(n * c * s);
        float[]? w = affine ? Rand(c, 1f, 0.5f) : null;
        float[]? b = affine ? Rand(c) : null;
        const float eps = 1e-5f;

        using var tx = Tensor.FromArray(x, n, c, s);
        using var tdy = Tensor.FromArray(dy, n, c, s);
        using var tw = w is null ? null : Tensor.FromArray(w, c);
        using var tb = b is null ? null : Tensor.FromArray(b, c);
        using var r = GroupNorm.Forward(tx, groups, tw, tb, eps);
        var (wantY, wantMean, wantRstd) = GroupNormReference.Forward(x, n, c, s, groups, w, b, eps);
        AssertClose(wantY, r.Output.ToArray<float>(), ForwardTol, "y");
        AssertClose(wantMean, r.Mean.ToArray<float>(), ForwardTol, "mean");
        AssertClose(wantRstd, r.Rstd.ToArray<float>(), ForwardTol, "rstd");

        using var gx = Tensor.Empty(Device.Cpu, DataType.Float32, n, c, s);
        using var gw = Tensor.Empty(Device.Cpu, DataType.Float32, c);
        using var gb = Tensor.Empty(Device.Cpu, DataType.Float32, c);
        GroupNorm.Backward(tdy, tx, r.Mean, r.Rstd, groups, tw, gx, gw, gb);
        var (wantDx, wantDw, wantDb) = GroupNormReference.Backward(dy, x, n, c, s, groups, w, eps);
        AssertClose(wantDx, gx.ToArray<float>(), GradTol, "dx");
        AssertClose(wantDw, gw.ToArray<float>(), GradTol, "dweight");
        AssertClose(wantDb, gb.ToArray<float>(), GradTol, "dbias");
    }

    [Fact]
    public void Backward_ComputesOnlyTheRequestedGradients()
    {
        var x = Enumerable.Range(0, 2 * 4 * 6).Select(i => MathF.Sin(i)).ToArray();
        using var tx = Tensor.FromArray(x, 2, 4, 6);
        using var tdy = Tensor.FromArray(x.Select(v => v * v).ToArray(), 2, 4, 6);
        using var r = GroupNorm.Forward(tx, 2, null, null);
        using var gb = Tensor.Empty(Device.Cpu, DataType.Float32, 4);
        GroupNorm.Backward(tdy, tx, r.Mean, r.Rstd, 2, null, null, null, gb);
        var (_, _, wantDb) = GroupNormReference.Backward(tdy.ToArray<float>(), x, 2, 4, 6, 2, null, 1e-5);
        AssertClose(wantDb, gb.ToArray<float>(), GradTol, "dbias");
    }

    [Fact]
    public void BadArguments_NameTheParameter()
    {
        using var x = Tensor.Zeros(Device.Cpu, 2, 6, 3, 3);
        using var w5 = Tensor.Zeros(Device.Cpu, 5);
        Assert.Equal("groups", Assert.Throws<ArgumentOutOfRangeException>(() => GroupNorm.Forward(x, 4, null, null)).ParamName);
        Assert.Equal("weight", Assert.Throws<ArgumentException>(() => GroupNorm.Forward(x, 3, w5, null)).ParamName);
        Assert.Equal("epsilon", Assert.Throws<ArgumentOutOfRangeException>(() => GroupNorm.Forward(x, 3, null, null, float.NaN)).ParamName);
        using var x1 = Tensor.Zeros(Device.Cpu, 6);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => GroupNorm.Forward(x1, 3, null, null)).ParamName);
        using var r = GroupNorm.Forward(x, 3, null, null);
        using var wrongMean = Tensor.Zeros(Device.Cpu, 2, 2);
        using var gy = Tensor.Zeros(Device.Cpu, 2, 6, 3, 3);
        using var gx = Tensor.Zeros(Device.Cpu, 2, 6, 3, 3);
        Assert.Equal("mean", Assert.Throws<ArgumentException>(() => GroupNorm.Backward(gy, x, wrongMean, r.Rstd, 3, null, gx, null, null)).ParamName);
        using var gyBad = Tensor.Zeros(Device.Cpu, 2, 6, 9);
        Assert.Equal("gradY", Assert.Throws<ArgumentException>(() => GroupNorm.Backward(gyBad, x, r.Mean, r.Rstd, 3, null, gx, null, null)).ParamName);
    }

    [Fact]
    public void ConstantGroup_GivesBiasAndCentredInputGradient()
    {
        // σ² = 0: y = bias (rstd = 1/√ε, finite) and, with x̂ = 0, dx = rstd·(dy − mean(dy))
        using var x = Tensor.FromArray(Enumerable.Repeat(5f, 1 * 2 * 4).ToArray(), 1, 2, 4);
        using var b = Tensor.FromArray(new[] { 0.5f, -1f }, 2);
        using var r = GroupNorm.Forward(x, 1, null, b);
        Assert.Equal(new[] { 0.5f, 0.5f, 0.5f, 0.5f, -1f, -1f, -1f, -1f }, r.Output.ToArray<float>());
        using var gy = Tensor.FromArray(new[] { 1f, 2f, 3f, 4f, 5f, 6f, 7f, 8f }, 1, 2, 4);
        using var gx = Tensor.Empty(Device.Cpu, DataType.Float32, 1, 2, 4);
        GroupNorm.Backward(gy, x, r.Mean, r.Rstd, 1, null, gx, null, null);
        double rstd = 1 / Math.Sqrt(1e-5f);
        AssertClose([.. gy.ToArray<float>().Select(v => rstd * (v - 4.5))], gx.ToArray<float>(), GradTol, "dx");
    }

    private static void AssertClose(double[] want, float[] got, double tol, string what)
    {
        Assert.Equal(want.Length, got.Length);
        for (int i = 0; i < want.Length; i++)
        {
            double err = Math.Abs(got[i] - want[i]) / Math.Max(1, Math.Abs(want[i]));
            Assert.True(err <= tol, $"{what}[{i}]: got {got[i]}, want {want[i]} (relative error {err:E2} > {tol:E0})");
        }
    }
}
