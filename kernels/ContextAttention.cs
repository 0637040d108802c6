// context_attention's own kernels; its products are GEMMs (kernels/Gemm.cs), launched by
// src/GRcn.Kernels/Gpu/ContextAttentionGpu.cs. The RoIs are taken in image order (order[r] is the
// r-th RoI of the sorted list) and their positions laid side by side as the columns of
// (· × R) matrices, R = K·Q, RoI order[r] in columns r·Q .. (r+1)·Q − 1.
//
// - GatherColumns: dst (C × R) gets src[order[r]] (C, Q) in its columns, one thread per element
//   of dst (implicitly grouped, 1-D over c·R + j: consecutive threads read and write consecutive
//   positions).
// - ScatterAddColumns: dst[order[r]] (C, Q) = src[order[r]] + the RoI's columns of add (C × R),
//   same mapping.
// - SoftmaxRows: x (rows × n) row by row, x = exp(x − max) / Σ exp(x − max) (max subtracted, as the
//   CPU does); one warp per row, groups of SoftmaxThreads threads (SoftmaxThreads / 32 rows per
//   group): the lanes stride along the row (coalesced), and the max and the sum are combined
//   across the warp with butterfly shuffles (every lane ends with the total), no shared memory.
// - SoftmaxBackwardRows: d = a ∘ (d − rowsum(d ∘ a)) in place, a the softmax, same mapping.
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

/// <summary>Shape of the column gathers and scatters: C channels, Q positions per RoI, R = K·Q columns.</summary>
internal readonly record struct AttentionColumns(int C, int Q, int R);

/// <summary>Rows of a row-wise kernel and the length of each row (row r at r·Length).</summary>
internal readonly record struct AttentionRows(int Rows, int Length);

internal static class ContextAttentionKernels
{
    /// <summary>Threads per group of the row kernels (a multiple of the warp size: one row per warp).</summary>
    public const int SoftmaxThreads = 128;

    /// <summary>dst[c·R + r·Q + q] = src[order[r], c, q], one thread per element of dst (C·R threads).</summary>
    [Kernel]
    public static void GatherColumns(Index1D i, AttentionColumns s, ArrayView<float> src, ArrayView<long> order, ArrayView<float> dst)
    {
        int e = i.X, c = e / s.R, j = e - c * s.R;
        int r = j / s.Q, q = j - r * s.Q;
        dst[e] = src[(order[r] * s.C + c) * s.Q + q];
    }

    /// <summary>dst[order[r], c, q] = src[order[r], c, q] + add[c·R + r·Q + q], one thread per element of add.</summary>
    [Kernel]
    public static void ScatterAddColumns(Index1D i, AttentionColumns s, ArrayView<float> src, ArrayView<float> add, ArrayView<long> order, ArrayView<float> dst)
    {
        int e = i.X, c = e / s.R, j = e - c * s.R;
        int r = j / s.Q, q = j - r * s.Q;
        long at = (order[r] * s.C + c) * s.Q + q;
        dst[at] = src[at] + add[e];
    }

    /// <summary>Row softmax of x (Rows × Length) in place, one warp per row.</summary>
    [Kernel]
    public static void SoftmaxRows(AttentionRows s, ArrayView<float> x)
    {
        int row = (Grid.IdxX * Group.DimX + Group.IdxX) / Warp.WarpSize;
        // a warp is past the end as a whole, so no lane that the shuffles need has left
        if (row >= s.Rows) return;
        int lane = Warp.LaneIdx, n = s.Length;
        long at = (long)row * n;
        float max = float.NegativeInfinity;
        for (int i = lane; i < n; i += Warp.WarpSize) max = XMath.Max(max, x[at + i]);
        for (int o = Warp.WarpSize / 2; o > 0; o >>= 1) max = XMath.Max(max, Warp.ShuffleXor(max, o));
        float sum = 0f;
        for (int i = lane; i < n; i += Warp.WarpSize)
        {
            float e = XMath.Exp(x[at + i] - max);
            x[at + i] = e;
            sum += e;
        }
        for (int o = Warp.WarpSize / 2; o > 0; o >>= 1) sum += Warp.ShuffleXor(sum, o);
        float inv = 1f / sum;
        // each lane rescales the elements it wrote itself
        for (int i = lane; i < n; i += Warp.WarpSize) x[at + i] *= inv;
    }

    /// <summary>d = a ∘ (d − rowsum(d ∘ a)) in place on (Rows × Length) matrices, one warp per row.</summary>
    [Kernel]
    public static void SoftmaxBackwardRows(AttentionRows s, ArrayView<float> a, ArrayView<float> d)
    {
        int row = (Grid.IdxX * Group.DimX + Group.IdxX) / Warp.WarpSize;
        if (row >= s.Rows) return;
        int lane = Warp.LaneIdx, n = s.Length;
        long at = (long)row * n;
        float dot = 0f;
        for (int i = lane; i < n; i += Warp.WarpSize) dot += a[at + i] * d[at + i];
        for (int o = Warp.WarpSize / 2; o > 0; o >>= 1) dot += Warp.ShuffleXor(dot, o);
        for (int i = lane; i < n; i += Warp.WarpSize) d[at + i] = a[at + i] * (d[at + i] - dot);
    }
}
