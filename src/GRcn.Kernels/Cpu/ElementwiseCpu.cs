// CPU kernels of Elementwise: flat loops over Vector<float> lanes, split into contiguous
// chunks across workers for large tensors; per-channel ops parallelise over (n, c) planes.
// Channel sums reduce each channel over its planes in a fixed order (deterministic).
using System.Numerics;

namespace GRcn.Kernels.Cpu;

internal sealed unsafe partial class CpuBackend : IElementwiseBackend
{
    private const int FlatChunk = 1 << 14;

    /// <summary>Runs body(start, end) over [0, length) in chunks of FlatChunk elements.</summary>
    private static void Flat(long length, Action<long, long> body)
    {
        int chunks = (int)((length + FlatChunk - 1) / FlatChunk);
        if (chunks <= 1)
        {
            body(0, length);
            return;
        }
        Parallelism.For(chunks, FlatChunk, (c0, c1) => body((long)c0 * FlatChunk, Math.Min(length, (long)c1 * FlatChunk)));
    }

    public void Relu(Tensor x, Tensor y)
    {
        float* xp = x.Ptr<float>(), yp = y.Ptr<float>();
        Flat(x.Length, (s, e) =>
        {
            long i = s;
            var zero = Vector<float>.Zero;
            for (; i + Vector<float>.Count <= e; i += Vector<float>.Count)
                Vector.Store(Vector.Max(Vector.Load(xp + i), zero), yp + i);
            for (; i < e; i++) yp[i] = xp[i] > 0f ? xp[i] : 0f;
        });
    }

    public void ReluBackward(Tensor gradY, Tensor y, Tensor gradX)
    {
        float* gp = gradY.Ptr<float>(), yp = y.Ptr<float>(), dp = gradX.Ptr<float>();
        Flat(y.Length, (s, e) =>
        {
            long i = s;
            for (; i + Vector<float>.Count <= e; i += Vector<float>.Count)
            {
                var mask = Vector.GreaterThan(Vector.Load(yp + i), Vector<float>.Zero);
                Vector.Store(Vector.ConditionalSelect(mask, Vector.Load(gp + i), Vector<float>.Zero), dp + i);
            }
            for (; i < e; i++) dp[i] = yp[i] > 0f ? gp[i] : 0f;
        });
    }

    public void Add(Tensor a, Tensor b, Tensor y)
    {
        float* ap = a.Ptr<float>(), bp = b.Ptr<float>(), yp = y.Ptr<float>();
        Flat(a.Length, (s, e) =>
        {
            long i = s;
            for (; i + Vector<float>.Count <= e; i += Vector<float>.Count)
                Vector.Store(Vector.Load(ap + i) + Vector.Load(bp + i), yp + i);
            for (; i < e; i++) yp[i] = ap[i] + bp[i];
        });
    }

    public void AddScaled(Tensor y, Tensor x, float alpha)
    {
        float* xp = x.Ptr<float>(), yp = y.Ptr<float>();
        Flat(y.Length, (s, e) =>
        {
            long i = s;
            var va = new Vector<float>(alpha);
            for (; i + Vector<float>.Count <= e; i += Vector<float>.Count)
                Vector.Store(Vector.FusedMultiplyAdd(va, Vector.Load(xp + i), Vector.Load(yp + i)), yp + i);
            for (; i < e; i++) yp[i] = MathF.FusedMultiplyAdd(alpha, xp[i], yp[i]);
        });
    }

    public void Scale(Tensor x, float alpha, Tensor y)
    {
        float* xp = x.Ptr<float>(), yp = y.Ptr<float>();
        Flat(x.Length, (s, e) =>
        {
            long i = s;
            var va = new Vector<float>(alpha);
            for (; i + Vector<float>.Count <= e; i += Vector<float>.Count)
                Vector.Store(va * Vector.Load(xp + i), yp + i);
            for (; i < e; i++) yp[i] = alpha * xp[i];
        });
    }

    public void Multiply(Tensor a, Tensor b, Tensor y)
    {
        float* ap = a.Ptr<float>(), bp = b.Ptr<float>(), yp = y.Ptr<float>();
        Flat(a.Length, (s, e) =>
        {
            long i = s;
            for (; i + Vector<float>.Count <= e; i += Vector<float>.Count)
                Vector.Store(Vector.Load(ap + i) * Vector.Load(bp + i), yp + i);
            for (; i < e; i++) yp[i] = ap[i] * bp[i];
        });
    }

    public void AdamWUpdate(Tensor weight, Tensor grad, Tensor expAvg, Tensor expAvgSq, in AdamWStep step)
    {
        float* wp = weight.Ptr<float>(), gp = grad.Ptr<float>(), mp = expAvg.Ptr<float>(), vp = expAvgSq.Ptr<float>();
        float b1 = step.Beta1, b2 = step.Beta2, eps = step.Epsilon;
        float decay = 1f - step.LearningRate * step.WeightDecay;
        // torch's order: decay first, then the moments; w −= (lr / bc1) · m / (√v / √bc2 + ε)
        float stepSize = (float)(step.LearningRate / (1 - Math.Pow(b1, step.Step)));
        float invSqrtBc2 = (float)(1 / Math.Sqrt(1 - Math.Pow(b2, step.Step)));
        Flat(weight.Length, (s, e) =>
        {
            long i = s;
            var vb1 = new Vector<float>(b1);
            var vb2 = new Vector<float>(b2);
            var v1b1 = new Vector<float>(1f - b1);
            var v1b2 = new Vector<float>(1f - b2);
            var vdecay = new Vector<float>(decay);
            var vstep = new Vector<float>(stepSize);
            var vinv = new Vector<float>(invSqrtBc2);
            var veps = new Vector<float>(eps);
            for (; i + Vector<float>.Count <= e; i += Vector<float>.Count)
            {
                var g = Vector.Load(gp + i);
                var m = vb1 * Vector.Load(mp + i) + v1b1 * g;
                var v = vb2 * Vector.Load(vp + i) + v1b2 * g * g;
                Vector.Store(m, mp + i);
                Vector.Store(v, vp + i);
                var denom = Vector.SquareRoot(v) * vinv + veps;
                Vector.Store(Vector.Load(wp + i) * vdecay - vstep * m / denom, wp + i);
            }
            for (; i < e; i++)
            {
                float g = gp[i];
                float m = b1 * mp[i] + (1f - b1) * g;
                float v = b2 * vp[i] + (1f - b2) * g * g;
                mp[i] = m;
                vp[i] = v;
                wp[i] = wp[i] * decay - stepSize * m / (MathF.Sqrt(v) * invSqrtBc2 + eps);
            }
        });
    }

    public void ChannelAffine(Tensor x, Tensor? scale, Tensor? shift, Tensor y, int n, int c, long s)
    {
        float* xp = x.Ptr<float>(), yp = y.Ptr<float>();
        float* sc = scale is null ? null : scale.Ptr<float>();
        float* sh = shift is null ? null : shift.Ptr<float>();
        // plane p = n·C + c covers elements [p·S, (p+1)·S).
        Parallelism.For(n * c, s, (p0, p1) =>
        {
            for (int p = p0; p < p1; p++)
            {
                int ch = p % c;
                float a = sc is null ? 1f : sc[ch], b = sh is null ? 0f : sh[ch];
                float* xr = xp + (long)p * s, yr = yp + (long)p * s;
                long i = 0;
                var va = new Vector<float>(a);
                var vb = new Vector<float>(b);
                for (; i + Vector<float>.Count <= s; i += Vector<float>.Count)
                    Vector.Store(Vector.FusedMultiplyAdd(Vector.Load(xr + i), va, vb), yr + i);
                for (; i < s; i++) yr[i] = MathF.FusedMultiplyAdd(xr[i], a, b);
            }
        });
    }

    public void ChannelSum(Tensor x, Tensor sum, int n, int c, long s, bool accumulate)
    {
        float* xp = x.Ptr<float>(), sp = sum.Ptr<float>();
        Parallelism.For(c, (long)n * s, (c0, c1) =>
        {
            for (int ch = c0; ch < c1; ch++)
            {
                double total = 0;
                for (int b = 0; b < n; b++)
                {
                    float* xr = xp + ((long)b * c + ch) * s;
                    var acc = Vector<float>.Zero;
                    long i = 0;
                    for (; i + Vector<float>.Count <= s; i += Vector<float>.Count) acc += Vector.Load(xr + i);
                    float part = Vector.Sum(acc);
                    for (; i < s; i++) part += xr[i];
                    total += part;
                }
                sp[ch] = accumulate ? sp[ch] + (float)total : (float)total;
            }
        });
    }

    public void GlobalAveragePool(Tensor x, Tensor y, int n, int c, long s)
    {
        float* xp = x.Ptr<float>(), yp = y.Ptr<float>();
        float inv = 1f / s;
        Parallelism.For(n * c, s, (p0, p1) =>
        {
            for (int p = p0; p < p1; p++)
            {
                float* xr = xp + (long)p * s;
                var acc = Vector<float>.Zero;
                long i = 0;
                for (; i + Vector<float>.Count <= s; i += Vector<float>.Count) acc += Vector.Load(xr + i);
                float total = Vector.Sum(acc);
                for (; i < s; i++) total += xr[i];
                yp[p] = total * inv;
            }
        });
    }

    public void GlobalAveragePoolBackward(Tensor gradY, Tensor gradX, int n, int c, long s)
    {
        float* gp = gradY.Ptr<float>(), dp = gradX.Ptr<float>();
        float inv = 1f / s;
        Parallelism.For(n * c, s, (p0, p1) =>
        {
            for (int p = p0; p < p1; p++)
                new Span<float>(dp + (long)p * s, checked((int)s)).Fill(gp[p] * inv);
        });
    }
}
