// GEMM on a GPU device: the kernels of kernels/Gemm.cs behind IGemmBackend, and Gemm(shape, ...)
// for the other GPU ops (convolution, context attention), which multiply strided sub-matrices
// and batches of them in place.
using ILGPU;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

internal sealed partial class GpuBackend : IGemmBackend
{
    private Action<Index3D, GemmShape, ArrayView<float>, ArrayView<float>, ArrayView<float>>? _gemmNaive;

    public void Gemm(bool transposeA, bool transposeB, int m, int n, int k, float alpha, Tensor a, Tensor b, float beta, Tensor c) =>
        Gemm(new GemmShape(m, n, k, transposeA ? 1 : 0, transposeB ? 1 : 0, alpha, beta,
                Lda: transposeA ? m : k, Ldb: transposeB ? k : n, Ldc: n, StrideA: 0, StrideB: 0, StrideC: 0),
            a.Floats(), b.Floats(), c.Floats(), batch: 1);

    /// <summary>
    /// C[i] = alpha·op(A[i])·op(B[i]) + beta·C[i] for i &lt; <paramref name="batch"/>, with the layouts
    /// of <paramref name="s"/>; the views start at the first element of A[0], B[0], C[0].
    /// </summary>
    public void Gemm(in GemmShape s, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, int batch)
    {
        if (s.M == 0 || s.N == 0 || batch == 0) return;
        var kernel = Kernel(ref _gemmNaive, "gemm_naive",
            acc => acc.LoadAutoGroupedStreamKernel<Index3D, GemmShape, ArrayView<float>, ArrayView<float>, ArrayView<float>>(GemmKernels.Naive));
        kernel(new Index3D(s.N, s.M, batch), s, a, b, c);
    }
}
