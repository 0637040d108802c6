// Elementwise and per-channel ops on the GPU (see src/GRcn.Kernels/Ops/Elementwise.cs): ReLU and
// its backward, add, scaled add, scale, multiply, per-channel affine, global-average-pool backward
// and the fused AdamW step are one thread per element, implicitly grouped over a 1-D index
// (coalesced; an output may be its input: each thread reads its element before writing it).
// "Channel" tensors are (N, C, S) with plane p = n·C + c holding elements [p·S, (p + 1)·S).
// ChannelSum (one group per channel) and GlobalAveragePool (one group per plane) are explicitly
// grouped reductions: the group's threads (GroupSums.For: 256 on a GPU) each add a strided share in double, then warps add
// them with shuffles and the group adds the warp sums from shared memory, in a fixed order
// (deterministic, no atomics).
// Grids over more than int.MaxValue elements are launched in chunks: Start is the first element.
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

/// <summary>Scalars of an elementwise launch: a factor, the (N, C, S) view, optional-operand flags (0 or 1), the first element.</summary>
internal readonly record struct EltwiseParams(float Alpha, int C, long S, int HasScale, int HasShift, int Accumulate, long Start);

/// <summary>The constants of one AdamW step, computed on the host exactly as the CPU backend does, and the first element.</summary>
internal readonly record struct AdamWParams(float Beta1, float Beta2, float Epsilon, float Decay, float StepSize, float InvSqrtBc2, long Start);

/// <summary>The SplitMix64 state before a dropout mask, the probability, 1/(1 − p) and the first element.</summary>
internal readonly record struct DropoutParams(ulong State, float P, float Keep, long Start);

internal static class EltwiseKernels
{
    /// <summary>y = max(x, 0), NaN propagating (as torch.relu and the CPU backend's vector path).</summary>
    [Kernel]
    public static void Relu(Index1D i, EltwiseParams q, ArrayView<float> x, ArrayView<float> y)
    {
        long e = q.Start + i;
        if (e >= y.Length) return;
        float v = x[e];
        y[e] = v > 0f || float.IsNaN(v) ? v : 0f;
    }

    /// <summary>gradX = gradY where y &gt; 0, else 0.</summary>
    [Kernel]
    public static void ReluBackward(Index1D i, EltwiseParams q, ArrayView<float> gradY, ArrayView<float> y, ArrayView<float> gradX)
    {
        long e = q.Start + i;
        if (e >= gradX.Length) return;
        gradX[e] = y[e] > 0f ? gradY[e] : 0f;
    }

    /// <summary>y = a + b.</summary>
    [Kernel]
    public static void Add(Index1D i, EltwiseParams q, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y)
    {
        long e = q.Start + i;
        if (e >= y.Length) return;
        y[e] = a[e] + b[e];
    }

    /// <summary>y = alpha·x + y.</summary>
    [Kernel]
    public static void AddScaled(Index1D i, EltwiseParams q, ArrayView<float> x, ArrayView<float> y)
    {
        long e = q.Start + i;
        if (e >= y.Length) return;
        y[e] = q.Alpha * x[e] + y[e];
    }

    /// <summary>y = alpha·x.</summary>
    [Kernel]
    public static void Scale(Index1D i, EltwiseParams q, ArrayView<float> x, ArrayView<float> y)
    {
        long e = q.Start + i;
        if (e >= y.Length) return;
        y[e] = q.Alpha * x[e];
    }

    /// <summary>y = a·b.</summary>
    [Kernel]
    public static void Multiply(Index1D i, EltwiseParams q, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y)
    {
        long e = q.Start + i;
        if (e >= y.Length) return;
        y[e] = a[e] * b[e];
    }

    /// <summary>y = x·scale[c] + shift[c] (scale 1 and shift 0 when absent).</summary>
    [Kernel]
    public static void ChannelAffine(Index1D i, EltwiseParams q, ArrayView<float> x, ArrayView<float> scale, ArrayView<float> shift, ArrayView<float> y)
    {
        long e = q.Start + i;
        if (e >= y.Length) return;
        int ch = (int)(e / q.S % q.C);
        float a = q.HasScale != 0 ? scale[ch] : 1f, b = q.HasShift != 0 ? shift[ch] : 0f;
        y[e] = x[e] * a + b;
    }

    /// <summary>gradX[n, c, s] = gradY[n, c] · (1/S) (Alpha holds 1/S).</summary>
    [Kernel]
    public static void GlobalAveragePoolBackward(Index1D i, EltwiseParams q, ArrayView<float> gradY, ArrayView<float> gradX)
    {
        long e = q.Start + i;
        if (e >= gradX.Length) return;
        gradX[e] = gradY[e / q.S] * q.Alpha;
    }

    /// <summary>One AdamW step of element Start + i in place, in the CPU backend's order of operations.</summary>
    [Kernel]
    public static void AdamW(Index1D i, AdamWParams k, ArrayView<float> weight, ArrayView<float> grad, ArrayView<float> expAvg, ArrayView<float> expAvgSq)
    {
        long e = k.Start + i;
        if (e >= weight.Length) return;
        float g = grad[e];
        float m = k.Beta1 * expAvg[e] + (1f - k.Beta1) * g;
        float v = k.Beta2 * expAvgSq[e] + (1f - k.Beta2) * g * g;
        expAvg[e] = m;
        expAvgSq[e] = v;
        weight[e] = weight[e] * k.Decay - k.StepSize * m / (XMath.Sqrt(v) * k.InvSqrtBc2 + k.Epsilon);
    }

    /// <summary>mask[e] = 1/(1 − p) where the (e + 1)-th SplitMix64 output after State, as a 24-bit uniform, is ≥ p; else 0.</summary>
    [Kernel]
    public static void DropoutMask(Index1D i, DropoutParams q, ArrayView<float> mask)
    {
        long e = q.Start + i;
        if (e >= mask.Length) return;
        ulong z = q.State + (ulong)(e + 1) * 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        float u = ((z ^ (z >> 31)) >> 40) * (1f / (1 << 24));
        mask[e] = u >= q.P ? q.Keep : 0f;
    }

    /// <summary>sum[c] (+)= Σ over n, s of x[n, c, s] for channel c = Grid.IdxX (planes p = n·C + c, n &lt; x.Length / (C·S)); S ≥ 1.</summary>
    [Kernel]
    public static void ChannelSum(EltwiseParams q, ArrayView<float> x, ArrayView<float> sum)
    {
        var shared = SharedMemory.Allocate<double>(GroupSums.Warps);
        int ch = Grid.IdxX, t = Group.IdxX;
        long planes = x.Length / q.S;
        double total = 0;
        for (long p = ch; p < planes; p += q.C)
            for (long s = t; s < q.S; s += Group.DimX)
                total += x[p * q.S + s];
        total = GroupSums.Reduce(shared, total);
        if (t == 0) sum[ch] = q.Accumulate != 0 ? sum[ch] + (float)total : (float)total;
    }

    /// <summary>y[p] = (Σ_s x[p, s]) · (1/S) for plane p = Grid.IdxX (Alpha holds 1/S).</summary>
    [Kernel]
    public static void GlobalAveragePool(EltwiseParams q, ArrayView<float> x, ArrayView<float> y)
    {
        var shared = SharedMemory.Allocate<double>(GroupSums.Warps);
        int p = Grid.IdxX, t = Group.IdxX;
        double total = 0;
        for (long s = t; s < q.S; s += Group.DimX) total += x[p * q.S + s];
        total = GroupSums.Reduce(shared, total);
        if (t == 0) y[p] = (float)total * q.Alpha;
    }
}

/// <summary>Deterministic sums over one thread group, for the explicitly grouped reductions.</summary>
internal static class GroupSums
{
    /// <summary>Most threads of a group in the reductions, and what a GPU launches (Group.DimX: a multiple of 32, at most this).</summary>
    public const int Threads = 256;

    /// <summary>Most warps of a group: the doubles of shared memory that a reduction needs per value.</summary>
    public const int Warps = Threads / 32;

    /// <summary>
    /// Threads per group to launch the reductions with on <paramref name="device"/>: <see cref="Threads"/>
    /// on a GPU; one warp on the emulator, where every thread is an OS thread and a barrier costs
    /// per thread (the same code, fewer strided shares). <see cref="ForceThreads"/> overrides it.
    /// </summary>
    public static int For(GpuDevice device) =>
        ForceThreads > 0 ? ForceThreads : device.Kind == DeviceKind.Emulator ? 32 : Threads;

    /// <summary>Test hook: when positive, reductions launched from this thread use this many threads per group.</summary>
    [ThreadStatic] internal static int ForceThreads;

    /// <summary>
    /// The sum of every thread's <paramref name="value"/> over the group (Group.DimX threads),
    /// returned to all of them: each warp adds its lanes with shuffles in a fixed pattern, lane 0
    /// stores the warp's sum in <paramref name="shared"/> (<see cref="Warps"/> doubles), and every
    /// thread adds the warp sums in warp order (deterministic; two barriers, the second so that
    /// the shared array can be reused at once).
    /// </summary>
    public static double Reduce(ArrayView<double> shared, double value)
    {
        for (int delta = 16; delta > 0; delta >>= 1) value += Warp.ShuffleDown(value, delta);
        if (Warp.LaneIdx == 0) shared[Warp.WarpIdx] = value;
        Group.Barrier();
        double total = 0;
        for (int w = 0; w < Group.DimX / 32; w++) total += shared[w];
        Group.Barrier();
        return total;
    }

    /// <summary>Two sums at once, as <see cref="Reduce(ArrayView{double}, double)"/> (shared holds 2·<see cref="Warps"/> doubles).</summary>
    public static DoublePair Reduce(ArrayView<double> shared, DoublePair value)
    {
        double a = value.A, b = value.B;
        for (int delta = 16; delta > 0; delta >>= 1)
        {
            a += Warp.ShuffleDown(a, delta);
            b += Warp.ShuffleDown(b, delta);
        }
        if (Warp.LaneIdx == 0)
        {
            shared[Warp.WarpIdx] = a;
            shared[Warps + Warp.WarpIdx] = b;
        }
        Group.Barrier();
        a = 0;
        b = 0;
        for (int w = 0; w < Group.DimX / 32; w++)
        {
            a += shared[w];
            b += shared[Warps + w];
        }
        Group.Barrier();
        return new DoublePair(a, b);
    }
}

/// <summary>Two sums reduced together.</summary>
internal readonly struct DoublePair(double a, double b)
{
    /// <summary>The first sum.</summary>
    public readonly double A = a;

    /// <summary>The second sum.</summary>
    public readonly double B = b;
}
