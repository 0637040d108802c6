// Oracle for GEMM: the textbook triple loop in double precision.
namespace GRcn.Kernels.Tests.Reference;

/// <summary>Naive C = alpha·op(A)·op(B) + beta·C on row-major arrays, summed in double.</summary>
internal static class GemmReference
{
    /// <summary>
    /// Returns the m×n result (row-major, dense) and, per element, the scale
    /// |alpha|·Σ_p |op(A)[i,p]·op(B)[p,j]| + |beta·C[i,j]| that bounds float32 rounding error.
    /// C is read with leading dimension <paramref name="ldc"/>; beta = 0 ignores C entirely.
    /// </summary>
    public static (double[] Value, double[] Scale) Multiply(bool transposeA, bool transposeB, int m, int n, int k, float alpha,
        float[] a, int lda, float[] b, int ldb, float beta, float[] c, int ldc)
    {
        var value = new double[m * n];
        var scale = new double[m * n];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double s = 0, abs = 0;
                for (int p = 0; p < k; p++)
                {
                    double x = transposeA ? a[p * lda + i] : a[i * lda + p];
                    double y = transposeB ? b[j * ldb + p] : b[p * ldb + j];
                    s += x * y;
                    abs += Math.Abs(x * y);
                }
                double r = alpha * s;
                double sc = Math.Abs(alpha) * abs;
                if (beta != 0f)
                {
                    r += beta * (double)c[i * ldc + j];
                    sc += Math.Abs(beta * (double)c[i * ldc + j]);
                }
                value[i * n + j] = r;
                scale[i * n + j] = sc;
            }
        }
        return (value, scale);
    }
}
