// context_attention on the GPU devices against the CPU backend: forward and the four gradients,
// with and without the saved block (and the saved block of other inputs, which must be ignored),
// several heads, batch_index unsorted with an image without RoIs, Q = 1×1, M = 1×1, one head,
// large logits (saturated softmax), K = 0; the backward bit-identical run to run.
namespace GRcn.Kernels.GpuTests;

public class ContextAttentionTests
{
    /// <summary>One call's sizes: K RoIs of C × Qh × Qw, N images of C × Mh × Mw, projections D × C, H heads.</summary>
    public sealed record Shape(int K, int C, int Qh, int Qw, int N, int Mh, int Mw, int D, int H);

    private sealed class Inputs : IDisposable
    {
        public readonly Tensor P, G, Bi, Wq, Wk, Gy;

        public Inputs(Device device, Shape s, long[] bi, int seed, float scale)
        {
            float w = 1.5f / MathF.Sqrt(s.C);
            P = TestData.On(device, TestData.Uniform(seed, s.K * s.C * s.Qh * s.Qw, -scale, scale), s.K, s.C, s.Qh, s.Qw);
            G = TestData.On(device, TestData.Uniform(seed + 1, s.N * s.C * s.Mh * s.Mw, -scale, scale), s.N, s.C, s.Mh, s.Mw);
            Bi = TestData.On(device, bi, s.K);
            Wq = TestData.On(device, TestData.Uniform(seed + 2, s.D * s.C, -w, w), s.D, s.C);
            Wk = TestData.On(device, TestData.Uniform(seed + 3, s.D * s.C, -w, w), s.D, s.C);
            Gy = TestData.On(device, TestData.Uniform(seed + 4, s.K * s.C * s.Qh * s.Qw), s.K, s.C, s.Qh, s.Qw);
        }

        public void Dispose()
        {
            P.Dispose(); G.Dispose(); Bi.Dispose(); Wq.Dispose(); Wk.Dispose(); Gy.Dispose();
        }
    }

    /// <summary>
    /// |got − want| ≤ tol·(max(1, max |want|) + |want|): the sums behind every element run in a
    /// different order on each backend, so the absolute part scales with the tensor's magnitude.
    /// </summary>
    private static void AssertClose(Tensor want, Tensor got, double tol, string what)
    {
        var w = want.ToArray<float>();
        double max = w.Length == 0 ? 0 : w.Max(MathF.Abs);
        Close.Tensors(want, got, tol, tol * Math.Max(1, max), what);
    }

    private static void CrossCheck(GpuDevice d, Shape s, long[] bi, int seed, float scale = 1f, double tol = 1e-4)
    {
        using var cpu = new Inputs(Device.Cpu, s, bi, seed, scale);
        using var gpu = new Inputs(d, s, bi, seed, scale);
        string name = $"{s} bi=[{string.Join(",", bi)}]";
        using var yWant = ContextAttention.Forward(cpu.P, cpu.G, cpu.Bi, cpu.Wq, cpu.Wk, s.H);
        using var gWant = ContextAttention.Backward(cpu.Gy, cpu.P, cpu.G, cpu.Bi, cpu.Wq, cpu.Wk, s.H);

        using var y = ContextAttention.Forward(gpu.P, gpu.G, gpu.Bi, gpu.Wq, gpu.Wk, s.H);
        AssertClose(yWant, y, tol, $"y {name}");
        using (var grads = ContextAttention.Backward(gpu.Gy, gpu.P, gpu.G, gpu.Bi, gpu.Wq, gpu.Wk, s.H))
            AssertGradients(gWant, grads, tol, $"{name} recomputed");

        using var saved = new ContextAttentionSaved();
        using var ySaved = ContextAttention.Forward(gpu.P, gpu.G, gpu.Bi, gpu.Wq, gpu.Wk, s.H, saved);
        AssertClose(yWant, ySaved, tol, $"y {name} saving");
        using (var grads = ContextAttention.Backward(gpu.Gy, gpu.P, gpu.G, gpu.Bi, gpu.Wq, gpu.Wk, s.H, saved))
            AssertGradients(gWant, grads, tol, $"{name} saved");
    }

    private static void AssertGradients(ContextAttentionGradients want, ContextAttentionGradients got, double tol, string name)
    {
        AssertClose(want.P, got.P, tol, $"dp {name}");
        AssertClose(want.G, got.G, tol, $"dg {name}");
        AssertClose(want.Wq, got.Wq, tol, $"dw_q {name}");
        AssertClose(want.Wk, got.Wk, tol, $"dw_k {name}");
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void MatchesTheCpuBackendWithSeveralHeadsAndUnsortedImages(string name)
    {
        // image 1 has no RoIs; the RoIs of images 0 and 2 interleave
        CrossCheck(GpuDevices.Get(name), new Shape(K: 5, C: 6, Qh: 2, Qw: 3, N: 3, Mh: 3, Mw: 3, D: 9, H: 3), [2, 0, 2, 2, 0], seed: 1);
        CrossCheck(GpuDevices.Get(name), new Shape(K: 4, C: 8, Qh: 3, Qw: 2, N: 4, Mh: 5, Mw: 7, D: 4, H: 2), [3, 1, 3, 0], seed: 2);
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void MatchesTheCpuBackendAtTheEdges(string name)
    {
        var d = GpuDevices.Get(name);
        // Q = 1×1
        CrossCheck(d, new Shape(K: 3, C: 4, Qh: 1, Qw: 1, N: 2, Mh: 2, Mw: 3, D: 4, H: 2), [1, 0, 1], seed: 3);
        // M = 1×1: every weight is 1
        CrossCheck(d, new Shape(K: 3, C: 4, Qh: 2, Qw: 2, N: 2, Mh: 1, Mw: 1, D: 6, H: 2), [0, 1, 1], seed: 4);
        // one head, one RoI, a row of more than 32 positions (several per lane)
        CrossCheck(d, new Shape(K: 1, C: 3, Qh: 2, Qw: 1, N: 1, Mh: 5, Mw: 9, D: 5, H: 1), [0], seed: 5);
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void MatchesTheCpuBackendWithLargeLogits(string name)
    {
        // inputs of magnitude 30: logits in the hundreds, a softmax without the max subtracted overflows
        CrossCheck(GpuDevices.Get(name), new Shape(K: 3, C: 4, Qh: 2, Qw: 2, N: 2, Mh: 3, Mw: 2, D: 4, H: 2), [1, 1, 0], seed: 6, scale: 30f, tol: 1e-3);
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void ZeroRoisGiveEmptyOutputAndZeroGradients(string name)
    {
        var d = GpuDevices.Get(name);
        var s = new Shape(K: 0, C: 4, Qh: 2, Qw: 2, N: 2, Mh: 2, Mw: 2, D: 4, H: 2);
        using var x = new Inputs(d, s, [], seed: 7, scale: 1f);
        using var y = ContextAttention.Forward(x.P, x.G, x.Bi, x.Wq, x.Wk, s.H);
        Assert.Equal("(0, 4, 2, 2)", y.ShapeString);
        using var grads = ContextAttention.Backward(x.Gy, x.P, x.G, x.Bi, x.Wq, x.Wk, s.H);
        Assert.All(grads.G.ToArray<float>(), v => Assert.Equal(0f, v));
        Assert.All(grads.Wq.ToArray<float>(), v => Assert.Equal(0f, v));
        Assert.All(grads.Wk.ToArray<float>(), v => Assert.Equal(0f, v));
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void SavedBlockOfOtherInputsIsIgnored(string name)
    {
        var d = GpuDevices.Get(name);
        var s = new Shape(K: 3, C: 4, Qh: 2, Qw: 1, N: 2, Mh: 2, Mw: 2, D: 4, H: 2);
        using var a = new Inputs(d, s, [1, 0, 1], seed: 8, scale: 1f);
        using var b = new Inputs(d, s, [0, 0, 1], seed: 9, scale: 1f);
        using var saved = new ContextAttentionSaved();
        using var ya = ContextAttention.Forward(a.P, a.G, a.Bi, a.Wq, a.Wk, s.H, saved);
        using var want = ContextAttention.Backward(b.Gy, b.P, b.G, b.Bi, b.Wq, b.Wk, s.H);
        using var got = ContextAttention.Backward(b.Gy, b.P, b.G, b.Bi, b.Wq, b.Wk, s.H, saved);
        // the block does not match these inputs, so they are recomputed: the same bits as without it
        Assert.Equal(want.P.ToArray<float>(), got.P.ToArray<float>());
        Assert.Equal(want.G.ToArray<float>(), got.G.ToArray<float>());
        Assert.Equal(want.Wq.ToArray<float>(), got.Wq.ToArray<float>());
        Assert.Equal(want.Wk.ToArray<float>(), got.Wk.ToArray<float>());
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void BackwardIsBitIdenticalRunToRun(string name)
    {
        var d = GpuDevices.Get(name);
        var s = new Shape(K: 4, C: 4, Qh: 2, Qw: 2, N: 3, Mh: 3, Mw: 3, D: 4, H: 2);
        using var x = new Inputs(d, s, [2, 0, 2, 0], seed: 10, scale: 1f);
        using var first = ContextAttention.Backward(x.Gy, x.P, x.G, x.Bi, x.Wq, x.Wk, s.H);
        using var second = ContextAttention.Backward(x.Gy, x.P, x.G, x.Bi, x.Wq, x.Wk, s.H);
        Assert.Equal(first.P.ToArray<float>(), second.P.ToArray<float>());
        Assert.Equal(first.G.ToArray<float>(), second.G.ToArray<float>());
        Assert.Equal(first.Wq.ToArray<float>(), second.Wq.ToArray<float>());
        Assert.Equal(first.Wk.ToArray<float>(), second.Wk.ToArray<float>());
    }
}
