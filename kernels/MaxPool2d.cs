// max_pool2d on the GPU: y[p, i, j] = max over the window rows i·sh − ph + [0, kh), columns
// j·sw − pw + [0, kw) of the input plane p = n·C + c (padding acts as −inf), with the int64 flat
// index h·W + w of the winner, exactly as MaxPool2dCpu / ATen's cpu_max_pool: the running maximum
// starts at −inf with its index at the window's first in-bounds element, and v replaces it when
// v > max or v is NaN, scanning rows then columns (NaN wins, the first of equal maxima wins).
// Shapes: x and gradX (N, C, H, W); y, indices and gradY (N, C, OH, OW).
//
// Forward: one thread per output element, implicitly grouped over a 1-D index with the column
// fastest (coalesced stores of y and indices; neighbouring threads read neighbouring windows).
//
// Backward, deterministic (gather): one thread per input element (h, w), columns fastest. It
// visits the outputs whose window contains (h, w), rows oh ascending then columns ow ascending,
// and sums gradY[p, oh, ow] where indices[p, oh, ow] = h·W + w, starting from 0: the same
// additions in the same order as the CPU's row-major scatter, so no atomics and bit-identical
// runs (and bit-identical to the CPU). An index outside its own output's window (indices not from
// the matching forward pass) is not seen by any input thread and contributes nothing.
// Backward, atomic (scatter): gradX is zeroed, then one thread per output element adds gradY to
// gradX[p, indices] with a float atomic (any in-plane index; others are skipped). Faster for
// non-overlapping windows, but with overlapping windows the order of additions varies.
//
// Grids over more than int.MaxValue elements are launched in chunks: Start is the first element.
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

/// <summary>Geometry of one max pooling and the first element of a chunked launch.</summary>
internal readonly record struct MaxPool2dParams(
    int H, int W, int OH, int OW, int KH, int KW, int StrideH, int StrideW, int PadH, int PadW, long Start);

internal static class MaxPool2dKernels
{
    /// <summary>y and indices for output element Start + i (flat over (N·C, OH, OW)).</summary>
    [Kernel]
    public static void Forward(Index1D i, MaxPool2dParams g, ArrayView<float> x, ArrayView<float> y, ArrayView<long> indices)
    {
        long o = g.Start + i;
        if (o >= y.Length) return;
        long outPlane = (long)g.OH * g.OW;
        long p = o / outPlane;
        int r = (int)(o - p * outPlane);
        int oh = r / g.OW, ow = r - oh * g.OW;
        // window clipped to the input (padding counts as −inf, so it never wins)
        int h0 = oh * g.StrideH - g.PadH, w0 = ow * g.StrideW - g.PadW;
        int h1 = XMath.Min(h0 + g.KH, g.H), w1 = XMath.Min(w0 + g.KW, g.W);
        h0 = XMath.Max(h0, 0);
        w0 = XMath.Max(w0, 0);
        long plane = p * g.H * g.W;
        long maxIndex = (long)h0 * g.W + w0;
        float maxValue = float.NegativeInfinity;
        for (int h = h0; h < h1; h++)
        {
            long row = (long)h * g.W;
            for (int w = w0; w < w1; w++)
            {
                float v = x[plane + row + w];
                if (v > maxValue || float.IsNaN(v))
                {
                    maxValue = v;
                    maxIndex = row + w;
                }
            }
        }
        y[o] = maxValue;
        indices[o] = maxIndex;
    }

    /// <summary>gradX for input element Start + i (flat over (N·C, H, W)): the sum of gradY where the indices point at it.</summary>
    [Kernel]
    public static void BackwardGather(Index1D i, MaxPool2dParams g, ArrayView<float> gradY, ArrayView<long> indices, ArrayView<float> gradX)
    {
        long e = g.Start + i;
        if (e >= gradX.Length) return;
        long inPlane = (long)g.H * g.W;
        long p = e / inPlane;
        long k = e - p * inPlane;
        int h = (int)(k / g.W), w = (int)(k - (long)h * g.W);
        // outputs whose window rows oh·sh − ph + [0, kh) contain h: oh·sh ≤ h + ph < oh·sh + kh
        int ohFirst = CeilDivNonNegative(h + g.PadH - g.KH + 1, g.StrideH);
        int ohLast = XMath.Min((h + g.PadH) / g.StrideH, g.OH - 1);
        int owFirst = CeilDivNonNegative(w + g.PadW - g.KW + 1, g.StrideW);
        int owLast = XMath.Min((w + g.PadW) / g.StrideW, g.OW - 1);
        long outBase = p * g.OH * g.OW;
        float sum = 0f;
        for (int oh = ohFirst; oh <= ohLast; oh++)
        {
            long row = outBase + (long)oh * g.OW;
            for (int ow = owFirst; ow <= owLast; ow++)
                if (indices[row + ow] == k) sum += gradY[row + ow];
        }
        gradX[e] = sum;
    }

    /// <summary>gradX[p, indices[o]] += gradY[o] atomically for output element Start + i; gradX must be zeroed first.</summary>
    [Kernel]
    public static void BackwardScatter(Index1D i, MaxPool2dParams g, ArrayView<float> gradY, ArrayView<long> indices, ArrayView<float> gradX)
    {
        long o = g.Start + i;
        if (o >= gradY.Length) return;
        long outPlane = (long)g.OH * g.OW, inPlane = (long)g.H * g.W;
        long p = o / outPlane;
        long k = indices[o];
        if (k < 0 || k >= inPlane) return;
        Atomic.Add(ref gradX[p * inPlane + k], gradY[o]);
    }

    /// <summary>max(0, ⌈a / b⌉) for b ≥ 1 (a may be negative).</summary>
    private static int CeilDivNonNegative(int a, int b) => a <= 0 ? 0 : (a + b - 1) / b;
}
