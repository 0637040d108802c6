// roi_align on the CPU, exactly as torchvision.ops.roi_align (csrc/ops/cpu/roi_align_kernel.cpp
// and roi_align_common.h): sample positions and bilinear weights in double, computed once per
// sample point and reused for every channel; feature values accumulated in float.
using System.Buffers;

namespace GRcn.Kernels.Cpu;

internal sealed unsafe partial class CpuBackend : IRoiAlignBackend
{
    public void RoiAlignForward(Tensor x, Tensor rois, Tensor y, in RoiGeometry g, int samplingRatio, bool aligned) =>
        RoiAlignCpu.Forward(x.Ptr<float>(), rois.Ptr<float>(), y.Ptr<float>(), g, samplingRatio, aligned);

    public void RoiAlignBackward(Tensor gradY, Tensor rois, Tensor gradX, in RoiGeometry g, int samplingRatio, bool aligned) =>
        RoiAlignCpu.Backward(gradY.Ptr<float>(), rois.Ptr<float>(), gradX.Ptr<float>(), g, samplingRatio, aligned);
}

/// <summary>RoI Align kernels on host memory.</summary>
/// <remarks>
/// <para>
/// Geometry of RoI k = [b, x1, y1, x2, y2] (double): start = x1·scale − o, end = x2·scale − o with
/// o = 0.5 when aligned, else 0; size = end − start, raised to ≥ 1 when not aligned; bin = size / pw;
/// grid = sampling_ratio if &gt; 0, else ceil(size / pw) (which is ≤ 0 for an aligned RoI with
/// x2 ≤ x1: such a RoI has no sample points and gives 0); likewise vertically. Sample (iy, ix) of
/// bin (i, j) lies at y = start_h + i·bin_h + (iy + ½)·bin_h / grid_h, x likewise. A sample with
/// y &lt; −1, y &gt; H, x &lt; −1 or x &gt; W contributes 0 (forward: 0 × the plane's first value,
/// as the reference, so a non-finite value there still propagates); otherwise y is raised to ≥ 0,
/// y_low = ⌊y⌋, and when y_low ≥ H − 1 both neighbours are row H − 1 (with y = y_low); weights
/// (1−ly)(1−lx), (1−ly)lx, ly(1−lx), ly·lx.
/// </para>
/// <para>
/// Forward: x (N, C, H, W), rois (K, 5) → y (K, C, ph, pw), y = Σ samples / max(grid_h·grid_w, 1).
/// The (RoI, channel) pairs are split across workers in contiguous ranges. A worker fills a
/// block of sample points (positions and float weights, derived in double) for whole bins of
/// one RoI, then sweeps its channels over that block, so positions and weights are computed
/// once per RoI and worker and reused for every channel. Bins with more sample points than a
/// block holds are done in several blocks.
/// </para>
/// <para>
/// Backward: gradX (N, C, H, W) = 0, then each valid sample adds gradY · w / (grid_h·grid_w)
/// to its four neighbours, RoIs in increasing order (the reference's summation order). RoIs
/// are grouped by image and the (image, channel) planes are split across workers, so each
/// plane is written by one worker only (no races, deterministic).
/// </para>
/// </remarks>
internal static unsafe class RoiAlignCpu
{
    /// <summary>Sample points held by one worker's block buffer (32 bytes each).</summary>
    private const int BlockSamples = 2048;

    /// <summary>Geometry of one RoI, in the reference's double arithmetic.</summary>
    private readonly struct Roi
    {
        public readonly int Batch;
        public readonly double StartH, StartW, BinH, BinW;
        public readonly int GridH, GridW;
        /// <summary>Sample points per bin, grid_h·grid_w, or 0 when either grid size is ≤ 0.</summary>
        public readonly int Samples;

        public Roi(float* r, in RoiGeometry g, int samplingRatio, bool aligned, int index)
        {
            Batch = (int)r[0];
            double offset = aligned ? 0.5 : 0.0;
            StartW = r[1] * g.SpatialScale - offset;
            StartH = r[2] * g.SpatialScale - offset;
            double endW = r[3] * g.SpatialScale - offset;
            double endH = r[4] * g.SpatialScale - offset;
            double width = endW - StartW;
            double height = endH - StartH;
            if (!aligned)
            {
                width = Math.Max(width, 1.0);
                height = Math.Max(height, 1.0);
            }
            BinH = height / g.PH;
            BinW = width / g.PW;
            double gridH = samplingRatio > 0 ? samplingRatio : Math.Ceiling(height / g.PH);
            double gridW = samplingRatio > 0 ? samplingRatio : Math.Ceiling(width / g.PW);
            if (gridH <= 0 || gridW <= 0)
            {
                GridH = GridW = Samples = 0;
                return;
            }
            if (gridH * gridW > int.MaxValue)
                throw new ArgumentException(
                    $"rois row {index} needs {gridH} × {gridW} sample points per bin with sampling ratio {samplingRatio}; " +
                    "that many (over 2^31) cannot be computed: use a positive sampling ratio", "rois");
            GridH = (int)gridH;
            GridW = (int)gridW;
            Samples = GridH * GridW;
        }
    }

    /// <summary>One sample point: the flat indices of its four neighbours and their weights.</summary>
    private struct Sample
    {
        public int P1, P2, P3, P4;
        public float W1, W2, W3, W4;
    }

    /// <summary>Sample points hold int32 cell indices, so one H·W plane must have fewer than 2^31 cells.</summary>
    private static void CheckPlane(in RoiGeometry g, string name)
    {
        if ((long)g.H * g.W > int.MaxValue)
            throw new ArgumentException($"{name} has {g.H} × {g.W} cells per plane; roi_align supports planes of fewer than 2^31 cells", name);
    }

    private static Roi[] Prepare(float* rois, in RoiGeometry g, int samplingRatio, bool aligned)
    {
        var r = new Roi[g.K];
        for (int k = 0; k < g.K; k++) r[k] = new Roi(rois + (long)k * 5, g, samplingRatio, aligned, k);
        return r;
    }

    /// <summary>
    /// Bilinear neighbours and weights along one axis of a map of <paramref name="size"/>
    /// cells; false when the coordinate is outside [−1, size].
    /// </summary>
    private static bool Axis(double v, int size, out int low, out int high, out double l, out double h)
    {
        if (v < -1.0 || v > size)
        {
            low = high = 0;
            l = h = 0;
            return false;
        }
        if (v <= 0) v = 0;
        low = (int)v;
        if (low >= size - 1)
        {
            high = low = size - 1;
            v = low;
        }
        else
        {
            high = low + 1;
        }
        l = v - low;
        h = 1.0 - l;
        return true;
    }

    /// <summary>
    /// Writes the sample points [s0, s1) (row-major over the grid) of bin (i, j) of RoI
    /// <paramref name="r"/> to <paramref name="dst"/>; returns how many were written. Forward
    /// (<paramref name="count"/> = 0) keeps invalid points as zero-weight points on cell 0;
    /// backward skips them and divides the weights by <paramref name="count"/>.
    /// </summary>
    private static int Build(in Roi r, int i, int j, long s0, long s1, int height, int width, double count, Sample* dst)
    {
        bool backward = count > 0;
        int n = 0;
        int iy = (int)(s0 / r.GridW), ix = (int)(s0 % r.GridW);
        double rowBase = r.StartH + i * r.BinH;
        double colBase = r.StartW + j * r.BinW;
        for (long s = s0; s < s1; iy++, ix = 0)
        {
            double y = rowBase + (double)(iy + 0.5f) * r.BinH / r.GridH;
            bool yValid = Axis(y, height, out int yl, out int yh, out double ly, out double hy);
            for (; ix < r.GridW && s < s1; ix++, s++)
            {
                double x = colBase + (double)(ix + 0.5f) * r.BinW / r.GridW;
                bool xValid = Axis(x, width, out int xl, out int xh, out double lx, out double hx);
                if (!(yValid && xValid))
                {
                    if (!backward) dst[n++] = default;
                    continue;
                }
                double w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx;
                if (backward)
                {
                    w1 /= count;
                    w2 /= count;
                    w3 /= count;
                    w4 /= count;
                }
                ref Sample p = ref dst[n++];
                p.P1 = yl * width + xl;
                p.P2 = yl * width + xh;
                p.P3 = yh * width + xl;
                p.P4 = yh * width + xh;
                p.W1 = (float)w1;
                p.W2 = (float)w2;
                p.W3 = (float)w3;
                p.W4 = (float)w4;
            }
        }
        return n;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static float Accumulate(float* v, Sample* s, int n)
    {
        float acc = 0f;
        for (int t = 0; t < n; t++)
            acc += s[t].W1 * v[s[t].P1] + s[t].W2 * v[s[t].P2] + s[t].W3 * v[s[t].P3] + s[t].W4 * v[s[t].P4];
        return acc;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void Scatter(float* gx, float gy, Sample* s, int n)
    {
        for (int t = 0; t < n; t++)
        {
            gx[s[t].P1] += gy * s[t].W1;
            gx[s[t].P2] += gy * s[t].W2;
            gx[s[t].P3] += gy * s[t].W3;
            gx[s[t].P4] += gy * s[t].W4;
        }
    }

    public static void Forward(float* x, float* rois, float* y, RoiGeometry g, int samplingRatio, bool aligned)
    {
        CheckPlane(g, "x");
        Roi[] geometry = Prepare(rois, g, samplingRatio, aligned);
        int groups = (long)g.K * g.C <= int.MaxValue ? g.C : 1;
        if (groups == 0) return;
        long perRoi = 0;
        foreach (var r in geometry) perRoi += r.Samples;
        long cost = Math.Max(1, perRoi / g.K * g.PH * g.PW * 4);
        nint px = (nint)x, py = (nint)y;
        Parallelism.For(g.K * groups, cost, (start, end) =>
        {
            Sample[] buffer = ArrayPool<Sample>.Shared.Rent(BlockSamples);
            try
            {
                fixed (Sample* buf = buffer)
                {
                    for (int i = start; i < end;)
                    {
                        int k = i / groups;
                        int segEnd = Math.Min(end, (k + 1) * groups);
                        int c0 = (int)((long)(i - k * groups) * g.C / groups);
                        int c1 = (int)((long)(segEnd - k * groups) * g.C / groups);
                        ForwardRoi(k, c0, c1, geometry[k], (float*)px, (float*)py, buf, g);
                        i = segEnd;
                    }
                }
            }
            finally
            {
                ArrayPool<Sample>.Shared.Return(buffer);
            }
        });
    }

    private static void ForwardRoi(int k, int c0, int c1, in Roi r, float* x, float* y, Sample* buf, in RoiGeometry g)
    {
        int bins = g.PH * g.PW;
        long plane = (long)g.H * g.W;
        float* yk = y + (long)k * g.C * bins;
        if (r.Samples == 0 || plane == 0)
        {
            new Span<float>(yk + (long)c0 * bins, (c1 - c0) * bins).Clear();
            return;
        }
        float* xb = x + (long)r.Batch * g.C * plane;
        int s = r.Samples;
        double count = s;
        if (s <= BlockSamples)
        {
            int perBlock = BlockSamples / s;
            for (int bin0 = 0; bin0 < bins; bin0 += perBlock)
            {
                int bin1 = Math.Min(bins, bin0 + perBlock);
                for (int bin = bin0; bin < bin1; bin++)
                    Build(r, bin / g.PW, bin % g.PW, 0, s, g.H, g.W, 0, buf + (long)(bin - bin0) * s);
                for (int c = c0; c < c1; c++)
                {
                    float* xp = xb + c * plane;
                    float* yp = yk + (long)c * bins;
                    Sample* sp = buf;
                    for (int bin = bin0; bin < bin1; bin++, sp += s)
                        yp[bin] = (float)(Accumulate(xp, sp, s) / count);
                }
            }
            return;
        }
        // A bin with more sample points than a block: sum it block by block in y.
        for (int bin = 0; bin < bins; bin++)
        {
            for (int c = c0; c < c1; c++) yk[(long)c * bins + bin] = 0f;
            for (long s0 = 0; s0 < s; s0 += BlockSamples)
            {
                int n = Build(r, bin / g.PW, bin % g.PW, s0, Math.Min(s, s0 + BlockSamples), g.H, g.W, 0, buf);
                for (int c = c0; c < c1; c++) yk[(long)c * bins + bin] += Accumulate(xb + c * plane, buf, n);
            }
            for (int c = c0; c < c1; c++) yk[(long)c * bins + bin] = (float)(yk[(long)c * bins + bin] / count);
        }
    }

    public static void Backward(float* gradY, float* rois, float* gradX, RoiGeometry g, int samplingRatio, bool aligned)
    {
        CheckPlane(g, "gradX");
        Roi[] geometry = Prepare(rois, g, samplingRatio, aligned);
        var (order, first) = RoiImages.Group(rois, g.K, g.N);
        int groups = (long)g.N * g.C <= int.MaxValue ? g.C : 1;
        if (groups == 0) return;
        long perImage = 0;
        foreach (var r in geometry) perImage += r.Samples;
        long cost = (long)g.H * g.W + perImage / Math.Max(1, g.N) * g.PH * g.PW * 4;
        nint pgy = (nint)gradY, pgx = (nint)gradX;
        Parallelism.For(g.N * groups, cost, (start, end) =>
        {
            Sample[] buffer = ArrayPool<Sample>.Shared.Rent(BlockSamples);
            int[] offsets = ArrayPool<int>.Shared.Rent(BlockSamples + 1);
            try
            {
                fixed (Sample* buf = buffer)
                fixed (int* offs = offsets)
                {
                    for (int i = start; i < end;)
                    {
                        int b = i / groups;
                        int segEnd = Math.Min(end, (b + 1) * groups);
                        int c0 = (int)((long)(i - b * groups) * g.C / groups);
                        int c1 = (int)((long)(segEnd - b * groups) * g.C / groups);
                        BackwardImage(b, c0, c1, geometry, order.AsSpan(first[b], first[b + 1] - first[b]),
                            (float*)pgy, (float*)pgx, buf, offs, g);
                        i = segEnd;
                    }
                }
            }
            finally
            {
                ArrayPool<int>.Shared.Return(offsets);
                ArrayPool<Sample>.Shared.Return(buffer);
            }
        });
    }

    /// <summary>Zeroes image <paramref name="b"/>'s channels [c0, c1) of gradX and scatters its RoIs' gradients into them.</summary>
    private static void BackwardImage(int b, int c0, int c1, Roi[] geometry, ReadOnlySpan<int> imageRois,
        float* gradY, float* gradX, Sample* buf, int* offs, in RoiGeometry g)
    {
        int bins = g.PH * g.PW;
        long plane = (long)g.H * g.W;
        float* gb = gradX + (long)b * g.C * plane;
        System.Runtime.InteropServices.NativeMemory.Clear(gb + c0 * plane, (nuint)((c1 - c0) * plane * sizeof(float)));
        if (plane == 0) return;
        foreach (int k in imageRois)
        {
            ref readonly Roi r = ref geometry[k];
            int s = r.Samples;
            if (s == 0) continue;
            double count = s;
            float* gk = gradY + (long)k * g.C * bins;
            if (s <= BlockSamples)
            {
                int perBlock = BlockSamples / s;
                for (int bin0 = 0; bin0 < bins; bin0 += perBlock)
                {
                    int bin1 = Math.Min(bins, bin0 + perBlock);
                    offs[0] = 0;
                    for (int bin = bin0; bin < bin1; bin++)
                        offs[bin - bin0 + 1] = offs[bin - bin0] + Build(r, bin / g.PW, bin % g.PW, 0, s, g.H, g.W, count, buf + offs[bin - bin0]);
                    for (int c = c0; c < c1; c++)
                    {
                        float* gx = gb + c * plane;
                        float* gy = gk + (long)c * bins;
                        for (int bin = bin0; bin < bin1; bin++)
                            Scatter(gx, gy[bin], buf + offs[bin - bin0], offs[bin - bin0 + 1] - offs[bin - bin0]);
                    }
                }
                continue;
            }
            for (int bin = 0; bin < bins; bin++)
            {
                for (long s0 = 0; s0 < s; s0 += BlockSamples)
                {
                    int n = Build(r, bin / g.PW, bin % g.PW, s0, Math.Min(s, s0 + BlockSamples), g.H, g.W, count, buf);
                    for (int c = c0; c < c1; c++) Scatter(gb + c * plane, gk[(long)c * bins + bin], buf, n);
                }
            }
        }
    }
}
