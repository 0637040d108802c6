// GEMM: C[b] = alpha·op(A[b])·op(B[b]) + beta·C[b] for b < batch, row-major float32 matrices with
// leading dimensions lda, ldb, ldc and batch strides (elements), op(X) = X or Xᵀ.
// With beta = 0, C is not read (NaN in it is ignored), as BLAS does.
//
// Parallelisation (first version, correct and simple): one thread per element of C, implicitly
// grouped over a 3-D index (column, row, batch); each thread sums over k in order with
// separate multiply and add.
using ILGPU;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

/// <summary>Sizes, layouts and scalars of one (batched) GEMM (blittable: TransA/TransB are 0 or 1).</summary>
internal readonly record struct GemmShape(
    int M, int N, int K, int TransA, int TransB, float Alpha, float Beta,
    int Lda, int Ldb, int Ldc, long StrideA, long StrideB, long StrideC);

internal static class GemmKernels
{
    [Kernel]
    public static void Naive(Index3D i, GemmShape s, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c)
    {
        int col = i.X, row = i.Y, batch = i.Z;
        long aBase = batch * s.StrideA, bBase = batch * s.StrideB;
        float sum = 0f;
        for (int p = 0; p < s.K; p++)
        {
            // op(A)[row, p] and op(B)[p, col] through the leading dimensions
            float av = s.TransA != 0 ? a[aBase + (long)p * s.Lda + row] : a[aBase + (long)row * s.Lda + p];
            float bv = s.TransB != 0 ? b[bBase + (long)col * s.Ldb + p] : b[bBase + (long)p * s.Ldb + col];
            sum += av * bv;
        }
        long ci = batch * s.StrideC + (long)row * s.Ldc + col;
        c[ci] = s.Beta == 0f ? s.Alpha * sum : s.Alpha * sum + s.Beta * c[ci];
    }
}
