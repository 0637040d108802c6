// GEMM on a GPU device: the tiled kernel of kernels/Gemm.cs behind IGemmBackend, and
// Gemm(shape, ...) for the other GPU ops (convolution, context attention), which multiply strided
// sub-matrices and batches of them in place.
using ILGPU;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

internal sealed partial class GpuBackend : IGemmBackend
{
    private Action<KernelConfig, GemmShape, ArrayView<float>, ArrayView<float>, ArrayView<float>>? _gemmTiled;

    public void Gemm(bool transposeA, bool transposeB, int m, int n, int k, float alpha, Tensor a, Tensor b, float beta, Tensor c) =>
        Gemm(new GemmShape(m, n, k, transposeA ? 1 : 0, transposeB ? 1 : 0, alpha, beta,
                Lda: transposeA ? m : k, Ldb: transposeB ? k : n, Ldc: n, StrideA: 0, StrideB: 0, StrideC: 0),
            a.Floats(), b.Floats(), c.Floats(), batch: 1);

    /// <summary>
    /// C[i] = alpha·op(A[i])·op(B[i]) + beta·C[i] for i &lt; <paramref name="batch"/>, with the layouts
    /// of <paramref name="s"/>; the views start at the first element of A[0], B[0], C[0]. With
    /// K = 0, C = beta·C; with beta = 0, C is not read. Queued on the device's stream.
    /// </summary>
    public void Gemm(in GemmShape s, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, int batch)
    {
        if (s.M <= 0 || s.N <= 0 || batch <= 0) return;
        var kernel = Kernel(ref _gemmTiled, "gemm_tiled",
            acc => acc.LoadStreamKernel<GemmShape, ArrayView<float>, ArrayView<float>, ArrayView<float>>(GemmKernels.Tiled));
        long tiles = (long)((s.M + GemmKernels.TileM - 1) / GemmKernels.TileM) * ((s.N + GemmKernels.TileN - 1) / GemmKernels.TileN);
        if (tiles > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(s), $"a {s.M}×{s.N} GEMM needs {tiles} tiles; at most {int.MaxValue}");
        // The grid is 1-D (tiles × batch groups): split huge batches into launches of at most int.MaxValue groups.
        int perLaunch = (int)Math.Max(1, Math.Min(batch, int.MaxValue / tiles));
        for (int b0 = 0; b0 < batch; b0 += perLaunch)
        {
            int count = Math.Min(perLaunch, batch - b0);
            var av = b0 == 0 ? a : a.SubView(b0 * s.StrideA);
            var bv = b0 == 0 ? b : b.SubView(b0 * s.StrideB);
            var cv = b0 == 0 ? c : c.SubView(b0 * s.StrideC);
            kernel(new KernelConfig((int)(tiles * count), GemmKernels.Threads), s, av, bv, cv);
        }
    }
}
