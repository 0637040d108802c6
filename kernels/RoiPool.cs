// roi_pool on the GPU: torchvision's float32 code path (csrc/ops/cuda/roi_pool_kernel.cu with
// T = float), expression for expression. x (N, C, H, W), rois (K, 5) rows [b, x1, y1, x2, y2]
// → y and argmax (K, C, ph, pw), argmax int64 h·W + w (−1 for an empty bin); backward
// gradY (K, C, ph, pw) → gradX (N, C, H, W).
//
// Bin edges of RoI k (float32, s = (float)spatial_scale, round = C's roundf, half away from zero):
//   start_w = (int)round(x1·s), end_w = (int)round(x2·s), roi_w = max(end_w − start_w + 1, 1),
//   bin_w = (float)roi_w / (float)pw; bin j spans [(int)floor((float)j·bin_w) + start_w,
//   (int)ceil((float)(j + 1)·bin_w) + start_w), each edge clipped to [0, W] (likewise vertically).
//   An empty bin gives 0 and argmax −1; otherwise the maximum starts at −FLT_MAX and a cell wins
//   only when strictly greater (row-major order: the first maximum wins; NaN never wins).
//   x1·s is a rounded multiplication (mul.rn.f32 on CUDA) so that round's fractional-part test
//   cannot be contracted into an FMA.
//
// Parallelisation:
// - Forward: one thread per output element (k, c, i, j), implicitly grouped over the flat output
//   index (j fastest: a warp covers consecutive bins of one (RoI, channel), coalesced stores), each
//   thread scanning its bin, as torchvision.
// - Backward, atomic (GpuDevice.DeterministicBackward == false): gradX is cleared, then one thread
//   per gradY element adds it at gradX[b, c, argmax] with Atomic.Add (argmax outside [0, H·W) is
//   skipped).
// - Backward, deterministic: a gather, one thread per input cell (b, c, h, w) (w fastest, coalesced
//   stores) that writes every cell: it walks RoIs k = 0 … K−1 in order, skips those of other
//   images and those whose clipped box does not contain the cell, finds the row bins and column
//   bins whose (clipped) span contains h and w, and adds gradY of each such bin whose argmax is this
//   cell, bins in row-major order. The sum order is fixed (bit-identical run to run). Cost: every
//   cell thread tests all K RoIs (O(N·C·H·W·K) batch/box tests) plus ph + pw edge computations per
//   RoI containing it; an argmax that does not lie in its own bin (never produced by Forward) adds
//   nothing in this mode.
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

/// <summary>Sizes of one roi_pool launch; Base is the flat index of the launch's first item.</summary>
internal readonly record struct RoiPoolParams(int N, int C, int H, int W, int K, int PH, int PW, float Scale, long Base);

internal static class RoiPoolKernels
{
    /// <summary>First cell and bin size of one axis: start = (int)round(lo·s), bin = max(end − start + 1, 1) / pooled.</summary>
    private static void Axis(float lo, float hi, float scale, int pooled, out int start, out float bin)
    {
        start = (int)RoiMath.RoundHalfAway(ExactMath.Mul(lo, scale));
        int end = (int)RoiMath.RoundHalfAway(ExactMath.Mul(hi, scale));
        int size = XMath.Max(end - start + 1, 1);
        bin = (float)size / pooled;
    }

    /// <summary>Edges [first, last) of bin <paramref name="i"/> along one axis of <paramref name="extent"/> cells, clipped.</summary>
    private static void Edges(int i, int start, float bin, int extent, out int first, out int last)
    {
        first = (int)XMath.Floor(ExactMath.Mul(i, bin));
        last = (int)XMath.Ceiling(ExactMath.Mul(i + 1, bin));
        first = XMath.Min(XMath.Max(first + start, 0), extent);
        last = XMath.Min(XMath.Max(last + start, 0), extent);
    }

    /// <summary>Forward: item = ((k·C + c)·ph + i)·pw + j.</summary>
    [Kernel]
    public static void Forward(Index1D index, RoiPoolParams p, ArrayView<float> x, ArrayView<float> rois, ArrayView<float> y, ArrayView<long> argmax)
    {
        long o = p.Base + index;
        long t = o;
        int j = (int)(t % p.PW);
        t /= p.PW;
        int i = (int)(t % p.PH);
        t /= p.PH;
        int c = (int)(t % p.C);
        int k = (int)(t / p.C);
        if (k >= p.K) return;
        long r = (long)k * 5;
        int b = (int)rois[r];
        Axis(rois[r + 1], rois[r + 3], p.Scale, p.PW, out int startW, out float binW);
        Axis(rois[r + 2], rois[r + 4], p.Scale, p.PH, out int startH, out float binH);
        Edges(i, startH, binH, p.H, out int hs, out int he);
        Edges(j, startW, binW, p.W, out int ws, out int we);
        bool empty = he <= hs || we <= ws;
        float max = empty ? 0f : -float.MaxValue;
        long arg = -1;
        long x0 = ((long)b * p.C + c) * p.H * p.W;
        for (int h = hs; h < he; h++)
        {
            for (int w = ws; w < we; w++)
            {
                long cell = (long)h * p.W + w;
                float v = x[x0 + cell];
                if (v > max)
                {
                    max = v;
                    arg = cell;
                }
            }
        }
        y[o] = max;
        argmax[o] = arg;
    }

    /// <summary>Backward with float atomics (gradX cleared first): item = flat gradY index.</summary>
    [Kernel]
    public static void BackwardAtomic(Index1D index, RoiPoolParams p, ArrayView<float> gradY, ArrayView<float> rois, ArrayView<long> argmax, ArrayView<float> gradX)
    {
        long o = p.Base + index;
        long plane = (long)p.H * p.W;
        if (o >= (long)p.K * p.C * p.PH * p.PW) return;
        long a = argmax[o];
        if (a < 0 || a >= plane) return;
        long t = o / ((long)p.PH * p.PW);
        int c = (int)(t % p.C);
        int k = (int)(t / p.C);
        int b = (int)rois[(long)k * 5];
        Atomic.Add(ref gradX[((long)b * p.C + c) * plane + a], gradY[o]);
    }

    /// <summary>Deterministic backward: item = ((b·C + c)·H + h)·W + w; sums over RoIs in order, then bins row-major.</summary>
    [Kernel]
    public static void BackwardGather(Index1D index, RoiPoolParams p, ArrayView<float> gradY, ArrayView<float> rois, ArrayView<long> argmax, ArrayView<float> gradX)
    {
        long q = p.Base + index;
        long t = q;
        int w = (int)(t % p.W);
        t /= p.W;
        int h = (int)(t % p.H);
        t /= p.H;
        int c = (int)(t % p.C);
        int b = (int)(t / p.C);
        if (b >= p.N) return;
        long cell = (long)h * p.W + w;
        int bins = p.PH * p.PW;
        float acc = 0f;
        for (int k = 0; k < p.K; k++)
        {
            long r = (long)k * 5;
            if ((int)rois[r] != b) continue;
            Axis(rois[r + 2], rois[r + 4], p.Scale, p.PH, out int startH, out float binH);
            // The bins' union along an axis is [edge 0 start, edge (pooled − 1) end) (edges are monotone in the bin index).
            Edges(0, startH, binH, p.H, out int top, out _);
            Edges(p.PH - 1, startH, binH, p.H, out _, out int bottom);
            if (h < top || h >= bottom) continue;
            Axis(rois[r + 1], rois[r + 3], p.Scale, p.PW, out int startW, out float binW);
            Edges(0, startW, binW, p.W, out int left, out _);
            Edges(p.PW - 1, startW, binW, p.W, out _, out int right);
            if (w < left || w >= right) continue;
            long gk = ((long)k * p.C + c) * bins;
            for (int i = 0; i < p.PH; i++)
            {
                Edges(i, startH, binH, p.H, out int hs, out int he);
                if (h < hs || h >= he) continue;
                for (int j = 0; j < p.PW; j++)
                {
                    Edges(j, startW, binW, p.W, out int ws, out int we);
                    if (w < ws || w >= we) continue;
                    long o = gk + i * p.PW + j;
                    if (argmax[o] == cell) acc += gradY[o];
                }
            }
        }
        gradX[q] = acc;
    }
}
