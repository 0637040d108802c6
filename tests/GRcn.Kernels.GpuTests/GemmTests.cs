// GEMM on the GPU devices against the CPU backend: every transpose combination, alpha and beta,
// beta = 0 ignoring NaN in C, odd sizes that leave partial tiles in every direction and K not a
// multiple of the slab depth, K = 0, and batched strided GEMMs (padded leading dimensions,
// a broadcast operand) through GpuBackend.Gemm against a double-precision reference.
using GRcn.Kernels.Gpu;

namespace GRcn.Kernels.GpuTests;

public class GemmTests
{
    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void MatchesTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        int seed = 0;
        foreach (var (m, n, k) in new[] { (1, 1, 1), (7, 5, 3), (33, 17, 40), (16, 64, 1), (65, 70, 37) })
        foreach (bool ta in new[] { false, true })
        foreach (bool tb in new[] { false, true })
        foreach (var (alpha, beta) in new[] { (1f, 0f), (0.5f, 2f) })
        {
            seed++;
            // The multi-tile size once per transpose pair (emulator time); beta = 0 is covered by the others.
            if (m == 65 && beta == 0f) continue;
            var av = TestData.Uniform(seed, m * k);
            var bv = TestData.Uniform(seed + 1000, k * n);
            var cv = TestData.Uniform(seed + 2000, m * n);
            if (beta == 0f) cv[0] = float.NaN;
            using var a = Tensor.FromArray(av, ta ? k : m, ta ? m : k);
            using var b = Tensor.FromArray(bv, tb ? n : k, tb ? k : n);
            using var c = Tensor.FromArray(cv, m, n);
            using var ga = a.To(d);
            using var gb = b.To(d);
            using var gc = c.To(d);
            Kernels.Gemm.Multiply(a, ta, b, tb, c, alpha, beta);
            Kernels.Gemm.Multiply(ga, ta, gb, tb, gc, alpha, beta);
            Close.Tensors(c, gc, 1e-5, 1e-5, $"gemm {m}x{n}x{k} ta={ta} tb={tb} alpha={alpha} beta={beta}");
        }
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void EmptyKScalesC(string name)
    {
        var d = GpuDevices.Get(name);
        foreach (float beta in new[] { 0f, 0.5f })
        {
            var cv = TestData.Uniform(7, 5 * 70);
            cv[3] = beta == 0f ? float.NaN : cv[3];
            using var a = Tensor.Empty(d, DataType.Float32, 5, 0);
            using var b = Tensor.Empty(d, DataType.Float32, 0, 70);
            using var c = TestData.On(d, cv, 5, 70);
            Kernels.Gemm.Multiply(a, false, b, false, c, 2f, beta);
            var want = cv.Select(v => beta * v).ToArray();
            if (beta == 0f) want[3] = 0f;
            Assert.Equal(want, c.ToArray<float>());
        }
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void BatchedStridedGemmMatchesReference(string name)
    {
        var d = GpuDevices.Get(name);
        int seed = 100;
        // (m, n, k, batch, broadcast A): leading dimensions padded by 3, batches spaced by 5 extra elements.
        foreach (var (m, n, k, batch, broadcastA) in new[] { (9, 70, 19, 3, false), (66, 5, 20, 2, true), (1, 1, 1, 4, false) })
        foreach (bool ta in new[] { false, true })
        foreach (bool tb in new[] { false, true })
        {
            seed++;
            int aRows = ta ? k : m, aCols = ta ? m : k, bRows = tb ? n : k, bCols = tb ? k : n;
            int lda = aCols + 3, ldb = bCols + 3, ldc = n + 3;
            long strideA = broadcastA ? 0 : (long)aRows * lda + 5, strideB = (long)bRows * ldb + 5, strideC = (long)m * ldc + 5;
            var av = TestData.Uniform(seed, (int)(broadcastA ? aRows * lda : strideA * batch));
            var bv = TestData.Uniform(seed + 1, (int)(strideB * batch));
            var cv = TestData.Uniform(seed + 2, (int)(strideC * batch));
            const float alpha = 1.5f, beta = -0.5f;
            var want = (float[])cv.Clone();
            for (int i = 0; i < batch; i++)
            for (int r = 0; r < m; r++)
            for (int col = 0; col < n; col++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++)
                {
                    double x = ta ? av[i * strideA + (long)p * lda + r] : av[i * strideA + (long)r * lda + p];
                    double y = tb ? bv[i * strideB + (long)col * ldb + p] : bv[i * strideB + (long)p * ldb + col];
                    sum += x * y;
                }
                long ci = i * strideC + (long)r * ldc + col;
                want[ci] = (float)(alpha * sum + beta * cv[ci]);
            }
            using var ga = TestData.On(d, av, av.Length);
            using var gb = TestData.On(d, bv, bv.Length);
            using var gc = TestData.On(d, cv, cv.Length);
            var shape = new GemmShape(m, n, k, ta ? 1 : 0, tb ? 1 : 0, alpha, beta, lda, ldb, ldc, strideA, strideB, strideC);
            d.Kernels.Gemm(shape, ga.Floats(), gb.Floats(), gc.Floats(), batch);
            // Padding columns and the gaps between batches are untouched (they keep cv's values in want).
            Close.Assert(want, gc.ToArray<float>(), 1e-5, 1e-5, $"batched gemm {m}x{n}x{k} batch={batch} ta={ta} tb={tb} broadcastA={broadcastA}");
        }
    }
}
