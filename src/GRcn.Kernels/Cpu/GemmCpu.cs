// C (m×n) = alpha·op(A)·op(B) + beta·C on row-major float32 matrices with leading dimensions
// lda, ldb, ldc; op(X) = X or Xᵀ. Rows of C are split across worker threads; the inner loop
// runs along contiguous memory (rows of B, or the shared k axis when B is transposed).
using System.Numerics;
using System.Runtime.CompilerServices;

namespace GRcn.Kernels.Cpu;

internal static unsafe class GemmCpu
{
    public static void Multiply(bool transposeA, bool transposeB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        if (m <= 0 || n <= 0) return;
        nint pa = (nint)a, pb = (nint)b, pc = (nint)c;
        Parallelism.For(m, (long)n * Math.Max(k, 1), (start, end) =>
            Rows(start, end, transposeA, transposeB, n, k, alpha, (float*)pa, lda, (float*)pb, ldb, beta, (float*)pc, ldc));
    }

    private static void Rows(int start, int end, bool transposeA, bool transposeB, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        for (int i = start; i < end; i++)
        {
            float* ci = c + (long)i * ldc;
            if (beta == 0f) new Span<float>(ci, n).Clear();
            else if (beta != 1f) Scale(ci, n, beta);
            if (!transposeB)
            {
                // c[i, :] += alpha · a[i, p] · b[p, :] over p
                for (int p = 0; p < k; p++)
                {
                    float aip = alpha * (transposeA ? a[(long)p * lda + i] : a[(long)i * lda + p]);
                    Axpy(aip, b + (long)p * ldb, ci, n);
                }
            }
            else
            {
                // c[i, j] += alpha · Σ_p a[i, p] · b[j, p]; a row is contiguous unless A is transposed
                for (int j = 0; j < n; j++)
                {
                    float* bj = b + (long)j * ldb;
                    float s = transposeA ? StridedDot(a + i, lda, bj, k) : Dot(a + (long)i * lda, bj, k);
                    ci[j] += alpha * s;
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scale(float* x, int n, float s)
    {
        for (int j = 0; j < n; j++) x[j] *= s;
    }

    private static void Axpy(float alpha, float* x, float* y, int n)
    {
        int j = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var va = new Vector<float>(alpha);
            for (; j <= n - Vector<float>.Count; j += Vector<float>.Count)
            {
                var vy = Unsafe.ReadUnaligned<Vector<float>>(y + j);
                var vx = Unsafe.ReadUnaligned<Vector<float>>(x + j);
                Unsafe.WriteUnaligned(y + j, vy + va * vx);
            }
        }
        for (; j < n; j++) y[j] += alpha * x[j];
    }

    private static float Dot(float* x, float* y, int n)
    {
        int j = 0;
        var acc = Vector<float>.Zero;
        if (Vector.IsHardwareAccelerated)
        {
            for (; j <= n - Vector<float>.Count; j += Vector<float>.Count)
                acc += Unsafe.ReadUnaligned<Vector<float>>(x + j) * Unsafe.ReadUnaligned<Vector<float>>(y + j);
        }
        float s = Vector.Sum(acc);
        for (; j < n; j++) s += x[j] * y[j];
        return s;
    }

    private static float StridedDot(float* x, int stride, float* y, int n)
    {
        float s = 0f;
        for (int j = 0; j < n; j++) s += x[(long)j * stride] * y[j];
        return s;
    }
}
