// CPU kernels of GroupNorm. In NCHW layout the group (n, g) is one contiguous run of
// C/G · S floats starting at (n·C + g·C/G)·S. Forward: work items are the N·G groups; each
// takes two passes for μ and σ² (the second over squared deviations, so no cancellation) and
// one to write y with a per-channel scale and shift. Backward: the per-(n, c) sums Σ dy·x and
// Σ dy (planes in parallel), then dx per group (groups in parallel), then dweight and dbias
// per channel over n. Sums run over Vector<float> lanes into double totals, in a fixed order.
using System.Buffers;
using System.Numerics;

namespace GRcn.Kernels.Cpu;

internal sealed unsafe partial class CpuBackend : IGroupNormBackend
{
    public void GroupNormForward(Tensor x, Tensor? weight, Tensor? bias, float epsilon, Tensor y, Tensor mean, Tensor rstd, in GroupNormGeometry geo)
    {
        var state = (x: (nint)x.Ptr<float>(), y: (nint)y.Ptr<float>(), mean: (nint)mean.Ptr<float>(), rstd: (nint)rstd.Ptr<float>(),
            w: weight is null ? 0 : (nint)weight.Ptr<float>(), b: bias is null ? 0 : (nint)bias.Ptr<float>(), epsilon, geo);
        Parallelism.For(geo.N * geo.Groups, 3L * geo.ChannelsPerGroup * geo.S, state, static (t, i0, i1) =>
        {
            float* xp = (float*)t.x, yp = (float*)t.y, mp = (float*)t.mean, rp = (float*)t.rstd, wp = (float*)t.w, bp = (float*)t.b;
            int c = t.geo.C, groups = t.geo.Groups, cg = t.geo.ChannelsPerGroup;
            long s = t.geo.S, m = cg * s;
            float epsilon = t.epsilon;
            for (int item = i0; item < i1; item++)
            {
                int n = item / groups, grp = item % groups;
                // item = n·G + g; the group's first channel is g·C/G
                float* xg = xp + ((long)n * c + (long)grp * cg) * s;
                float* yg = yp + ((long)n * c + (long)grp * cg) * s;
                double mu = Sum(xg, m) / m;
                double var = SumSquaredDeviation(xg, m, (float)mu) / m;
                float r = (float)(1.0 / Math.Sqrt(var + epsilon));
                mp[item] = (float)mu;
                rp[item] = r;
                for (int k = 0; k < cg; k++)
                {
                    int ch = grp * cg + k;
                    float a = r * (wp is null ? 1f : wp[ch]);
                    float b = (bp is null ? 0f : bp[ch]) - (float)mu * a;
                    Affine(xg + k * s, yg + k * s, s, a, b);
                }
            }
        });
    }

    public void GroupNormBackward(Tensor gradY, Tensor x, Tensor mean, Tensor rstd, Tensor? weight,
        Tensor? gradX, Tensor? gradWeight, Tensor? gradBias, in GroupNormGeometry geo)
    {
        float* dyp = gradY.Ptr<float>(), xp = x.Ptr<float>(), mp = mean.Ptr<float>(), rp = rstd.Ptr<float>();
        float* wp = weight is null ? null : weight.Ptr<float>();
        int n = geo.N, c = geo.C, groups = geo.Groups, cg = geo.ChannelsPerGroup;
        long s = geo.S;
        // sums[2·p] = Σ_s dy·x and sums[2·p + 1] = Σ_s dy of plane p = n·C + c
        double[] rented = ArrayPool<double>.Shared.Rent(2 * n * c);
        try
        {
            fixed (double* sums = rented)
            {
                double* sp = sums;
                Parallelism.For(n * c, 2 * s, (dy: (nint)dyp, x: (nint)xp, sums: (nint)sp, s), static (t, p0, p1) =>
                {
                    float* dyp = (float*)t.dy, xp = (float*)t.x;
                    double* sp = (double*)t.sums;
                    for (int p = p0; p < p1; p++)
                        DotAndSum(dyp + (long)p * t.s, xp + (long)p * t.s, t.s, out sp[2 * p], out sp[2 * p + 1]);
                });
                if (gradX is not null)
                {
                    var state = (dy: (nint)dyp, x: (nint)xp, dx: (nint)gradX.Ptr<float>(), mean: (nint)mp, rstd: (nint)rp, w: (nint)wp, sums: (nint)sp, geo);
                    Parallelism.For(n * groups, 2L * cg * s, state, static (t, i0, i1) =>
                    {
                        float* dyp = (float*)t.dy, xp = (float*)t.x, dxp = (float*)t.dx, mp = (float*)t.mean, rp = (float*)t.rstd, wp = (float*)t.w;
                        double* sp = (double*)t.sums;
                        int c = t.geo.C, groups = t.geo.Groups, cg = t.geo.ChannelsPerGroup;
                        long s = t.geo.S, m = cg * s;
                        for (int item = i0; item < i1; item++)
                        {
                            int b = item / groups, grp = item % groups;
                            double mu = mp[item], r = rp[item];
                            double sumA = 0, sumB = 0; // Σ_c γ·Σ dy·x, Σ_c γ·Σ dy over the group
                            for (int k = 0; k < cg; k++)
                            {
                                int ch = grp * cg + k;
                                double gamma = wp is null ? 1.0 : wp[ch];
                                sumA += gamma * sp[2 * (b * c + ch)];
                                sumB += gamma * sp[2 * (b * c + ch) + 1];
                            }
                            // dx = γ·r·dy + c2·x + c3 (see the op's header for the derivation's terms)
                            double c2 = (sumB * mu - sumA) * r * r * r / m;
                            double c3 = -c2 * mu - sumB * r / m;
                            for (int k = 0; k < cg; k++)
                            {
                                int ch = grp * cg + k;
                                long off = ((long)b * c + ch) * s;
                                float a = (float)((wp is null ? 1.0 : wp[ch]) * r);
                                Combine(dyp + off, xp + off, dxp + off, s, a, (float)c2, (float)c3);
                            }
                        }
                    });
                }
                float* gw = gradWeight is null ? null : gradWeight.Ptr<float>();
                float* gb = gradBias is null ? null : gradBias.Ptr<float>();
                for (int ch = 0; ch < c; ch++)
                {
                    double dw = 0, db = 0;
                    int grp = ch / cg;
                    for (int b = 0; b < n; b++)
                    {
                        double dyx = sp[2 * (b * c + ch)], dy = sp[2 * (b * c + ch) + 1];
                        // Σ dy·x̂ = (Σ dy·x − μ·Σ dy)·rstd
                        dw += (dyx - mp[b * groups + grp] * dy) * rp[b * groups + grp];
                        db += dy;
                    }
                    if (gw is not null) gw[ch] = (float)dw;
                    if (gb is not null) gb[ch] = (float)db;
                }
            }
        }
        finally
        {
            ArrayPool<double>.Shared.Return(rented);
        }
    }

    private static double Sum(float* x, long length)
    {
        var acc = Vector<float>.Zero;
        double total = 0;
        long i = 0;
        // flush the float lanes into the double total every 4096 elements to bound rounding
        while (i + Vector<float>.Count <= length)
        {
            long stop = Math.Min(length - Vector<float>.Count + 1, i + 4096);
            for (; i < stop; i += Vector<float>.Count) acc += Vector.Load(x + i);
            total += Vector.Sum(acc);
            acc = Vector<float>.Zero;
        }
        for (; i < length; i++) total += x[i];
        return total;
    }

    private static double SumSquaredDeviation(float* x, long length, float mu)
    {
        var vmu = new Vector<float>(mu);
        var acc = Vector<float>.Zero;
        double total = 0;
        long i = 0;
        while (i + Vector<float>.Count <= length)
        {
            long stop = Math.Min(length - Vector<float>.Count + 1, i + 4096);
            for (; i < stop; i += Vector<float>.Count)
            {
                var d = Vector.Load(x + i) - vmu;
                acc = Vector.FusedMultiplyAdd(d, d, acc);
            }
            total += Vector.Sum(acc);
            acc = Vector<float>.Zero;
        }
        for (; i < length; i++)
        {
            double d = x[i] - mu;
            total += d * d;
        }
        return total;
    }

    private static void DotAndSum(float* dy, float* x, long length, out double dot, out double sum)
    {
        var accDot = Vector<float>.Zero;
        var accSum = Vector<float>.Zero;
        dot = 0;
        sum = 0;
        long i = 0;
        while (i + Vector<float>.Count <= length)
        {
            long stop = Math.Min(length - Vector<float>.Count + 1, i + 4096);
            for (; i < stop; i += Vector<float>.Count)
            {
                var g = Vector.Load(dy + i);
                accDot = Vector.FusedMultiplyAdd(g, Vector.Load(x + i), accDot);
                accSum += g;
            }
            dot += Vector.Sum(accDot);
            sum += Vector.Sum(accSum);
            accDot = Vector<float>.Zero;
            accSum = Vector<float>.Zero;
        }
        for (; i < length; i++)
        {
            dot += (double)dy[i] * x[i];
            sum += dy[i];
        }
    }

    private static void Affine(float* x, float* y, long length, float a, float b)
    {
        var va = new Vector<float>(a);
        var vb = new Vector<float>(b);
        long i = 0;
        for (; i + Vector<float>.Count <= length; i += Vector<float>.Count)
            Vector.Store(Vector.FusedMultiplyAdd(Vector.Load(x + i), va, vb), y + i);
        for (; i < length; i++) y[i] = MathF.FusedMultiplyAdd(x[i], a, b);
    }

    private static void Combine(float* dy, float* x, float* dx, long length, float a, float c2, float c3)
    {
        var va = new Vector<float>(a);
        var v2 = new Vector<float>(c2);
        var v3 = new Vector<float>(c3);
        long i = 0;
        for (; i + Vector<float>.Count <= length; i += Vector<float>.Count)
            Vector.Store(Vector.FusedMultiplyAdd(Vector.Load(dy + i), va, Vector.FusedMultiplyAdd(Vector.Load(x + i), v2, v3)), dx + i);
        for (; i < length; i++) dx[i] = MathF.FusedMultiplyAdd(dy[i], a, MathF.FusedMultiplyAdd(x[i], c2, c3));
    }
}
