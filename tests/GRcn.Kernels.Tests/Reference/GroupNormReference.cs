// Plain double-precision group norm, forward and backward, straight from the definition
// (two-pass statistics; dx by the chain rule through μ and σ²), the oracle of GroupNormTests.
namespace GRcn.Kernels.Tests.Reference;

internal static class GroupNormReference
{
    public static (double[] Y, double[] Mean, double[] Rstd) Forward(float[] x, int n, int c, int s, int groups, float[]? w, float[]? b, double eps)
    {
        int cg = c / groups, m = cg * s;
        var y = new double[x.Length];
        var mean = new double[n * groups];
        var rstd = new double[n * groups];
        for (int i = 0; i < n; i++)
            for (int g = 0; g < groups; g++)
            {
                int off = (i * c + g * cg) * s;
                double mu = 0;
                for (int k = 0; k < m; k++) mu += x[off + k];
                mu /= m;
                double var = 0;
                for (int k = 0; k < m; k++) var += (x[off + k] - mu) * (x[off + k] - mu);
                var /= m;
                double r = 1 / Math.Sqrt(var + eps);
                mean[i * groups + g] = mu;
                rstd[i * groups + g] = r;
                for (int k = 0; k < m; k++)
                {
                    int ch = g * cg + k / s;
                    y[off + k] = (x[off + k] - mu) * r * (w?[ch] ?? 1f) + (b?[ch] ?? 0f);
                }
            }
        return (y, mean, rstd);
    }

    public static (double[] Dx, double[] Dw, double[] Db) Backward(float[] dy, float[] x, int n, int c, int s, int groups, float[]? w, double eps)
    {
        var (_, mean, rstd) = Forward(x, n, c, s, groups, w, null, eps);
        int cg = c / groups, m = cg * s;
        var dx = new double[x.Length];
        var dw = new double[c];
        var db = new double[c];
        for (int i = 0; i < n; i++)
            for (int g = 0; g < groups; g++)
            {
                int off = (i * c + g * cg) * s;
                double mu = mean[i * groups + g], r = rstd[i * groups + g];
                // dL/dx̂ = γ·dy; dx = r·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))
                double sumG = 0, sumGx = 0;
                for (int k = 0; k < m; k++)
                {
                    int ch = g * cg + k / s;
                    double xh = (x[off + k] - mu) * r, gh = dy[off + k] * (w?[ch] ?? 1f);
                    sumG += gh;
                    sumGx += gh * xh;
                    dw[ch] += dy[off + k] * xh;
                    db[ch] += dy[off + k];
                }
                for (int k = 0; k < m; k++)
                {
                    int ch = g * cg + k / s;
                    double xh = (x[off + k] - mu) * r, gh = dy[off + k] * (w?[ch] ?? 1f);
                    dx[off + k] = r * (gh - sumG / m - xh * sumGx / m);
                }
            }
        return (dx, dw, db);
    }
}
