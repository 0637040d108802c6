// Oracle for context_attention: the formula of specs/ops.md written out per RoI and head in
// float64 with plain loops (keys re-projected for every RoI, softmax with the row max
// subtracted), and its gradients by the chain rule, term by term.
namespace GRcn.Kernels.Tests.Reference;

internal static class ContextAttentionReference
{
    /// <summary>Sizes: p (K, C, Q), g (N, C, M), w (D, C), heads H.</summary>
    public readonly record struct Dims(int K, int C, int Q, int N, int M, int D, int H)
    {
        public int Dk => D / H;
        public int Cv => C / H;
    }

    public sealed record Grads(double[] P, double[] G, double[] Wq, double[] Wk);

    public static double[] Forward(float[] p, float[] g, long[] bi, float[] wq, float[] wk, Dims d)
    {
        var y = new double[d.K * d.C * d.Q];
        for (int k = 0; k < d.K; k++)
        {
            int n = (int)bi[k];
            for (int c = 0; c < d.C; c++)
                for (int q = 0; q < d.Q; q++) y[(k * d.C + c) * d.Q + q] = p[(k * d.C + c) * d.Q + q];
            for (int h = 0; h < d.H; h++)
            {
                var a = Attention(p, g, wq, wk, d, k, n, h, out _, out _);
                for (int q = 0; q < d.Q; q++)
                {
                    for (int c = 0; c < d.Cv; c++)
                    {
                        int ch = h * d.Cv + c;
                        double o = 0;
                        for (int m = 0; m < d.M; m++) o += a[q, m] * g[(n * d.C + ch) * d.M + m];
                        y[(k * d.C + ch) * d.Q + q] += o;
                    }
                }
            }
        }
        return y;
    }

    public static Grads Backward(float[] gy, float[] p, float[] g, long[] bi, float[] wq, float[] wk, Dims d)
    {
        var dp = new double[d.K * d.C * d.Q];
        var dg = new double[d.N * d.C * d.M];
        var dwq = new double[d.D * d.C];
        var dwk = new double[d.D * d.C];
        double inv = 1.0 / Math.Sqrt(d.Dk);
        for (int i = 0; i < dp.Length; i++) dp[i] = gy[i];
        for (int k = 0; k < d.K; k++)
        {
            int n = (int)bi[k];
            double P(int q, int c) => p[(k * d.C + c) * d.Q + q];
            double V(int m, int c) => g[(n * d.C + c) * d.M + m];
            for (int h = 0; h < d.H; h++)
            {
                var a = Attention(p, g, wq, wk, d, k, n, h, out var qh, out var kh);
                // dO (Q × cv) is the head's slice of dY
                var dO = new double[d.Q, d.Cv];
                for (int q = 0; q < d.Q; q++)
                    for (int c = 0; c < d.Cv; c++) dO[q, c] = gy[(k * d.C + h * d.Cv + c) * d.Q + q];
                var dS = new double[d.Q, d.M];
                for (int q = 0; q < d.Q; q++)
                {
                    var dA = new double[d.M];
                    for (int m = 0; m < d.M; m++)
                        for (int c = 0; c < d.Cv; c++) dA[m] += dO[q, c] * V(m, h * d.Cv + c);
                    double s = 0;
                    for (int m = 0; m < d.M; m++) s += dA[m] * a[q, m];
                    for (int m = 0; m < d.M; m++) dS[q, m] = a[q, m] * (dA[m] - s);
                }
                // values
                for (int m = 0; m < d.M; m++)
                    for (int c = 0; c < d.Cv; c++)
                    {
                        double s = 0;
                        for (int q = 0; q < d.Q; q++) s += a[q, m] * dO[q, c];
                        dg[(n * d.C + h * d.Cv + c) * d.M + m] += s;
                    }
                // queries: dQ = dS·K/√dk → w_q and p
                for (int q = 0; q < d.Q; q++)
                    for (int e = 0; e < d.Dk; e++)
                    {
                        double dq = 0;
                        for (int m = 0; m < d.M; m++) dq += dS[q, m] * kh[m, e];
                        dq *= inv;
                        int row = h * d.Dk + e;
                        for (int c = 0; c < d.C; c++)
                        {
                            dwq[row * d.C + c] += dq * P(q, c);
                            dp[(k * d.C + c) * d.Q + q] += dq * wq[row * d.C + c];
                        }
                    }
                // keys: dK = dSᵀ·Q/√dk → w_k and g
                for (int m = 0; m < d.M; m++)
                    for (int e = 0; e < d.Dk; e++)
                    {
                        double dkv = 0;
                        for (int q = 0; q < d.Q; q++) dkv += dS[q, m] * qh[q, e];
                        dkv *= inv;
                        int row = h * d.Dk + e;
                        for (int c = 0; c < d.C; c++)
                        {
                            dwk[row * d.C + c] += dkv * V(m, c);
                            dg[(n * d.C + c) * d.M + m] += dkv * wk[row * d.C + c];
                        }
                    }
            }
        }
        return new Grads(dp, dg, dwq, dwk);
    }

    /// <summary>A (Q × M) of RoI k, image n, head h; also returns Qh (Q × dk) and Kh (M × dk).</summary>
    private static double[,] Attention(float[] p, float[] g, float[] wq, float[] wk, Dims d, int k, int n, int h,
        out double[,] qh, out double[,] kh)
    {
        qh = new double[d.Q, d.Dk];
        kh = new double[d.M, d.Dk];
        for (int e = 0; e < d.Dk; e++)
        {
            int row = h * d.Dk + e;
            for (int q = 0; q < d.Q; q++)
            {
                double s = 0;
                for (int c = 0; c < d.C; c++) s += (double)p[(k * d.C + c) * d.Q + q] * wq[row * d.C + c];
                qh[q, e] = s;
            }
            for (int m = 0; m < d.M; m++)
            {
                double s = 0;
                for (int c = 0; c < d.C; c++) s += (double)g[(n * d.C + c) * d.M + m] * wk[row * d.C + c];
                kh[m, e] = s;
            }
        }
        var a = new double[d.Q, d.M];
        double inv = 1.0 / Math.Sqrt(d.Dk);
        for (int q = 0; q < d.Q; q++)
        {
            double max = double.NegativeInfinity;
            for (int m = 0; m < d.M; m++)
            {
                double s = 0;
                for (int e = 0; e < d.Dk; e++) s += qh[q, e] * kh[m, e];
                a[q, m] = s * inv;
                max = Math.Max(max, a[q, m]);
            }
            double sum = 0;
            for (int m = 0; m < d.M; m++) sum += a[q, m] = Math.Exp(a[q, m] - max);
            for (int m = 0; m < d.M; m++) a[q, m] /= sum;
        }
        return a;
    }
}
