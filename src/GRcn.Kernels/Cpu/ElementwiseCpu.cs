// CPU kernels of Elementwise: flat loops over Vector<float> lanes, split into contiguous
// chunks across workers for large tensors; per-channel ops parallelise over (n, c) planes.
// Channel sums reduce each channel over its planes in a fixed order (deterministic).
using System.Numerics;

namespace GRcn.Kernels.Cpu;

internal sealed unsafe partial class CpuBackend : IElementwiseBackend
{
    private const int FlatChunk = 1 << 14;

    /// <summary>
    /// Runs body(state, start, end) over [0, length) in chunks of FlatChunk elements; with a static
    /// lambda nothing is allocated.
    /// </summary>
    private static void Flat<TState>(long length, TState state, Action<TState, long, long> body)
    {
        int chunks = (int)((length + FlatChunk - 1) / FlatChunk);
        if (chunks <= 1)
        {
            body(state, 0, length);
            return;
        }
        Parallelism.For(chunks, FlatChunk, (state, body, length), static (t, c0, c1) =>
            t.body(t.state, (long)c0 * FlatChunk, Math.Min(t.length, (long)c1 * FlatChunk)));
    }

    public void Relu(Tensor x, Tensor y)
    {
        Flat(x.Length, (x: (nint)x.Ptr<float>(), y: (nint)y.Ptr<float>()), static (t, s, e) =>
        {
            float* xp = (float*)t.x, yp = (float*)t.y;
            long i = s;
            var zero = Vector<float>.Zero;
            for (; i + Vector<float>.Count <= e; i += Vector<float>.Count)
                Vector.Store(Vector.Max(Vector.Load(xp + i), zero), yp + i);
            for (; i < e; i++) yp[i] = xp[i] > 0f ? xp[i] : 0f;
        });
    }

    public void ReluBackward(Tensor gradY, Tensor y, Tensor gradX)
    {
        Flat(y.Length, (g: (nint)gradY.Ptr<float>(), y: (nint)y.Ptr<float>(), d: (nint)gradX.Ptr<float>()), static (t, s, e) =>
        {
            float* gp = (float*)t.g, yp = (float*)t.y, dp = (float*)t.d;
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
        Flat(a.Length, (a: (nint)a.Ptr<float>(), b: (nint)b.Ptr<float>(), y: (nint)y.Ptr<float>()), static (t, s, e) =>
        {
            float* ap = (float*)t.a, bp = (float*)t.b, yp = (float*)t.y;
            long i = s;
            for (; i + Vector<float>.Count <= e; i += Vector<float>.Count)
                Vector.Store(Vector.Load(ap + i) + Vector.Load(bp + i), yp + i);
            for (; i < e; i++) yp[i] = ap[i] + bp[i];
        });
    }

    public void AddScaled(Tensor y, Tensor x, float alpha)
    {
        Flat(y.Length, (x: (nint)x.Ptr<float>(), y: (nint)y.Ptr<float>(), alpha), static (t, s, e) =>
        {
            float* xp = (float*)t.x, yp = (float*)t.y;
            float alpha = t.alpha;
            long i = s;
            var va = new Vector<float>(alpha);
            for (; i + Vector<float>.Count <= e; i += Vector<float>.Count)
                Vector.Store(Vector.FusedMultiplyAdd(va, Vector.Load(xp + i), Vector.Load(yp + i)), yp + i);
            for (; i < e; i++) yp[i] = MathF.FusedMultiplyAdd(alpha, xp[i], yp[i]);
        });
    }

    public void Scale(Tensor x, float alpha, Tensor y)
    {
        Flat(x.Length, (x: (nint)x.Ptr<float>(), y: (nint)y.Ptr<float>(), alpha), static (t, s, e) =>
        {
            float* xp = (float*)t.x, yp = (float*)t.y;
            float alpha = t.alpha;
            long i = s;
            var va = new Vector<float>(alpha);
            for (; i + Vector<float>.Count <= e; i += Vector<float>.Count)
                Vector.Store(va * Vector.Load(xp + i), yp + i);
            for (; i < e; i++) yp[i] = alpha * xp[i];
        });
    }

    public void Multiply(Tensor a, Tensor b, Tensor y)
    {
        Flat(a.Length, (a: (nint)a.Ptr<float>(), b: (nint)b.Ptr<float>(), y: (nint)y.Ptr<float>()), static (t, s, e) =>
        {
            float* ap = (float*)t.a, bp = (float*)t.b, yp = (float*)t.y;
            long i = s;
            for (; i + Vector<float>.Count <= e; i += Vector<float>.Count)
                Vector.Store(Vector.Load(ap + i) * Vector.Load(bp + i), yp + i);
            for (; i < e; i++) yp[i] = ap[i] * bp[i];
        });
    }

    public void DropoutMask(Tensor mask, ulong state, float p)
    {
        float keep = 1f / (1f - p);
        Flat(mask.Length, (m: (nint)mask.Ptr<float>(), state, p, keep), static (t, s, e) =>
        {
            float* mp = (float*)t.m;
            for (long i = s; i < e; i++) mp[i] = SplitMix64Uniform(t.state, i) >= t.p ? t.keep : 0f;
        });
    }

    /// <summary>The (e + 1)-th SplitMix64 output after <paramref name="state"/> as a uniform float in [0, 1) with 24 bits (kernels/Elementwise.cs draws the same).</summary>
    internal static float SplitMix64Uniform(ulong state, long e)
    {
        ulong z = state + (ulong)(e + 1) * 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return ((z ^ (z >> 31)) >> 40) * (1f / (1 << 24));
    }

    public void AdamWUpdate(Tensor weight, Tensor grad, Tensor expAvg, Tensor expAvgSq, in AdamWStep step)
    {
        // torch's order: decay first, then the moments; w −= (lr / bc1) · m / (√v / √bc2 + ε)
        var k = new AdamWConstants(step.Beta1, step.Beta2, step.Epsilon, 1f - step.LearningRate * step.WeightDecay,
            (float)(step.LearningRate / (1 - Math.Pow(step.Beta1, step.Step))), (float)(1 / Math.Sqrt(1 - Math.Pow(step.Beta2, step.Step))));
        var state = (w: (nint)weight.Ptr<float>(), g: (nint)grad.Ptr<float>(), m: (nint)expAvg.Ptr<float>(), v: (nint)expAvgSq.Ptr<float>(), k);
        Flat(weight.Length, state, static (t, s, e) =>
        {
            float* wp = (float*)t.w, gp = (float*)t.g, mp = (float*)t.m, vp = (float*)t.v;
            var (b1, b2, eps, decay, stepSize, invSqrtBc2) = t.k;
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

    private readonly record struct AdamWConstants(float Beta1, float Beta2, float Epsilon, float Decay, float StepSize, float InvSqrtBc2);

    public void ChannelAffine(Tensor x, Tensor? scale, Tensor? shift, Tensor y, int n, int c, long s)
    {
        var state = (x: (nint)x.Ptr<float>(), y: (nint)y.Ptr<float>(), sc: scale is null ? 0 : (nint)scale.Ptr<float>(),
            sh: shift is null ? 0 : (nint)shift.Ptr<float>(), c, s);
        // plane p = n·C + c covers elements [p·S, (p+1)·S).
        Parallelism.For(n * c, s, state, static (t, p0, p1) =>
        {
            float* xp = (float*)t.x, yp = (float*)t.y, sc = (float*)t.sc, sh = (float*)t.sh;
            int c = t.c;
            long s = t.s;
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
        Parallelism.For(c, (long)n * s, (x: (nint)x.Ptr<float>(), sum: (nint)sum.Ptr<float>(), n, c, s, accumulate), static (t, c0, c1) =>
        {
            float* xp = (float*)t.x, sp = (float*)t.sum;
            var (n, c, s, accumulate) = (t.n, t.c, t.s, t.accumulate);
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
        Parallelism.For(n * c, s, (x: (nint)x.Ptr<float>(), y: (nint)y.Ptr<float>(), s), static (t, p0, p1) =>
        {
            float* xp = (float*)t.x, yp = (float*)t.y;
            long s = t.s;
            float inv = 1f / s;
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
        Parallelism.For(n * c, s, (g: (nint)gradY.Ptr<float>(), d: (nint)gradX.Ptr<float>(), s), static (t, p0, p1) =>
        {
            float* gp = (float*)t.g, dp = (float*)t.d;
            long s = t.s;
            float inv = 1f / s;
            for (int p = p0; p < p1; p++)
                new Span<float>(dp + (long)p * s, checked((int)s)).Fill(gp[p] * inv);
        });
    }
}
