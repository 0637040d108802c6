// GEMM on the GPU devices against the CPU backend: every transpose combination, alpha and beta,
// beta = 0 ignoring NaN in C, odd sizes.
namespace GRcn.Kernels.GpuTests;

public class GemmTests
{
    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void MatchesTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        int seed = 0;
        foreach (var (m, n, k) in new[] { (1, 1, 1), (7, 5, 3), (33, 17, 40), (16, 64, 1) })
        foreach (bool ta in new[] { false, true })
        foreach (bool tb in new[] { false, true })
        foreach (var (alpha, beta) in new[] { (1f, 0f), (0.5f, 2f) })
        {
            seed++;
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
}
