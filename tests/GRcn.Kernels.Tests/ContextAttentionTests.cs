using GRcn.Kernels.Cpu;
using GRcn.Kernels.Tests.Reference;
using Dims = GRcn.Kernels.Tests.Reference.ContextAttentionReference.Dims;

namespace GRcn.Kernels.Tests;

public class ContextAttentionTests
{
    /// <summary>Relative tolerance against the float64 oracle (as the golden fixtures use).</summary>
    private const double Rtol = 1e-4;

    /// <summary>Absolute tolerance per unit of the tensor's largest magnitude (float32 accumulation).</summary>
    private const double AtolPerMax = 2e-5;

    /// <summary>Tolerance of the oracle's gradients against central finite differences.</summary>
    private const double FiniteDifferenceTol = 1e-5;

    private sealed record Case(Dims D, float[] P, float[] G, long[] Bi, float[] Wq, float[] Wk, float[] Gy);

    private static float[] Rand(Random r, int n, double scale)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)((r.NextDouble() * 2 - 1) * scale);
        return a;
    }

    private static Case MakeCase(int seed, Dims d, long[]? bi = null, double scale = 1.0)
    {
        var r = new Random(seed);
        bi ??= Enumerable.Range(0, d.K).Select(_ => (long)r.Next(d.N)).ToArray();
        double w = 1.5 / Math.Sqrt(d.C);
        return new Case(d, Rand(r, d.K * d.C * d.Q, scale), Rand(r, d.N * d.C * d.M, scale), bi,
            Rand(r, d.D * d.C, w), Rand(r, d.D * d.C, w), Rand(r, d.K * d.C * d.Q, 1.0));
    }

    private sealed class Run : IDisposable
    {
        public readonly Tensor P, G, Bi, Wq, Wk, Gy;
        public readonly int Heads;

        public Run(Case c, int qh, int qw, int mh, int mw)
        {
            var d = c.D;
            P = Tensor.FromArray(c.P, d.K, d.C, qh, qw);
            G = Tensor.FromArray(c.G, d.N, d.C, mh, mw);
            Bi = Tensor.FromArray(c.Bi, d.K);
            Wq = Tensor.FromArray(c.Wq, d.D, d.C);
            Wk = Tensor.FromArray(c.Wk, d.D, d.C);
            Gy = Tensor.FromArray(c.Gy, d.K, d.C, qh, qw);
            Heads = d.H;
        }

        public Tensor Forward() => ContextAttention.Forward(P, G, Bi, Wq, Wk, Heads);
        public ContextAttentionGradients Backward() => ContextAttention.Backward(Gy, P, G, Bi, Wq, Wk, Heads);

        public void Dispose()
        {
            P.Dispose(); G.Dispose(); Bi.Dispose(); Wq.Dispose(); Wk.Dispose(); Gy.Dispose();
        }
    }

    private static void AssertClose(double[] want, float[] got, string what)
    {
        Assert.Equal(want.Length, got.Length);
        double max = want.Length == 0 ? 0 : want.Max(Math.Abs);
        double atol = AtolPerMax * Math.Max(1.0, max);
        int worst = -1;
        double worstRatio = 0;
        for (int i = 0; i < want.Length; i++)
        {
            double ratio = Math.Abs(got[i] - want[i]) / (atol + Rtol * Math.Abs(want[i]));
            if (!(ratio <= worstRatio)) { worstRatio = ratio; worst = i; }
        }
        Assert.True(worstRatio <= 1.0, $"{what}: element {worst} is {(worst >= 0 ? got[worst] : 0)}, expected {(worst >= 0 ? want[worst] : 0)} (ratio {worstRatio:F2})");
    }

    private static void CheckAgainstReference(Case c, int qh, int qw, int mh, int mw)
    {
        using var run = new Run(c, qh, qw, mh, mw);
        using var y = run.Forward();
        AssertClose(ContextAttentionReference.Forward(c.P, c.G, c.Bi, c.Wq, c.Wk, c.D), y.ToArray<float>(), "y");
        using var grads = run.Backward();
        var want = ContextAttentionReference.Backward(c.Gy, c.P, c.G, c.Bi, c.Wq, c.Wk, c.D);
        AssertClose(want.P, grads.P.ToArray<float>(), "dp");
        AssertClose(want.G, grads.G.ToArray<float>(), "dg");
        AssertClose(want.Wq, grads.Wq.ToArray<float>(), "dw_q");
        AssertClose(want.Wk, grads.Wk.ToArray<float>(), "dw_k");
    }

    [Theory]
    // K, C, Qh, Qw, N, Mh, Mw, D, H
    [InlineData(5, 8, 3, 3, 2, 4, 4, 8, 2)]
    [InlineData(6, 12, 3, 4, 3, 5, 4, 8, 2)]     // D ≠ C
    [InlineData(4, 6, 2, 3, 4, 3, 3, 9, 3)]      // three heads, D ≠ C, some images unused
    [InlineData(3, 4, 5, 5, 1, 2, 7, 4, 4)]      // dk = cv = 1
    [InlineData(7, 16, 7, 7, 3, 6, 6, 24, 4)]
    [InlineData(2, 8, 1, 1, 2, 1, 1, 8, 1)]      // one query, one context position
    [InlineData(3, 8, 2, 2, 1, 7, 7, 48, 2)]     // few query rows, M = 49 and D = 48
    [InlineData(2, 130, 3, 3, 2, 12, 11, 132, 2)] // M, C and D above GemmCpu.MC
    [InlineData(70, 4, 7, 7, 1, 2, 2, 4, 2)]     // 3430 query rows in one chunk: many full column strips
    [InlineData(3, 8, 3, 3, 2, 17, 16, 8, 2)]    // M = 272 above GemmCpu.KC: head products without pre-packed K_h, V_h
    public void RandomShapes_MatchReference(int k, int c, int qh, int qw, int n, int mh, int mw, int d, int h)
    {
        var dims = new Dims(k, c, qh * qw, n, mh * mw, d, h);
        CheckAgainstReference(MakeCase(k * 31 + c, dims), qh, qw, mh, mw);
    }

    [Theory]
    // K, C, Qh, Qw, N, Mh, Mw, D, H, image of each RoI from this seed (several chunks in the last)
    [InlineData(5, 8, 3, 3, 2, 4, 4, 8, 2)]
    [InlineData(4, 6, 2, 3, 4, 3, 3, 9, 3)]
    [InlineData(90, 4, 7, 7, 2, 3, 3, 4, 2)]
    public void SavedForward_GivesTheSameBackward_BitForBit(int k, int c, int qh, int qw, int n, int mh, int mw, int d, int h)
    {
        var dims = new Dims(k, c, qh * qw, n, mh * mw, d, h);
        var cs = MakeCase(k * 7 + d, dims);
        using var run = new Run(cs, qh, qw, mh, mw);
        using var saved = new ContextAttentionSaved();
        for (int round = 0; round < 2; round++)
        {
            using var y = run.Forward();
            using var ySaved = ContextAttention.Forward(run.P, run.G, run.Bi, run.Wq, run.Wk, run.Heads, saved);
            Assert.Equal(y.ToArray<float>(), ySaved.ToArray<float>());
            using var grads = run.Backward();
            using var fromSaved = ContextAttention.Backward(run.Gy, run.P, run.G, run.Bi, run.Wq, run.Wk, run.Heads, saved);
            Assert.Equal(grads.P.ToArray<float>(), fromSaved.P.ToArray<float>());
            Assert.Equal(grads.G.ToArray<float>(), fromSaved.G.ToArray<float>());
            Assert.Equal(grads.Wq.ToArray<float>(), fromSaved.Wq.ToArray<float>());
            Assert.Equal(grads.Wk.ToArray<float>(), fromSaved.Wk.ToArray<float>());
        }
        var want = ContextAttentionReference.Backward(cs.Gy, cs.P, cs.G, cs.Bi, cs.Wq, cs.Wk, cs.D);
        using var again = ContextAttention.Backward(run.Gy, run.P, run.G, run.Bi, run.Wq, run.Wk, run.Heads, saved);
        AssertClose(want.P, again.P.ToArray<float>(), "dp (saved)");
        AssertClose(want.Wk, again.Wk.ToArray<float>(), "dw_k (saved)");
    }

    /// <summary>y, then dp, dg, dw_q, dw_k of one forward and backward (with <paramref name="saved"/> when given).</summary>
    private static float[][] Outputs(Run run, ContextAttentionSaved? saved = null)
    {
        using var y = saved is null ? run.Forward() : ContextAttention.Forward(run.P, run.G, run.Bi, run.Wq, run.Wk, run.Heads, saved);
        using var grads = saved is null ? run.Backward() : ContextAttention.Backward(run.Gy, run.P, run.G, run.Bi, run.Wq, run.Wk, run.Heads, saved);
        return [y.ToArray<float>(), grads.P.ToArray<float>(), grads.G.ToArray<float>(), grads.Wq.ToArray<float>(), grads.Wk.ToArray<float>()];
    }

    private static void AssertSame(float[][] want, float[][] got)
    {
        for (int i = 0; i < want.Length; i++) Assert.Equal(want[i], got[i]);
    }

    [Theory]
    [InlineData(1L)]      // one head at a time
    [InlineData(3000L)]   // two of the three (a head's scores: M × pitch = 15 × 80 = 1200 floats)
    public void HeadsInSmallerGroups_GiveTheSameResults_BitForBit(long budget)
    {
        // K, C, Q, N, M, D, H: 3 heads; the budget decides how many run as one set of work items
        var dims = new Dims(6, 12, 12, 2, 15, 9, 3);
        using var run = new Run(MakeCase(19, dims), 3, 4, 3, 5);
        var all = Outputs(run);
        using var saved = new ContextAttentionSaved();
        ContextAttentionCpu.TestGroupScoreBudget = budget;
        try
        {
            AssertSame(all, Outputs(run));
            AssertSame(all, Outputs(run, saved));
        }
        finally
        {
            ContextAttentionCpu.TestGroupScoreBudget = null;
        }
    }

    [Fact]
    public void OneThreadAndThree_GiveTheSameResults_BitForBit()
    {
        // 70 RoIs × 49 positions: several column blocks per head, as many as the threads allow
        var dims = new Dims(70, 8, 49, 1, 9, 8, 2);
        using var run = new Run(MakeCase(23, dims), 7, 7, 3, 3);
        int threads = Parallelism.Threads;
        try
        {
            Parallelism.Threads = 1;
            var one = Outputs(run);
            Parallelism.Threads = 3;
            AssertSame(one, Outputs(run));
        }
        finally
        {
            Parallelism.Threads = threads;
        }
    }

    [Fact]
    public void SavedFromOtherInputs_IsNotUsed()
    {
        var dims = new Dims(5, 8, 9, 2, 16, 8, 2);
        var a = MakeCase(1, dims);
        var b = MakeCase(2, dims);
        using var runA = new Run(a, 3, 3, 4, 4);
        using var runB = new Run(b, 3, 3, 4, 4);
        using var saved = new ContextAttentionSaved();
        using var yA = ContextAttention.Forward(runA.P, runA.G, runA.Bi, runA.Wq, runA.Wk, runA.Heads, saved);
        // the block holds A's queries and weights: B's backward must recompute its own
        using var grads = ContextAttention.Backward(runB.Gy, runB.P, runB.G, runB.Bi, runB.Wq, runB.Wk, runB.Heads, saved);
        var want = ContextAttentionReference.Backward(b.Gy, b.P, b.G, b.Bi, b.Wq, b.Wk, b.D);
        AssertClose(want.P, grads.P.ToArray<float>(), "dp");
        AssertClose(want.G, grads.G.ToArray<float>(), "dg");
        AssertClose(want.Wq, grads.Wq.ToArray<float>(), "dw_q");
        AssertClose(want.Wk, grads.Wk.ToArray<float>(), "dw_k");
    }

    [Fact]
    public void ImageWithoutRois_HasZeroGradient_AndOthersMatch()
    {
        var dims = new Dims(5, 8, 4, 3, 9, 4, 2);
        var c = MakeCase(7, dims, bi: [2, 0, 2, 2, 0]);
        CheckAgainstReference(c, 2, 2, 3, 3);
        using var run = new Run(c, 2, 2, 3, 3);
        using var grads = run.Backward();
        var dg = grads.G.ToArray<float>();
        Assert.All(dg.AsSpan(dims.C * dims.M, dims.C * dims.M).ToArray(), v => Assert.Equal(0f, v));
        Assert.Contains(dg.AsSpan(0, dims.C * dims.M).ToArray(), v => v != 0f);
    }

    [Fact]
    public void ManyRoisOfOneImage_SpanSeveralChunks_MatchReference()
    {
        // 90 RoIs × 49 positions of one image exceed one chunk's 4096 query rows
        var dims = new Dims(90, 4, 49, 2, 9, 4, 2);
        var c = MakeCase(11, dims, bi: Enumerable.Range(0, 90).Select(i => i % 10 == 3 ? 0L : 1L).ToArray());
        CheckAgainstReference(c, 7, 7, 3, 3);
    }

    [Fact]
    public void LargeLogits_StayFinite_AndMatchReference()
    {
        // scores of several hundred: a softmax without the row max would overflow
        var dims = new Dims(3, 8, 4, 1, 6, 8, 2);
        var c = MakeCase(5, dims, scale: 20.0);
        using var run = new Run(c, 2, 2, 2, 3);
        using var y = run.Forward();
        Assert.All(y.ToArray<float>(), v => Assert.True(float.IsFinite(v)));
        AssertClose(ContextAttentionReference.Forward(c.P, c.G, c.Bi, c.Wq, c.Wk, c.D), y.ToArray<float>(), "y");
        // the gradients of a saturated softmax are too ill-conditioned in float32 for the oracle's
        // tolerance (a logit of a few hundred carries an absolute rounding error of ~1e-5 already);
        // they must still be finite
        using var grads = run.Backward();
        foreach (var t in new[] { grads.P, grads.G, grads.Wq, grads.Wk })
            Assert.All(t.ToArray<float>(), v => Assert.True(float.IsFinite(v)));
    }

    [Theory]
    // K, C, Qh, Qw, N, Mh, Mw, D, H, input scale: query columns 16-wide, 8-wide and scalar in one strip
    [InlineData(11, 8, 5, 5, 2, 3, 5, 16, 2, 3.0)]
    [InlineData(9, 6, 3, 3, 1, 4, 5, 12, 3, 4.0)]
    public void WideLogitRange_MatchesReference(int k, int c, int qh, int qw, int n, int mh, int mw, int d, int h, double scale)
    {
        // scores spread over tens of units: the softmax's exponential is exercised far from 0
        var dims = new Dims(k, c, qh * qw, n, mh * mw, d, h);
        CheckAgainstReference(MakeCase(k * 7 + c, dims, scale: scale), qh, qw, mh, mw);
    }

    [Fact]
    public void NaNInOneQuery_StaysInThatQuery()
    {
        // a NaN in p[1] at position 2 poisons that query's scores, so y[1][:, 2] is NaN; other
        // positions of RoI 1 and the other RoIs are untouched
        var dims = new Dims(3, 4, 20, 1, 6, 4, 2);
        var c = MakeCase(13, dims, bi: [0, 0, 0]);
        c.P[(1 * 4 + 3) * 20 + 2] = float.NaN;
        using var run = new Run(c, 4, 5, 2, 3);
        using var y = run.Forward();
        var yv = y.ToArray<float>();
        for (int r = 0; r < 3; r++)
            for (int ch = 0; ch < 4; ch++)
                for (int q = 0; q < 20; q++)
                    Assert.Equal(r == 1 && q == 2, float.IsNaN(yv[(r * 4 + ch) * 20 + q]));
    }

    [Fact]
    public void ReferenceGradients_MatchFiniteDifferences()
    {
        var dims = new Dims(3, 4, 2, 2, 3, 4, 2);
        var c = MakeCase(3, dims, bi: [1, 0, 1]);
        var grads = ContextAttentionReference.Backward(c.Gy, c.P, c.G, c.Bi, c.Wq, c.Wk, dims);
        double Loss() => ContextAttentionReference.Forward(c.P, c.G, c.Bi, c.Wq, c.Wk, dims).Zip(c.Gy, (y, g) => y * g).Sum();
        void Check(float[] x, double[] analytic, string what)
        {
            for (int i = 0; i < x.Length; i++)
            {
                float x0 = x[i];
                x[i] = x0 + 1e-3f;
                double up = Loss(), hi = x[i];
                x[i] = x0 - 1e-3f;
                double down = Loss(), lo = x[i];
                x[i] = x0;
                double numeric = (up - down) / (hi - lo);
                Assert.True(Math.Abs(numeric - analytic[i]) <= FiniteDifferenceTol * (1 + Math.Abs(numeric)),
                    $"{what}[{i}]: finite difference {numeric}, oracle {analytic[i]}");
            }
        }
        Check(c.P, grads.P, "dp");
        Check(c.G, grads.G, "dg");
        Check(c.Wq, grads.Wq, "dw_q");
        Check(c.Wk, grads.Wk, "dw_k");
    }

    [Fact]
    public void TwoContextPositions_HandComputed()
    {
        // C = D = H = 1, one query P = 1, w_q = w_k = 1, V = [0, ln 3]:
        // scores [0, ln 3] → A = [1/4, 3/4], O = 3/4·ln 3, y = 1 + 3/4·ln 3.
        float ln3 = MathF.Log(3f);
        using var p = Tensor.FromArray([1f], 1, 1, 1, 1);
        using var g = Tensor.FromArray([0f, ln3], 1, 1, 1, 2);
        using var bi = Tensor.FromArray([0L], 1);
        using var w = Tensor.FromArray([1f], 1, 1);
        using var y = ContextAttention.Forward(p, g, bi, w, w, 1);
        Assert.Equal(1 + 0.75 * Math.Log(3), y.ToArray<float>()[0], 6);

        // dy = 1: dA = V, dS = A ⊙ (V − A·V) = [−3/16·ln 3, 3/16·ln 3];
        // dQ = dS·K = 3/16·ln²3 → dp = 1 + dQ·w_q, dw_q = dQ·P;
        // dK = dSᵀ·Q = dS → dw_k = Σ dK·V = 3/16·ln²3; dV = A + dK·w_k.
        using var gy = Tensor.FromArray([1f], 1, 1, 1, 1);
        using var grads = ContextAttention.Backward(gy, p, g, bi, w, w, 1);
        double l = Math.Log(3), dq = 3.0 / 16 * l * l;
        Assert.Equal(1 + dq, grads.P.ToArray<float>()[0], 5);
        Assert.Equal(dq, grads.Wq.ToArray<float>()[0], 5);
        Assert.Equal(dq, grads.Wk.ToArray<float>()[0], 5);
        var dg = grads.G.ToArray<float>();
        Assert.Equal(0.25 - 3.0 / 16 * l, dg[0], 5);
        Assert.Equal(0.75 + 3.0 / 16 * l, dg[1], 5);
    }

    [Fact]
    public void SingleContextPosition_AddsContextVector_AndGradientsAreKnown()
    {
        // M = 1: every attention weight is 1, so y[k][c][q] = p[k][c][q] + g[n][c]; the scores have
        // zero gradient, so dw_q = dw_k = 0, dp = dy and dg[n][c] = Σ over n's RoIs and positions of dy.
        var dims = new Dims(3, 4, 6, 2, 1, 6, 2);
        var c = MakeCase(2, dims, bi: [1, 0, 1]);
        using var run = new Run(c, 2, 3, 1, 1);
        using var y = run.Forward();
        var yv = y.ToArray<float>();
        for (int k = 0; k < 3; k++)
            for (int ch = 0; ch < 4; ch++)
                for (int q = 0; q < 6; q++)
                {
                    int i = (k * 4 + ch) * 6 + q;
                    Assert.Equal(c.P[i] + c.G[(int)c.Bi[k] * 4 + ch], yv[i], 5);
                }
        using var grads = run.Backward();
        Assert.Equal(c.Gy, grads.P.ToArray<float>());
        Assert.All(grads.Wq.ToArray<float>(), v => Assert.Equal(0f, v, 6));
        Assert.All(grads.Wk.ToArray<float>(), v => Assert.Equal(0f, v, 6));
        var dg = grads.G.ToArray<float>();
        for (int n = 0; n < 2; n++)
            for (int ch = 0; ch < 4; ch++)
            {
                double s = 0;
                for (int k = 0; k < 3; k++)
                    if (c.Bi[k] == n)
                        for (int q = 0; q < 6; q++) s += c.Gy[(k * 4 + ch) * 6 + q];
                Assert.Equal(s, dg[n * 4 + ch], 5);
            }
    }

    [Fact]
    public void ZeroQueryProjection_AveragesTheContext()
    {
        // w_q = 0: all scores 0, uniform attention, y = p + mean over positions of g[n]
        using var p = Tensor.FromArray([1f, 2f, 3f, 4f], 1, 2, 1, 2);
        using var g = Tensor.FromArray([1f, 3f, 2f, 6f, /* image 1 */ 9f, 9f, 9f, 9f], 2, 2, 1, 2);
        using var bi = Tensor.FromArray([0L], 1);
        using var wq = Tensor.Zeros(Device.Cpu, 2, 2);
        using var wk = Tensor.FromArray([0.5f, -1f, 2f, 0.25f], 2, 2);
        using var y = ContextAttention.Forward(p, g, bi, wq, wk, 2);
        // head 0 averages channel 0 of image 0 (mean 2), head 1 channel 1 (mean 4)
        Assert.Equal([3f, 4f, 7f, 8f], y.ToArray<float>());
    }

    [Fact]
    public void GradientsOverwriteRecycledMemory_AndAreDeterministic()
    {
        var dims = new Dims(4, 8, 4, 2, 6, 8, 2);
        var c = MakeCase(9, dims);
        using var run = new Run(c, 2, 2, 2, 3);
        float[] first;
        using (var grads = run.Backward()) first = Flatten(grads);
        // leave NaN in the allocator's cache at exactly the gradient sizes, then run again
        foreach (var shape in new[] { new[] { 4, 8, 2, 2 }, new[] { 2, 8, 2, 3 }, new[] { 8, 8 }, new[] { 8, 8 } })
        {
            var t = Tensor.Empty(Device.Cpu, DataType.Float32, shape);
            t.Fill(float.NaN);
            t.Dispose();
        }
        using var again = run.Backward();
        Assert.Equal(first, Flatten(again));
        var want = ContextAttentionReference.Backward(c.Gy, c.P, c.G, c.Bi, c.Wq, c.Wk, dims);
        AssertClose(want.G, again.G.ToArray<float>(), "dg");
        AssertClose(want.Wk, again.Wk.ToArray<float>(), "dw_k");

        static float[] Flatten(ContextAttentionGradients g) =>
            [.. g.P.ToArray<float>(), .. g.G.ToArray<float>(), .. g.Wq.ToArray<float>(), .. g.Wk.ToArray<float>()];
    }

    [Fact]
    public void ZeroRois_GiveEmptyOutput_AndZeroGradients()
    {
        using var p = Tensor.Zeros(Device.Cpu, 0, 4, 2, 2);
        using var g = Tensor.FromArray(Enumerable.Repeat(1f, 2 * 4 * 3).ToArray(), 2, 4, 1, 3);
        using var bi = Tensor.Empty(Device.Cpu, DataType.Int64, 0);
        using var wq = Tensor.FromArray(Enumerable.Repeat(1f, 24).ToArray(), 6, 4);
        using var y = ContextAttention.Forward(p, g, bi, wq, wq, 2);
        Assert.Equal([0, 4, 2, 2], y.Shape.ToArray());
        using var grads = ContextAttention.Backward(p, p, g, bi, wq, wq, 2);
        Assert.Equal([2, 4, 1, 3], grads.G.Shape.ToArray());
        Assert.All(grads.G.ToArray<float>(), v => Assert.Equal(0f, v));
        Assert.All(grads.Wq.ToArray<float>(), v => Assert.Equal(0f, v));
        Assert.All(grads.Wk.ToArray<float>(), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void InvalidArguments_NameTheParameter()
    {
        using var p = Tensor.Zeros(Device.Cpu, 2, 4, 2, 2);
        using var g = Tensor.Zeros(Device.Cpu, 2, 4, 3, 3);
        using var bi = Tensor.FromArray([0L, 1L], 2);
        using var w = Tensor.Zeros(Device.Cpu, 6, 4);
        using var p3 = Tensor.Zeros(Device.Cpu, 2, 4, 4);
        using var g5 = Tensor.Zeros(Device.Cpu, 2, 5, 3, 3);
        using var w5 = Tensor.Zeros(Device.Cpu, 6, 5);
        using var wOther = Tensor.Zeros(Device.Cpu, 4, 4);
        using var biFloat = Tensor.Zeros(Device.Cpu, 2);
        using var biShort = Tensor.FromArray([0L], 1);
        using var biRange = Tensor.FromArray([0L, 2L], 2);
        using var biNeg = Tensor.FromArray([-1L, 0L], 2);
        using var gEmpty = Tensor.Zeros(Device.Cpu, 2, 4, 0, 3);
        using var gyBad = Tensor.Zeros(Device.Cpu, 2, 4, 2, 3);

        Assert.Equal("p", Assert.ThrowsAny<ArgumentException>(() => ContextAttention.Forward(p3, g, bi, w, w, 2)).ParamName);
        Assert.Equal("g", Assert.ThrowsAny<ArgumentException>(() => ContextAttention.Forward(p, g5, bi, w, w, 2)).ParamName);
        Assert.Equal("g", Assert.ThrowsAny<ArgumentException>(() => ContextAttention.Forward(p, gEmpty, bi, w, w, 2)).ParamName);
        Assert.Equal("wq", Assert.ThrowsAny<ArgumentException>(() => ContextAttention.Forward(p, g, bi, w5, w, 2)).ParamName);
        Assert.Equal("wk", Assert.ThrowsAny<ArgumentException>(() => ContextAttention.Forward(p, g, bi, w, wOther, 2)).ParamName);
        Assert.Equal("heads", Assert.ThrowsAny<ArgumentException>(() => ContextAttention.Forward(p, g, bi, w, w, 3)).ParamName);
        Assert.Equal("heads", Assert.ThrowsAny<ArgumentException>(() => ContextAttention.Forward(p, g, bi, w, w, 0)).ParamName);
        Assert.Equal("batchIndex", Assert.ThrowsAny<ArgumentException>(() => ContextAttention.Forward(p, g, biFloat, w, w, 2)).ParamName);
        Assert.Equal("batchIndex", Assert.ThrowsAny<ArgumentException>(() => ContextAttention.Forward(p, g, biShort, w, w, 2)).ParamName);
        Assert.Equal("batchIndex", Assert.ThrowsAny<ArgumentException>(() => ContextAttention.Forward(p, g, biRange, w, w, 2)).ParamName);
        Assert.Equal("batchIndex", Assert.ThrowsAny<ArgumentException>(() => ContextAttention.Forward(p, g, biNeg, w, w, 2)).ParamName);
        Assert.Equal("gradY", Assert.ThrowsAny<ArgumentException>(() => ContextAttention.Backward(gyBad, p, g, bi, w, w, 2)).ParamName);
        Assert.Equal("p", Assert.ThrowsAny<ArgumentException>(() => ContextAttention.Backward(p, p3, g, bi, w, w, 2)).ParamName);
    }
}
