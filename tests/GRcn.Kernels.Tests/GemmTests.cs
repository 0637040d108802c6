using GRcn.Kernels.Cpu;
using GRcn.Kernels.Tests.Reference;

namespace GRcn.Kernels.Tests;

public sealed unsafe class GemmTests
{
    /// <summary>Allowed error relative to |alpha|·Σ|a·b| + |beta·c| (float32 accumulation over up to a few hundred terms).</summary>
    private const double RelTol = 2e-5;
    /// <summary>Absolute floor of the allowed error.</summary>
    private const double AbsTol = 1e-6;

    private static readonly int[] OddSizes = [1, 7, 17, 63, 129];

    private static float[] Random(Random rng, int count, float lo = -1f, float hi = 1f)
    {
        var v = new float[count];
        for (int i = 0; i < count; i++) v[i] = lo + (hi - lo) * rng.NextSingle();
        return v;
    }

    private static void Run(bool ta, bool tb, int m, int n, int k, float alpha, float[] a, int lda, float[] b, int ldb, float beta, float[] c, int ldc)
    {
        fixed (float* pa = a)
        fixed (float* pb = b)
        fixed (float* pc = c)
            GemmCpu.Multiply(ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc);
    }

    /// <summary>Runs the kernel on random A, B, C with the given pitches and compares every element with the oracle.</summary>
    private static void CrossCheck(Random rng, bool ta, bool tb, int m, int n, int k, float alpha, float beta, int padA = 0, int padB = 0, int padC = 0)
    {
        int lda = (ta ? m : k) + padA, ldb = (tb ? k : n) + padB, ldc = n + padC;
        var a = Random(rng, Math.Max(1, (ta ? k : m) * lda));
        var b = Random(rng, Math.Max(1, (tb ? n : k) * ldb));
        var c = Random(rng, m * ldc);
        var c0 = (float[])c.Clone();
        var (want, scale) = GemmReference.Multiply(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc);
        Run(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < ldc; j++)
            {
                float got = c[i * ldc + j];
                if (j >= n)
                {
                    if (got != c0[i * ldc + j]) Assert.Fail($"padding C[{i},{j}] was written");
                    continue;
                }
                double w = want[i * n + j];
                double tol = AbsTol + RelTol * scale[i * n + j];
                if (!(Math.Abs(got - w) <= tol))
                    Assert.Fail($"ta={ta} tb={tb} m={m} n={n} k={k}: C[{i},{j}] = {got}, want {w} (tol {tol})");
            }
        }
    }

    public static TheoryData<bool, bool> Transposes => new() { { false, false }, { false, true }, { true, false }, { true, true } };

    [Theory]
    [MemberData(nameof(Transposes))]
    public void OddSizes_MatchReference(bool ta, bool tb)
    {
        var rng = new Random(11 + (ta ? 2 : 0) + (tb ? 1 : 0));
        foreach (int m in OddSizes)
        foreach (int n in OddSizes)
        foreach (int k in new[] { 1, 17, 129 })
            CrossCheck(rng, ta, tb, m, n, k, 1f, 0f);
    }

    [Theory]
    [MemberData(nameof(Transposes))]
    public void LargerThanOneBlock_MatchesReference(bool ta, bool tb)
    {
        // m > MC, n > NC, k > KC: several tiles and k slices, with ragged edges everywhere.
        var rng = new Random(5);
        CrossCheck(rng, ta, tb, GemmCpu.MC + 11, 100, GemmCpu.KC + 45, 1f, 0f);
        CrossCheck(rng, ta, tb, 7, GemmCpu.NC + 7, GemmCpu.KC + 45, 1f, 0f);
    }

    [Theory]
    [MemberData(nameof(Transposes))]
    public void DepthsAroundThePackingBlocks_MatchReference(bool ta, bool tb)
    {
        // A panels are packed 8 steps of k at a time with a scalar tail: depths at and around
        // multiples of 8 and of KC, full and partial row panels, padded leading dimensions.
        var rng = new Random(31);
        foreach (int k in new[] { 2, 7, 8, 9, 15, 16, 17, 24, GemmCpu.KC - 1, GemmCpu.KC, GemmCpu.KC + 1, GemmCpu.KC + 8 })
        {
            CrossCheck(rng, ta, tb, 12, 20, k, 1f, 0f);
            CrossCheck(rng, ta, tb, 14, 9, k, 0.5f, 1f, padA: 3, padB: 1, padC: 2);
        }
    }

    [Theory]
    [MemberData(nameof(Transposes))]
    public void AlphaBetaAndLeadingDimensions_MatchReference(bool ta, bool tb)
    {
        var rng = new Random(23);
        CrossCheck(rng, ta, tb, 13, 35, 300, -1.5f, 0.5f, padA: 3, padB: 5, padC: 7);
        CrossCheck(rng, ta, tb, 63, 17, 7, 2f, 1f, padA: 1, padB: 0, padC: 2);
        CrossCheck(rng, ta, tb, 6, 16, 64, 0.25f, -2f);
    }

    [Theory]
    [MemberData(nameof(Transposes))]
    public void ScalarFallback_MatchesReference(bool ta, bool tb)
    {
        var rng = new Random(3);
        GemmCpu.ForceScalar = true;
        try
        {
            CrossCheck(rng, ta, tb, 17, 63, 129, 1f, 0f);
            CrossCheck(rng, ta, tb, 7, 33, 300, 0.5f, 1.5f, padA: 2, padB: 1, padC: 3);
        }
        finally
        {
            GemmCpu.ForceScalar = false;
        }
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void PackedAWithInPlaceB_MatchesMultiplySerialBitForBit(bool ta, bool scalar)
    {
        var rng = new Random(41 + (ta ? 1 : 0) + (scalar ? 2 : 0));
        // n not a multiple of 16 takes the copied edge panel; m not a multiple of 6 the edge tile
        foreach (var (m, n, k) in new[] { (1, 1, 1), (7, 17, 63), (64, 224, 196), (196, 40, 64), (13, 33, GemmCpu.KC) })
        foreach (float beta in new[] { 0f, 0.5f })
        {
            int lda = (ta ? m : k) + 3, ldb = n + 21, ldc = n + 5;
            var a = Random(rng, (ta ? k : m) * lda);
            var b = Random(rng, k * ldb);
            var c = Random(rng, m * ldc);
            var want = (float[])c.Clone();
            var packed = new float[GemmCpu.PackedASize(m, k)];
            GemmCpu.ForceScalar = scalar;
            try
            {
                fixed (float* pa = a)
                fixed (float* pb = b)
                fixed (float* pc = c)
                fixed (float* pw = want)
                fixed (float* pp = packed)
                {
                    GemmCpu.PackA(ta, pa, lda, m, k, pp);
                    GemmCpu.MultiplyPackedA(pp, m, n, k, 0.75f, pb, ldb, beta, pc, ldc);
                    GemmCpu.MultiplySerial(ta, false, m, n, k, 0.75f, pa, lda, pb, ldb, beta, pw, ldc);
                }
            }
            finally
            {
                GemmCpu.ForceScalar = false;
            }
            Assert.Equal(want, c);
        }
    }

    [Fact]
    public void PackedA_RejectsDepthBeyondOneSlice()
    {
        var packed = new float[GemmCpu.PackedASize(6, GemmCpu.KC + 1)];
        var b = new float[16 * (GemmCpu.KC + 1)];
        var c = new float[6 * 16];
        fixed (float* pp = packed)
        fixed (float* pb = b)
        fixed (float* pc = c)
        {
            float* p = pp, q = pb, r = pc;
            Assert.Throws<ArgumentOutOfRangeException>(() => GemmCpu.PackA(false, q, GemmCpu.KC + 1, 6, GemmCpu.KC + 1, p));
            Assert.Throws<ArgumentOutOfRangeException>(() => GemmCpu.MultiplyPackedA(p, 6, 16, GemmCpu.KC + 1, 1f, q, 16, 0f, r, 16));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RowBias_MatchesBetaOneOnBiasFilledC(bool scalar)
    {
        // The internal overload's rowBias gives the same as filling C with the bias and beta = 1.
        var rng = new Random(scalar ? 41 : 40);
        foreach (var (m, n, k, ta) in new[] { (13, 35, 300, false), (6, 16, 7, true), (150, 1100, 20, false), (1, 3, 1, true) })
        {
            int lda = ta ? m : k;
            var a = Random(rng, m * k);
            var b = Random(rng, k * n);
            var bias = Random(rng, m);
            var want = new float[m * n];
            var got = Enumerable.Repeat(float.NaN, m * n).ToArray();
            for (int i = 0; i < m; i++) Array.Fill(want, bias[i], i * n, n);
            GemmCpu.ForceScalar = scalar;
            try
            {
                Run(ta, false, m, n, k, 1f, a, lda, b, n, 1f, want, n);
                fixed (float* pa = a)
                fixed (float* pb = b)
                fixed (float* pc = got)
                fixed (float* pbias = bias)
                    GemmCpu.Multiply(ta, m, n, k, 1f, pa, lda, new GemmCpu.MatrixB(false, pb, n), 0f, pc, n, pbias);
            }
            finally
            {
                GemmCpu.ForceScalar = false;
            }
            Assert.Equal(want, got);
        }
    }

    [Fact]
    public void HandComputed_2x3_Times_3x2()
    {
        float[] a = [1, 2, 3, 4, 5, 6];          // 2×3
        float[] b = [7, 8, 9, 10, 11, 12];       // 3×2
        var c = new float[4];
        Run(false, false, 2, 2, 3, 1f, a, 3, b, 2, 0f, c, 2);
        Assert.Equal([58f, 64f, 139f, 154f], c);

        // Aᵀ stored (3×2) and Bᵀ stored (2×3) give the same product.
        float[] at = [1, 4, 2, 5, 3, 6];
        float[] bt = [7, 9, 11, 8, 10, 12];
        var c2 = new float[] { 1, 1, 1, 1 };
        Run(true, true, 2, 2, 3, 2f, at, 2, bt, 3, -1f, c2, 2);
        Assert.Equal([115f, 127f, 277f, 307f], c2);
    }

    [Fact]
    public void BetaZero_IgnoresNaNInC()
    {
        var rng = new Random(1);
        int m = 9, n = 21, k = 5;
        var a = Random(rng, m * k);
        var b = Random(rng, k * n);
        var c = Enumerable.Repeat(float.NaN, m * n).ToArray();
        Run(false, false, m, n, k, 1f, a, k, b, n, 0f, c, n);
        Assert.All(c, v => Assert.False(float.IsNaN(v)));
    }

    [Fact]
    public void NaNAndInfinityPropagate()
    {
        int m = 8, n = 20, k = 6;
        var a = new float[m * k];
        var b = new float[k * n];
        Array.Fill(a, 0f);
        Array.Fill(b, 1f);
        b[2 * n + 17] = float.NaN;       // column 17 of C must be NaN even though A is all zero
        a[5 * k + 3] = float.PositiveInfinity; // row 5: inf·1 = inf everywhere except NaN column
        var c = new float[m * n];
        Run(false, false, m, n, k, 1f, a, k, b, n, 0f, c, n);
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                float v = c[i * n + j];
                if (j == 17) Assert.True(float.IsNaN(v), $"C[{i},{j}] = {v}, want NaN");
                else if (i == 5) Assert.Equal(float.PositiveInfinity, v);
                else Assert.Equal(0f, v);
            }
        }
    }

    [Fact]
    public void ZeroDepth_ScalesC()
    {
        var c = new float[] { 1, 2, float.NaN, 4, 5, 6 };
        Run(false, false, 2, 3, 0, 1f, [0f], 1, [0f], 3, 0f, c, 3);
        Assert.Equal(new float[6], c);
        var c2 = new float[] { 1, 2, 3, 4, 5, 6 };
        Run(true, true, 2, 3, 0, 1f, [0f], 2, [0f], 1, 2f, c2, 3);
        Assert.Equal([2f, 4f, 6f, 8f, 10f, 12f], c2);
    }

    [Fact]
    public void PublicApi_MultiplyAndMatMul()
    {
        var rng = new Random(8);
        int m = 19, n = 40, k = 33;
        var a = Random(rng, k * m);   // stored transposed: (K, M)
        var b = Random(rng, k * n);   // (K, N)
        using var ta = Tensor.FromArray(a, k, m);
        using var tb = Tensor.FromArray(b, k, n);
        using var tc = Tensor.FromArray(Enumerable.Repeat(float.NaN, m * n).ToArray(), m, n);
        Gemm.Multiply(ta, true, tb, false, tc);
        var (want, scale) = GemmReference.Multiply(true, false, m, n, k, 1f, a, m, b, n, 0f, new float[m * n], n);
        var got = tc.ToArray<float>();
        for (int i = 0; i < got.Length; i++) Assert.True(Math.Abs(got[i] - want[i]) <= AbsTol + RelTol * scale[i]);

        using var a2 = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3);
        using var b2 = Tensor.FromArray(new float[] { 7, 8, 9, 10, 11, 12 }, 3, 2);
        using var c2 = Gemm.MatMul(a2, b2);
        Assert.Equal([2, 2], c2.Shape.ToArray());
        Assert.Equal([58f, 64f, 139f, 154f], c2.ToArray<float>());
    }

    [Fact]
    public void PublicApi_RejectsBadShapes()
    {
        using var a = Tensor.Zeros(Device.Cpu, 2, 3);
        using var b = Tensor.Zeros(Device.Cpu, 4, 5);
        using var c = Tensor.Zeros(Device.Cpu, 2, 5);
        using var cBad = Tensor.Zeros(Device.Cpu, 3, 5);
        using var a1 = Tensor.Zeros(Device.Cpu, 6);
        using var ai = Tensor.Zeros(Device.Cpu, DataType.Int64, 2, 3);
        Assert.Equal("b", Assert.ThrowsAny<ArgumentException>(() => Gemm.Multiply(a, false, b, false, c)).ParamName);
        using var b3 = Tensor.Zeros(Device.Cpu, 3, 5);
        Assert.Equal("c", Assert.ThrowsAny<ArgumentException>(() => Gemm.Multiply(a, false, b3, false, cBad)).ParamName);
        Assert.Equal("a", Assert.ThrowsAny<ArgumentException>(() => Gemm.Multiply(a1, false, b3, false, c)).ParamName);
        Assert.Equal("a", Assert.ThrowsAny<ArgumentException>(() => Gemm.Multiply(ai, false, b3, false, c)).ParamName);
        Gemm.Multiply(a, false, b3, false, c); // consistent shapes pass
    }
}
