namespace GRcn.Kernels.Cpu;

internal sealed unsafe partial class CpuBackend : IGemmBackend
{
    public void Gemm(bool transposeA, bool transposeB, int m, int n, int k, float alpha, Tensor a, Tensor b, float beta, Tensor c) =>
        GemmCpu.Multiply(transposeA, transposeB, m, n, k, alpha,
            a.Ptr<float>(), transposeA ? m : k, b.Ptr<float>(), transposeB ? k : n, beta, c.Ptr<float>(), n);
}
