// group_norm on the GPU. x (N, C, S) in NCHW order with G groups of Cg = C/G channels: the group
// (n, g) is the contiguous run of M = Cg·S floats from (n·C + g·Cg)·S.
//
// Forward (Forward, explicitly grouped): one group of GroupSums.For(device) threads (256 on a GPU) per (n, g),
// group index n·G + g. Two passes as the CPU backend: μ = Σx / M, then σ² = Σ(x − μ)² / M
// (squared deviations, no cancellation), each thread summing a strided share in double and the
// group combining the partials with warp shuffles and shared memory in a fixed order
// (deterministic; GroupSums in kernels/Elementwise.cs). Then
// rstd = 1/√(σ² + ε) and y = (x − μ)·a + β[c] with a = rstd·γ[c].
//
// Backward: PlaneSums (one group per plane p = n·C + c) gives Σ_s dy·x and Σ_s dy in double, as
// the CPU's per-plane sums; DxCoefficients (one thread per plane) turns its group's sums into the
// CPU's dx = a·dy + c2·x + c3 with a = γ·rstd; Dx (one thread per element) applies them;
// WeightBiasGrad (one thread per channel) sums over n in order: dγ = Σ_n (Σdy·x − μ·Σdy)·rstd,
// dβ = Σ_n Σdy. No atomics anywhere: every sum has a fixed order.
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

/// <summary>Shape of a group-norm call and its options (HasWeight/HasBias/HasGradWeight/HasGradBias are 0 or 1).</summary>
internal readonly record struct GroupNormParams(
    int N, int C, int Groups, int ChannelsPerGroup, long S, float Epsilon, int HasWeight, int HasBias, int HasGradWeight, int HasGradBias, long Start);

internal static class GroupNormKernels
{
    /// <summary>μ, rstd and y of group Grid.IdxX = n·G + g.</summary>
    [Kernel]
    public static void Forward(GroupNormParams q, ArrayView<float> x, ArrayView<float> weight, ArrayView<float> bias,
        ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd)
    {
        var shared = SharedMemory.Allocate<double>(GroupSums.Warps);
        int item = Grid.IdxX, t = Group.IdxX;
        int n = item / q.Groups, g = item - n * q.Groups;
        long m = q.ChannelsPerGroup * q.S;
        long first = ((long)n * q.C + (long)g * q.ChannelsPerGroup) * q.S;

        double sum = 0;
        for (long i = t; i < m; i += Group.DimX) sum += x[first + i];
        double mu = GroupSums.Reduce(shared, sum) / m;
        float muF = (float)mu;
        double squares = 0;
        for (long i = t; i < m; i += Group.DimX)
        {
            float d = x[first + i] - muF;
            squares += (double)d * d;
        }
        double variance = GroupSums.Reduce(shared, squares) / m;
        float r = (float)(1.0 / XMath.Sqrt(variance + q.Epsilon));
        if (t == 0)
        {
            mean[item] = muF;
            rstd[item] = r;
        }
        int c0 = g * q.ChannelsPerGroup;
        for (long i = t; i < m; i += Group.DimX)
        {
            int ch = c0 + (int)(i / q.S);
            // (x − μ)·a + β: without an FMA (which the CPU's x·a + (β − μ·a) uses) this form
            // keeps the rounding small when |μ| is large against the spread
            float a = r * (q.HasWeight != 0 ? weight[ch] : 1f);
            y[first + i] = (x[first + i] - muF) * a + (q.HasBias != 0 ? bias[ch] : 0f);
        }
    }

    /// <summary>sums[2p] = Σ_s dy·x and sums[2p + 1] = Σ_s dy for plane p = Grid.IdxX.</summary>
    [Kernel]
    public static void PlaneSums(GroupNormParams q, ArrayView<float> gradY, ArrayView<float> x, ArrayView<double> sums)
    {
        var shared = SharedMemory.Allocate<double>(2 * GroupSums.Warps);
        int p = Grid.IdxX, t = Group.IdxX;
        long first = p * q.S;
        double dot = 0, sum = 0;
        for (long i = t; i < q.S; i += Group.DimX)
        {
            float dy = gradY[first + i];
            dot += (double)dy * x[first + i];
            sum += dy;
        }
        var total = GroupSums.Reduce(shared, new DoublePair(dot, sum));
        if (t == 0)
        {
            sums[2 * p] = total.A;
            sums[2 * p + 1] = total.B;
        }
    }

    /// <summary>coefficients[3p .. 3p + 2] = (a, c2, c3) of plane Start + i = n·C + c: dx = a·dy + c2·x + c3 (the CPU's expressions, in double).</summary>
    [Kernel]
    public static void DxCoefficients(Index1D i, GroupNormParams q, ArrayView<double> sums, ArrayView<float> mean, ArrayView<float> rstd,
        ArrayView<float> weight, ArrayView<float> coefficients)
    {
        long p = q.Start + i;
        if (3 * p >= coefficients.Length) return;
        int n = (int)(p / q.C), ch = (int)(p - (long)n * q.C);
        int g = ch / q.ChannelsPerGroup;
        int item = n * q.Groups + g;
        double mu = mean[item], r = rstd[item];
        double sumA = 0, sumB = 0; // Σ_c γ·Σ dy·x, Σ_c γ·Σ dy over the group
        for (int k = 0; k < q.ChannelsPerGroup; k++)
        {
            int c = g * q.ChannelsPerGroup + k;
            double gamma = q.HasWeight != 0 ? weight[c] : 1.0;
            long plane = (long)n * q.C + c;
            sumA += gamma * sums[2 * plane];
            sumB += gamma * sums[2 * plane + 1];
        }
        double m = (double)q.ChannelsPerGroup * q.S;
        double c2 = (sumB * mu - sumA) * r * r * r / m;
        double c3 = -c2 * mu - sumB * r / m;
        coefficients[3 * p] = (float)((q.HasWeight != 0 ? weight[ch] : 1.0) * r);
        coefficients[3 * p + 1] = (float)c2;
        coefficients[3 * p + 2] = (float)c3;
    }

    /// <summary>gradX[e] = a·dy + (c2·x + c3) for element e = Start + i with its plane's coefficients.</summary>
    [Kernel]
    public static void Dx(Index1D i, GroupNormParams q, ArrayView<float> gradY, ArrayView<float> x, ArrayView<float> coefficients, ArrayView<float> gradX)
    {
        long e = q.Start + i;
        if (e >= gradX.Length) return;
        long p = e / q.S;
        gradX[e] = gradY[e] * coefficients[3 * p] + (x[e] * coefficients[3 * p + 1] + coefficients[3 * p + 2]);
    }

    /// <summary>gradWeight[c] and gradBias[c] for channel c = i, summing the batch in order.</summary>
    [Kernel]
    public static void WeightBiasGrad(Index1D i, GroupNormParams q, ArrayView<double> sums, ArrayView<float> mean, ArrayView<float> rstd,
        ArrayView<float> gradWeight, ArrayView<float> gradBias)
    {
        int ch = i;
        if (ch >= q.C) return;
        int g = ch / q.ChannelsPerGroup;
        double dw = 0, db = 0;
        for (int n = 0; n < q.N; n++)
        {
            long plane = (long)n * q.C + ch;
            double dyx = sums[2 * plane], dy = sums[2 * plane + 1];
            int item = n * q.Groups + g;
            // Σ dy·x̂ = (Σ dy·x − μ·Σ dy)·rstd
            dw += (dyx - mean[item] * dy) * rstd[item];
            db += dy;
        }
        if (q.HasGradWeight != 0) gradWeight[ch] = (float)dw;
        if (q.HasGradBias != 0) gradBias[ch] = (float)db;
    }
}
