// roi_align on the GPU: torchvision's float32 code path (csrc/ops/cuda/roi_align_kernel.cu with
// T = float), expression for expression. x (N, C, H, W), rois (K, 5) rows [b, x1, y1, x2, y2]
// → y (K, C, ph, pw); backward gradY (K, C, ph, pw) → gradX (N, C, H, W).
//
// Geometry of RoI k (all float32, s = (float)spatial_scale, o = aligned ? 0.5f : 0f):
//   start_w = x1·s − o, end_w = x2·s − o, roi_w = end_w − start_w (max(roi_w, 1f) when not
//   aligned), bin_w = roi_w / pw, grid_w = sampling_ratio > 0 ? sampling_ratio : (int)ceil(roi_w / pw)
//   (likewise vertically); sample (iy, ix) of bin (i, j):
//   y = (start_h + i·bin_h) + ((iy + 0.5f)·bin_h) / grid_h,  x = (start_w + j·bin_w) + ((ix + 0.5f)·bin_w) / grid_w.
//   The products x1·s … and i·bin_h, j·bin_w are rounded multiplications (mul.rn.f32 on CUDA) so
//   that the PTX JIT cannot contract them with the following add into an FMA: the positions are
//   exactly those of torchvision's float CPU path (nvcc's own --fmad=true build of the CUDA kernel
//   may fuse them; we do not). Bilinear rule: a sample with !(y ≥ −1 ∧ y ≤ H ∧ x ≥ −1 ∧ x ≤ W)
//   contributes 0; else y ≤ 0 → 0, y_low = (int)y, y_low ≥ H − 1 → y_low = y_high = H − 1 and
//   y = y_low; ly = y − y_low, hy = 1 − ly (likewise x); w1..w4 = hy·hx, hy·lx, ly·hx, ly·lx.
//   Forward: y = (Σ samples (w1·v1 + w2·v2 + w3·v3 + w4·v4)) / max(grid_h·grid_w, 1), samples
//   row-major. Backward: each valid sample adds (gradY·w_n) / (grid_h·grid_w) to neighbour n.
//   (The value sums w·v may be contracted into FMAs on a real GPU, as in torchvision's CUDA build.)
//
// Parallelisation:
// - Forward: one thread per (k, channel group of 4, i, j), implicitly grouped over a flat index
//   with j fastest (a warp covers consecutive bins of one RoI: coalesced stores per channel). The
//   thread computes each sample's position and weights once and gathers it for its 4 channels
//   (4 register accumulators), so geometry costs a quarter of torchvision's one-thread-per-output.
// - Backward, atomic (GpuDevice.DeterministicBackward == false): gradX is cleared, then the same
//   thread layout scatters with Atomic.Add (float atomics: the sum order varies run to run).
// - Backward, deterministic: a gather, one thread per (b, channel group of 4, h, w) input cell,
//   implicitly grouped with w fastest (coalesced stores), that writes every cell (no clear, no
//   atomics, no scratch memory). The thread walks RoIs k = 0 … K−1 in order, skips those of other
//   images, and, because sample positions are monotone in the sample row index r = i·grid_h + iy,
//   inverts y(r) ∈ [h − 1, h + 1] to a candidate range of r (widened by a bound on float rounding
//   error, clipped to the RoI; the whole RoI when the sample step is 0); likewise for columns.
//   Each candidate sample is recomputed with the exact forward expressions and adds, for each of
//   its four neighbours that is this cell, (gradY·w_n)/(grid_h·grid_w): per cell the sum runs over
//   RoIs, then sample rows, then sample columns, then neighbours 1..4, a fixed order, so gradients
//   are bit-identical run to run; every term is torchvision's term, only the summation order
//   differs from an atomic run. Cost: every cell thread tests all K RoIs (a batch-index and range
//   check, O(N·⌈C/4⌉·H·W·K) cheap tests), plus about (2/step_h + 5)·(2/step_w + 5) candidate samples
//   per (cell, overlapping RoI), step = bin / grid ≈ 0.5–1 cell for adaptive sampling, i.e. ~100
//   sample evaluations where the atomic path does 4 atomics per sample: several times slower than
//   the atomic mode on large maps with many RoIs.
using GRcn.Kernels;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

/// <summary>
/// Sizes and options of one roi_align launch (blittable: Aligned is 0 or 1). Base is the flat
/// index of the launch's first item (launches are split at int.MaxValue items).
/// </summary>
internal readonly record struct RoiAlignParams(
    int N, int C, int H, int W, int K, int PH, int PW, float Scale, int SamplingRatio, int Aligned, int ChannelGroups, long Base);

/// <summary>Float32 arithmetic helpers shared by the RoI kernels.</summary>
internal static class RoiMath
{
    /// <summary>Channels per thread in the roi_align kernels.</summary>
    public const int Channels = 4;

    /// <summary>C's roundf: round half away from zero, exact for every float (not floor(x + 0.5f)).</summary>
    public static float RoundHalfAway(float v)
    {
        float t = XMath.Truncate(v);
        // v − t is exact (the fractional part of v); |v − t| ≥ 0.5 moves t one step away from zero.
        float frac = v - t;
        if (frac >= 0.5f) return t + 1f;
        if (frac <= -0.5f) return t - 1f;
        return t;
    }

    /// <summary>
    /// Start, bin size and sample grid of one axis of a roi_align RoI, as torchvision's float code:
    /// start = lo·s − o, size = (hi·s − o) − start (≥ 1 unless aligned), bin = size / pooled,
    /// grid = sampling ratio, or (int)ceil(size / pooled) when it is ≤ 0.
    /// </summary>
    public static void AlignAxis(float lo, float hi, float scale, int aligned, int pooled, int samplingRatio,
        out float start, out float bin, out int grid)
    {
        float offset = aligned != 0 ? 0.5f : 0f;
        start = ExactMath.Mul(lo, scale) - offset;
        float end = ExactMath.Mul(hi, scale) - offset;
        float size = end - start;
        if (aligned == 0) size = XMath.Max(size, 1f);
        bin = size / pooled;
        // ceil(roi_size / pooled) is the same float quotient as bin.
        grid = samplingRatio > 0 ? samplingRatio : (int)XMath.Ceiling(bin);
    }

    /// <summary>Coordinate of sample <paramref name="sub"/> (of <paramref name="grid"/>) of bin <paramref name="bin"/>: (start + bin·size) + ((sub + 0.5f)·size) / grid.</summary>
    public static float SamplePosition(float start, float size, int bin, int sub, int grid) =>
        start + ExactMath.Mul(bin, size) + (sub + .5f) * size / grid;

    /// <summary>
    /// The bilinear rule along one axis of <paramref name="extent"/> cells for an in-range
    /// coordinate (the caller has checked −1 ≤ v ≤ extent): neighbours low/high and weights l (of
    /// high) and h = 1 − l (of low).
    /// </summary>
    public static void Bilinear(float v, int extent, out int low, out int high, out float l, out float h)
    {
        if (v <= 0) v = 0;
        low = (int)v;
        if (low >= extent - 1)
        {
            high = low = extent - 1;
            v = low;
        }
        else
        {
            high = low + 1;
        }
        l = v - low;
        h = 1f - l;
    }

    /// <summary>Whether a sample coordinate is inside [−1, extent] (false for NaN).</summary>
    public static bool InRange(float v, int extent) => v >= -1f && v <= extent;

    /// <summary>
    /// One axis of sample <paramref name="sub"/> of bin <paramref name="bin"/>: its coordinate
    /// (<see cref="SamplePosition"/>), false when it is outside [−1, extent] (the sample adds 0),
    /// else its bilinear neighbours and weights (<see cref="Bilinear"/>).
    /// </summary>
    public static bool SampleAxis(float start, float size, int bin, int sub, int grid, int extent,
        out int low, out int high, out float l, out float h)
    {
        float v = SamplePosition(start, size, bin, sub, grid);
        low = high = 0;
        l = h = 0f;
        if (!InRange(v, extent)) return false;
        Bilinear(v, extent, out low, out high, out l, out h);
        return true;
    }

    /// <summary>
    /// Sample indices r = bin·grid + sub (of pooled·grid) of one axis whose coordinate may lie
    /// in [cell − 1, cell + 1], i.e. may touch <paramref name="cell"/>: [lo, hi], empty when hi &lt; lo.
    /// The positions are monotone in r, so the range inverts start + (r + ½)·step with a margin
    /// that bounds the float rounding of both the positions and the inversion.
    /// </summary>
    public static void Candidates(float start, float size, int grid, int pooled, int cell, out long lo, out long hi)
    {
        long total = (long)pooled * grid;
        float step = size / grid;
        float mag = XMath.Abs(start) + XMath.Abs(size) * pooled + XMath.Abs((float)cell) + 2f;
        float slack = 1e-6f * mag / XMath.Abs(step) + 2f;
        if (!(XMath.Abs(step) > 0f) || !(slack < 1e9f))
        {
            // All samples at one position (or a step too small to invert): every sample is a candidate.
            lo = 0;
            hi = total - 1;
            return;
        }
        float a = (cell - 1 - start) / step - 0.5f;
        float b = (cell + 1 - start) / step - 0.5f;
        float l = XMath.Min(a, b) - slack, u = XMath.Max(a, b) + slack;
        if (u < 0f || l > total - 1)
        {
            lo = 0;
            hi = -1;
            return;
        }
        lo = l <= 0f ? 0 : (long)l;
        hi = u >= total - 1 ? total - 1 : (long)XMath.Ceiling(u);
    }
}

internal static class RoiAlignKernels
{
    /// <summary>
    /// The output item of a forward / atomic-backward thread: item = ((k·groups + g)·ph + i)·pw + j
    /// is bin (i, j) of RoI k for channels c0 = 4g .. c0 + nc − 1, with the RoI's image b and its
    /// sample geometry; false past the last RoI.
    /// </summary>
    private static bool OutputItem(long item, in RoiAlignParams p, ArrayView<float> rois,
        out int k, out int b, out int c0, out int nc, out int i, out int j,
        out float startH, out float binH, out int gridH, out float startW, out float binW, out int gridW)
    {
        long t = item;
        j = (int)(t % p.PW);
        t /= p.PW;
        i = (int)(t % p.PH);
        t /= p.PH;
        c0 = (int)(t % p.ChannelGroups) * RoiMath.Channels;
        k = (int)(t / p.ChannelGroups);
        b = 0;
        nc = 0;
        startH = binH = startW = binW = 0f;
        gridH = gridW = 0;
        if (k >= p.K) return false;
        nc = XMath.Min(RoiMath.Channels, p.C - c0);
        long r = (long)k * 5;
        b = (int)rois[r];
        RoiMath.AlignAxis(rois[r + 1], rois[r + 3], p.Scale, p.Aligned, p.PW, p.SamplingRatio, out startW, out binW, out gridW);
        RoiMath.AlignAxis(rois[r + 2], rois[r + 4], p.Scale, p.Aligned, p.PH, p.SamplingRatio, out startH, out binH, out gridH);
        return true;
    }

    /// <summary>Forward: item = ((k·groups + g)·ph + i)·pw + j, channels 4g .. 4g + 3.</summary>
    [Kernel]
    public static void Forward(Index1D index, RoiAlignParams p, ArrayView<float> x, ArrayView<float> rois, ArrayView<float> y)
    {
        if (!OutputItem(p.Base + index, p, rois, out int k, out int b, out int c0, out int nc, out int i, out int j,
                out float startH, out float binH, out int gridH, out float startW, out float binW, out int gridW)) return;
        long plane = (long)p.H * p.W;
        long x0 = ((long)b * p.C + c0) * plane;
        float a0 = 0f, a1 = 0f, a2 = 0f, a3 = 0f;
        for (int iy = 0; iy < gridH; iy++)
        {
            if (!RoiMath.SampleAxis(startH, binH, i, iy, gridH, p.H, out int yl, out int yh, out float ly, out float hy)) continue;
            for (int ix = 0; ix < gridW; ix++)
            {
                if (!RoiMath.SampleAxis(startW, binW, j, ix, gridW, p.W, out int xl, out int xh, out float lx, out float hx)) continue;
                float w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx;
                long p1 = x0 + (long)yl * p.W + xl, p2 = x0 + (long)yl * p.W + xh;
                long p3 = x0 + (long)yh * p.W + xl, p4 = x0 + (long)yh * p.W + xh;
                a0 += w1 * x[p1] + w2 * x[p2] + w3 * x[p3] + w4 * x[p4];
                if (nc > 1) a1 += w1 * x[p1 + plane] + w2 * x[p2 + plane] + w3 * x[p3 + plane] + w4 * x[p4 + plane];
                if (nc > 2) a2 += w1 * x[p1 + 2 * plane] + w2 * x[p2 + 2 * plane] + w3 * x[p3 + 2 * plane] + w4 * x[p4 + 2 * plane];
                if (nc > 3) a3 += w1 * x[p1 + 3 * plane] + w2 * x[p2 + 3 * plane] + w3 * x[p3 + 3 * plane] + w4 * x[p4 + 3 * plane];
            }
        }
        // count = max(grid_h·grid_w, 1) as float (a RoI without samples gives 0).
        float count = XMath.Max(gridH * gridW, 1);
        int bins = p.PH * p.PW;
        long o = ((long)k * p.C + c0) * bins + i * p.PW + j;
        y[o] = a0 / count;
        if (nc > 1) y[o + bins] = a1 / count;
        if (nc > 2) y[o + 2 * bins] = a2 / count;
        if (nc > 3) y[o + 3 * bins] = a3 / count;
    }

    /// <summary>Backward with float atomics (gradX cleared first): the forward's thread layout, each sample adds to its four neighbours.</summary>
    [Kernel]
    public static void BackwardAtomic(Index1D index, RoiAlignParams p, ArrayView<float> gradY, ArrayView<float> rois, ArrayView<float> gradX)
    {
        if (!OutputItem(p.Base + index, p, rois, out int k, out int b, out int c0, out int nc, out int i, out int j,
                out float startH, out float binH, out int gridH, out float startW, out float binW, out int gridW)) return;
        int bins = p.PH * p.PW;
        long o = ((long)k * p.C + c0) * bins + i * p.PW + j;
        float g0 = gradY[o];
        float g1 = nc > 1 ? gradY[o + bins] : 0f;
        float g2 = nc > 2 ? gradY[o + 2 * bins] : 0f;
        float g3 = nc > 3 ? gradY[o + 3 * bins] : 0f;
        float count = gridH * gridW;
        long plane = (long)p.H * p.W;
        long x0 = ((long)b * p.C + c0) * plane;
        for (int iy = 0; iy < gridH; iy++)
        {
            if (!RoiMath.SampleAxis(startH, binH, i, iy, gridH, p.H, out int yl, out int yh, out float ly, out float hy)) continue;
            for (int ix = 0; ix < gridW; ix++)
            {
                if (!RoiMath.SampleAxis(startW, binW, j, ix, gridW, p.W, out int xl, out int xh, out float lx, out float hx)) continue;
                float w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx;
                long p1 = x0 + (long)yl * p.W + xl, p2 = x0 + (long)yl * p.W + xh;
                long p3 = x0 + (long)yh * p.W + xl, p4 = x0 + (long)yh * p.W + xh;
                Scatter(gradX, p1, p2, p3, p4, g0, w1, w2, w3, w4, count);
                if (nc > 1) Scatter(gradX, p1 + plane, p2 + plane, p3 + plane, p4 + plane, g1, w1, w2, w3, w4, count);
                if (nc > 2) Scatter(gradX, p1 + 2 * plane, p2 + 2 * plane, p3 + 2 * plane, p4 + 2 * plane, g2, w1, w2, w3, w4, count);
                if (nc > 3) Scatter(gradX, p1 + 3 * plane, p2 + 3 * plane, p3 + 3 * plane, p4 + 3 * plane, g3, w1, w2, w3, w4, count);
            }
        }
    }

    private static void Scatter(ArrayView<float> gx, long p1, long p2, long p3, long p4, float g, float w1, float w2, float w3, float w4, float count)
    {
        Atomic.Add(ref gx[p1], g * w1 / count);
        Atomic.Add(ref gx[p2], g * w2 / count);
        Atomic.Add(ref gx[p3], g * w3 / count);
        Atomic.Add(ref gx[p4], g * w4 / count);
    }

    /// <summary>
    /// Deterministic backward: item = ((b·groups + g)·H + h)·W + w writes gradX[b, 4g .. 4g + 3, h, w],
    /// summing over RoIs in order, then the candidate samples that touch the cell (see the file comment).
    /// </summary>
    [Kernel]
    public static void BackwardGather(Index1D index, RoiAlignParams p, ArrayView<float> gradY, ArrayView<float> rois, ArrayView<float> gradX)
    {
        long t = p.Base + index;
        int w = (int)(t % p.W);
        t /= p.W;
        int h = (int)(t % p.H);
        t /= p.H;
        int c0 = (int)(t % p.ChannelGroups) * RoiMath.Channels;
        int b = (int)(t / p.ChannelGroups);
        if (b >= p.N) return;
        int nc = XMath.Min(RoiMath.Channels, p.C - c0);
        int bins = p.PH * p.PW;
        float a0 = 0f, a1 = 0f, a2 = 0f, a3 = 0f;
        for (int k = 0; k < p.K; k++)
        {
            long r = (long)k * 5;
            if ((int)rois[r] != b) continue;
            RoiMath.AlignAxis(rois[r + 2], rois[r + 4], p.Scale, p.Aligned, p.PH, p.SamplingRatio, out float startH, out float binH, out int gridH);
            if (gridH <= 0) continue;
            RoiMath.AlignAxis(rois[r + 1], rois[r + 3], p.Scale, p.Aligned, p.PW, p.SamplingRatio, out float startW, out float binW, out int gridW);
            if (gridW <= 0) continue;
            RoiMath.Candidates(startH, binH, gridH, p.PH, h, out long rLo, out long rHi);
            if (rHi < rLo) continue;
            RoiMath.Candidates(startW, binW, gridW, p.PW, w, out long sLo, out long sHi);
            if (sHi < sLo) continue;
            float count = gridH * gridW;
            long gk = ((long)k * p.C + c0) * bins;
            for (long ry = rLo; ry <= rHi; ry++)
            {
                int i = (int)(ry / gridH), iy = (int)(ry % gridH);
                if (!RoiMath.SampleAxis(startH, binH, i, iy, gridH, p.H, out int yl, out int yh, out float ly, out float hy)) continue;
                if (yl != h && yh != h) continue;
                for (long rx = sLo; rx <= sHi; rx++)
                {
                    int j = (int)(rx / gridW), ix = (int)(rx % gridW);
                    if (!RoiMath.SampleAxis(startW, binW, j, ix, gridW, p.W, out int xl, out int xh, out float lx, out float hx)) continue;
                    if (xl != w && xh != w) continue;
                    float w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx;
                    long o = gk + i * p.PW + j;
                    a0 = Gather(a0, gradY[o], yl, yh, xl, xh, h, w, w1, w2, w3, w4, count);
                    if (nc > 1) a1 = Gather(a1, gradY[o + bins], yl, yh, xl, xh, h, w, w1, w2, w3, w4, count);
                    if (nc > 2) a2 = Gather(a2, gradY[o + 2 * bins], yl, yh, xl, xh, h, w, w1, w2, w3, w4, count);
                    if (nc > 3) a3 = Gather(a3, gradY[o + 3 * bins], yl, yh, xl, xh, h, w, w1, w2, w3, w4, count);
                }
            }
        }
        long plane = (long)p.H * p.W;
        long q = ((long)b * p.C + c0) * plane + (long)h * p.W + w;
        gradX[q] = a0;
        if (nc > 1) gradX[q + plane] = a1;
        if (nc > 2) gradX[q + 2 * plane] = a2;
        if (nc > 3) gradX[q + 3 * plane] = a3;
    }

    /// <summary>acc plus the terms (g·w_n)/count of the sample's neighbours n that are cell (h, w), in neighbour order.</summary>
    private static float Gather(float acc, float g, int yl, int yh, int xl, int xh, int h, int w,
        float w1, float w2, float w3, float w4, float count)
    {
        if (yl == h && xl == w) acc += g * w1 / count;
        if (yl == h && xh == w) acc += g * w2 / count;
        if (yh == h && xl == w) acc += g * w3 / count;
        if (yh == h && xh == w) acc += g * w4 / count;
        return acc;
    }
}
