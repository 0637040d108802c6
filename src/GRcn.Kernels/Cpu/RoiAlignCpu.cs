// roi_align on the CPU, exactly as torchvision.ops.roi_align's float32 kernel
// (csrc/ops/cpu/roi_align_kernel.cpp and roi_align_common.h with T = float): the RoI start,
// end and size, the aligned offset, bin sizes, the adaptive grid, sample positions and
// bilinear weights are float32 as torchvision's float kernel computes them (same expressions,
// same order of operations), computed once per sample point and reused for every channel;
// feature values accumulated in float. x (N, C, H, W), rois (K, 5) → y (K, C, ph, pw). With
// AVX2 and enough sample points the kernels run on a channel-blocked copy, 32 channels per
// FMA sweep (forward: workers take contiguous runs of (RoI, channel block) items; backward:
// of (image, channel block) planes); otherwise per channel.
using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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
/// Geometry of RoI k = [b, x1, y1, x2, y2], all in float (torchvision's T = float), with
/// s = (float)spatial_scale: start = x1·s − o, end = x2·s − o with o = 0.5f when aligned, else 0;
/// size = end − start, raised to ≥ 1 when not aligned; bin = size / (float)pw; grid =
/// sampling_ratio if &gt; 0, else (int)ceil(size / (float)pw) (which is ≤ 0 for an aligned RoI
/// with x2 ≤ x1: such a RoI has no sample points and gives 0); likewise vertically. Sample
/// (iy, ix) of bin (i, j) lies at y = (start_h + (float)i·bin_h) + ((float)(iy + 0.5f)·bin_h) /
/// (float)grid_h, each operation rounded to float in that order, x likewise. A sample with
/// y &lt; −1, y &gt; H, x &lt; −1 or x &gt; W contributes 0 (forward: 0 × the plane's first value,
/// as the reference, so a non-finite value there still propagates); otherwise y is raised to ≥ 0,
/// y_low = ⌊y⌋, and when y_low ≥ H − 1 both neighbours are row H − 1 (with y = y_low); weights
/// (1−ly)(1−lx), (1−ly)lx, ly(1−lx), ly·lx with ly = y − y_low, all in float.
/// </para>
/// <para>
/// Forward: x (N, C, H, W), rois (K, 5) → y (K, C, ph, pw), y = Σ samples / max(grid_h·grid_w, 1).
/// The (RoI, channel) pairs are split across workers in contiguous ranges. A worker fills a
/// block of sample points (positions and weights, in float) for whole bins of
/// one RoI, then sweeps its channels over that block, so positions and weights are computed
/// once per RoI and worker and reused for every channel. Bins with more sample points than a
/// block holds are done in several blocks. Where AVX2 is available and the points outnumber
/// a quarter of the map's cells, the blocked path runs instead (see <see cref="ForwardBlocked"/>
/// and <see cref="BackwardBlocked"/>): per lane the same points, weights and order, with fused
/// multiply-adds and a float division by the point count (float(grid_h·grid_w)).
/// </para>
/// <para>
/// Backward: gradX (N, C, H, W) = 0, then each valid sample adds gradY · w / (grid_h·grid_w)
/// to its four neighbours, RoIs in increasing order (the reference's summation order); the
/// weights w / count are divided once per point in float (the reference forms gradY · w first:
/// the same value when the count is a power of two, within an ulp otherwise). RoIs
/// are grouped by image and the (image, channel) planes are split across workers, so each
/// plane is written by one worker only (no races, deterministic).
/// </para>
/// </remarks>
internal static unsafe class RoiAlignCpu
{
    /// <summary>Sample points held by one worker's block buffer (32 bytes each).</summary>
    private const int BlockSamples = 2048;

    /// <summary>Sample points of one run of RoIs on the blocked path (32 bytes each: 128 KiB).</summary>
    private const int ChunkSamples = 4096;

    /// <summary>Test hook: calls started on this thread run this path (see <see cref="RoiKernelPath"/>).</summary>
    [ThreadStatic] internal static RoiKernelPath Path;

    [ThreadStatic] private static Sample[]? t_samples;
    [ThreadStatic] private static int[]? t_offsets;
    [ThreadStatic] private static int[]? t_run;
    [ThreadStatic] private static float[]? t_bins;
    [ThreadStatic] private static float[]? t_stage;

    /// <summary>Geometry of one RoI, in the reference's float32 arithmetic (torchvision's T = float).</summary>
    private readonly struct Roi
    {
        public readonly int Batch;
        public readonly float StartH, StartW, BinH, BinW;
        public readonly int GridH, GridW;
        /// <summary>Sample points per bin, grid_h·grid_w, or 0 when either grid size is ≤ 0.</summary>
        public readonly int Samples;

        public Roi(float* r, in RoiGeometry g, int samplingRatio, bool aligned, int index)
        {
            Batch = (int)r[0];
            // Float, as torchvision's float32 kernel: spatial_scale is passed as T, and
            // offset_rois[i] * spatial_scale - offset is a float product then a float difference.
            float scale = (float)g.SpatialScale;
            float offset = aligned ? 0.5f : 0f;
            StartW = r[1] * scale - offset;
            StartH = r[2] * scale - offset;
            float endW = r[3] * scale - offset;
            float endH = r[4] * scale - offset;
            float width = endW - StartW;
            float height = endH - StartH;
            if (!aligned)
            {
                width = MathF.Max(width, 1f);
                height = MathF.Max(height, 1f);
            }
            // static_cast<T>(roi_height) / static_cast<T>(pooled_height), in float.
            BinH = height / g.PH;
            BinW = width / g.PW;
            // ceil(roi_height / pooled_height): the quotient in float (it decides the grid size),
            // held in double only to range-check it before the int conversion.
            double gridH = samplingRatio > 0 ? samplingRatio : MathF.Ceiling(height / g.PH);
            double gridW = samplingRatio > 0 ? samplingRatio : MathF.Ceiling(width / g.PW);
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

    /// <summary>The geometry of every RoI, in a pooled array (at least K long) the caller returns.</summary>
    private static Roi[] Prepare(float* rois, in RoiGeometry g, int samplingRatio, bool aligned)
    {
        var r = ArrayPool<Roi>.Shared.Rent(g.K);
        for (int k = 0; k < g.K; k++) r[k] = new Roi(rois + (long)k * 5, g, samplingRatio, aligned, k);
        return r;
    }

    /// <summary>
    /// Bilinear neighbours and weights along one axis of a map of <paramref name="size"/>
    /// cells; false when the coordinate is outside [−1, size]. Float, as torchvision's float32
    /// kernel (size compared as a float; l = v − low and h = 1 − l rounded to float).
    /// </summary>
    private static bool Axis(float v, int size, out int low, out int high, out float l, out float h)
    {
        if (v < -1f || v > size)
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
        h = 1f - l;
        return true;
    }

    /// <summary>
    /// Builds every sample point of bins [bin0, bin1) of RoI r back to back into buf; the points of
    /// bin b lie at buf[offs[b − bin0] .. offs[b − bin0 + 1]).
    /// </summary>
    private static void BuildBins(in Roi r, int bin0, int bin1, in RoiGeometry g, float count, Sample* buf, int* offs)
    {
        offs[0] = 0;
        for (int bin = bin0; bin < bin1; bin++)
            offs[bin - bin0 + 1] = offs[bin - bin0] + Build(r, bin / g.PW, bin % g.PW, 0, r.Samples, g.H, g.W, count, buf + offs[bin - bin0]);
    }

    /// <summary>
    /// Writes the sample points [s0, s1) (row-major over the grid) of bin (i, j) of RoI
    /// <paramref name="r"/> to <paramref name="dst"/>; returns how many were written. Forward
    /// (<paramref name="count"/> = 0) keeps invalid points as zero-weight points on cell 0;
    /// backward skips them and divides the weights by <paramref name="count"/> (in float).
    /// Positions and weights are torchvision's float32 expressions, operation by operation.
    /// </summary>
    private static int Build(in Roi r, int i, int j, long s0, long s1, int height, int width, float count, Sample* dst)
    {
        bool backward = count > 0;
        int n = 0;
        int iy = (int)(s0 / r.GridW), ix = (int)(s0 % r.GridW);
        // roi_start_h + ph * bin_size_h: the left operand of the sample position's last addition.
        float rowBase = r.StartH + i * r.BinH;
        float colBase = r.StartW + j * r.BinW;
        for (long s = s0; s < s1; iy++, ix = 0)
        {
            // (roi_start_h + ph * bin_size_h) + static_cast<T>(iy + .5f) * bin_size_h / static_cast<T>(grid_h),
            // every operation in float, the product before the division.
            float y = rowBase + (iy + 0.5f) * r.BinH / r.GridH;
            bool yValid = Axis(y, height, out int yl, out int yh, out float ly, out float hy);
            for (; ix < r.GridW && s < s1; ix++, s++)
            {
                float x = colBase + (ix + 0.5f) * r.BinW / r.GridW;
                bool xValid = Axis(x, width, out int xl, out int xh, out float lx, out float hx);
                if (!(yValid && xValid))
                {
                    if (!backward) dst[n++] = default;
                    continue;
                }
                float w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx;
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
                p.W1 = w1;
                p.W2 = w2;
                p.W3 = w3;
                p.W4 = w4;
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
        try
        {
            if (g.C == 0) return;
            if (UseBlocked(geometry, g, g.K))
            {
                ForwardBlocked(x, y, geometry, g);
                return;
            }
            int groups = (long)g.K * g.C <= int.MaxValue ? g.C : 1;
            long perRoi = 0;
            for (int k = 0; k < g.K; k++) perRoi += geometry[k].Samples;
            long cost = Math.Max(1, perRoi / g.K * g.PH * g.PW * 4);
            var state = (px: (nint)x, py: (nint)y, geometry, g, groups);
            Parallelism.For(g.K * groups, cost, state, static (s, start, end) =>
            {
                var (px, py, geometry, g, groups) = s;
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
        finally
        {
            ArrayPool<Roi>.Shared.Return(geometry);
        }
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
        float count = s;
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
                        yp[bin] = Accumulate(xp, sp, s) / count;
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
            for (int c = c0; c < c1; c++) yk[(long)c * bins + bin] /= count;
        }
    }

    public static void Backward(float* gradY, float* rois, float* gradX, RoiGeometry g, int samplingRatio, bool aligned)
    {
        CheckPlane(g, "gradX");
        Roi[] geometry = Prepare(rois, g, samplingRatio, aligned);
        var (order, first) = RoiImages.Group(rois, g.K, g.N);
        try
        {
            if (g.C == 0) return;
            if (UseBlocked(geometry, g, g.N))
            {
                BackwardBlocked(gradY, gradX, geometry, order, first, g);
                return;
            }
            int groups = (long)g.N * g.C <= int.MaxValue ? g.C : 1;
            long perImage = 0;
            for (int k = 0; k < g.K; k++) perImage += geometry[k].Samples;
            long cost = (long)g.H * g.W + perImage / Math.Max(1, g.N) * g.PH * g.PW * 4;
            var state = (pgy: (nint)gradY, pgx: (nint)gradX, geometry, order, first, g, groups);
            Parallelism.For(g.N * groups, cost, state, static (s, start, end) =>
            {
                var (pgy, pgx, geometry, order, first, g, groups) = s;
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
        finally
        {
            RoiImages.Return(order, first);
            ArrayPool<Roi>.Shared.Return(geometry);
        }
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
            float count = s;
            float* gk = gradY + (long)k * g.C * bins;
            if (s <= BlockSamples)
            {
                int perBlock = BlockSamples / s;
                for (int bin0 = 0; bin0 < bins; bin0 += perBlock)
                {
                    int bin1 = Math.Min(bins, bin0 + perBlock);
                    BuildBins(r, bin0, bin1, g, count, buf, offs);
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

    /// <summary>
    /// Whether to run the channel-blocked path: AVX2, a non-empty plane, and enough sample
    /// points to pay for packing (each point reads four cells; packing touches every cell once).
    /// <paramref name="items"/> is K (forward) or N (backward), the count multiplied by the blocks.
    /// </summary>
    private static bool UseBlocked(Roi[] geometry, in RoiGeometry g, int items)
    {
        if (!RoiChannelBlocks.Supported(g.H, g.W)
            || (long)RoiChannelBlocks.Blocks(g.C) * items > int.MaxValue) return false;
        if (Path != RoiKernelPath.Auto) return Path == RoiKernelPath.Blocked;
        double points = 0;
        for (int k = 0; k < g.K; k++) points += geometry[k].Samples;
        return g.C >= 8 && 4 * points * g.PH * g.PW >= (double)g.N * g.H * g.W;
    }

    /// <summary>
    /// Blocked forward: x is packed to (N, ⌈C/32⌉, H, W, 32); the (RoI, channel block) items
    /// are split across workers in contiguous RoI-major ranges. A worker builds the sample
    /// points of a run of consecutive RoIs (up to <see cref="ChunkSamples"/> points), then
    /// sweeps the channel blocks, each over every RoI of the run, so the points are built once
    /// and one block plane is read for the whole run. A RoI with more points than that is done
    /// alone, its bins (or a bin's points) in pieces.
    /// </summary>
    private static void ForwardBlocked(float* x, float* y, Roi[] geometry, in RoiGeometry g)
    {
        const int width = RoiChannelBlocks.Width;
        using var packed = RoiChannelBlocks.Rent(g.N, g.C, g.H, g.W);
        float* xb = packed.Ptr<float>();
        RoiChannelBlocks.Pack(x, xb, g.N, g.C, g.H, g.W);
        int blocks = RoiChannelBlocks.Blocks(g.C);
        int bins = g.PH * g.PW;
        long cost = Math.Max(1, (long)bins * width);
        var state = (geometry, pb: (nint)xb, py: (nint)y, geo: g);
        Parallelism.For(g.K * blocks, cost, state,
            static (s, start, end) => ForwardBlockedRange(start, end, s.geometry, (float*)s.pb, (float*)s.py, s.geo));
    }

    /// <summary>Blocked forward of RoI k's channel blocks [cb0, cb1) when its points do not fit one run.</summary>
    private static void ForwardLargeRoi(int k, int cb0, int cb1, in Roi r, float* xb, float* y, Sample* buf, in RoiGeometry g)
    {
        const int width = RoiChannelBlocks.Width;
        int blocks = RoiChannelBlocks.Blocks(g.C);
        int bins = g.PH * g.PW;
        long planeLength = (long)g.H * g.W * width;
        float[] accArray = RoiChannelBlocks.Grow(ref t_bins, (long)(cb1 - cb0) * bins * width);
        fixed (float* acc = accArray)
        {
            // acc (cb1 − cb0, bins, 32): every piece of points adds to its bins' sums.
            new Span<float>(acc, (cb1 - cb0) * bins * width).Clear();
            int s = r.Samples;
            if (s <= ChunkSamples)
            {
                int perPiece = ChunkSamples / s;
                for (int bin0 = 0; bin0 < bins; bin0 += perPiece)
                {
                    int bin1 = Math.Min(bins, bin0 + perPiece);
                    for (int bin = bin0; bin < bin1; bin++)
                        Build(r, bin / g.PW, bin % g.PW, 0, s, g.H, g.W, 0, buf + (long)(bin - bin0) * s);
                    for (int cb = cb0; cb < cb1; cb++)
                    {
                        float* plane = xb + ((long)r.Batch * blocks + cb) * planeLength;
                        for (int bin = bin0; bin < bin1; bin++)
                            AccumulateBin(plane, buf + (long)(bin - bin0) * s, s, acc + ((long)(cb - cb0) * bins + bin) * width, first: false, default);
                    }
                }
            }
            else
            {
                for (int bin = 0; bin < bins; bin++)
                {
                    for (long s0 = 0; s0 < s; s0 += ChunkSamples)
                    {
                        int n = Build(r, bin / g.PW, bin % g.PW, s0, Math.Min(s, s0 + ChunkSamples), g.H, g.W, 0, buf);
                        for (int cb = cb0; cb < cb1; cb++)
                            AccumulateBin(xb + ((long)r.Batch * blocks + cb) * planeLength, buf, n, acc + ((long)(cb - cb0) * bins + bin) * width, first: false, default);
                    }
                }
            }
            var count = Vector256.Create((float)s);
            for (int cb = cb0; cb < cb1; cb++)
            {
                float* a = acc + (long)(cb - cb0) * bins * width;
                for (int t = 0; t < bins * width; t += 8) Avx.Store(a + t, Avx.Divide(Avx.LoadVector256(a + t), count));
                int c0 = cb * width;
                RoiChannelBlocks.BinsOut(a, y + ((long)k * g.C + c0) * bins, Math.Min(width, g.C - c0), bins);
            }
        }
    }

    /// <summary>Blocked forward of the (RoI, channel block) items [start, end), RoI-major.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardBlockedRange(int start, int end, Roi[] geometry, float* xb, float* y, in RoiGeometry geo)
    {
        const int width = RoiChannelBlocks.Width;
        int blocks = RoiChannelBlocks.Blocks(geo.C);
        int bins = geo.PH * geo.PW;
        Sample[] sampleArray = RoiChannelBlocks.Grow(ref t_samples, ChunkSamples);
        int[] runArray = RoiChannelBlocks.Grow(ref t_run, ChunkSamples + 1);
        fixed (Sample* buf = sampleArray)
        fixed (int* runStart = runArray)
        {
            for (int i = start; i < end;)
            {
                int k0 = i / blocks;
                if ((long)geometry[k0].Samples * bins > ChunkSamples)
                {
                    int cbEnd = Math.Min(blocks, end - k0 * blocks);
                    ForwardLargeRoi(k0, i - k0 * blocks, cbEnd, geometry[k0], xb, y, buf, geo);
                    i = k0 * blocks + cbEnd;
                    continue;
                }
                // The run: RoIs k0 .. k1 − 1, RoI k's points at buf[runStart[k − k0] ..].
                int kLast = (end - 1) / blocks, k1 = k0, used = 0;
                while (k1 <= kLast && k1 - k0 < ChunkSamples)
                {
                    ref readonly Roi r = ref geometry[k1];
                    long need = (long)r.Samples * bins;
                    if (used + need > ChunkSamples) break;
                    runStart[k1 - k0] = used;
                    for (int bin = 0; bin < bins && r.Samples > 0; bin++)
                        Build(r, bin / geo.PW, bin % geo.PW, 0, r.Samples, geo.H, geo.W, 0, buf + used + (long)bin * r.Samples);
                    used += (int)need;
                    k1++;
                }
                float[] accArray = RoiChannelBlocks.Grow(ref t_bins, (long)bins * width);
                float[] stageArray = RoiChannelBlocks.Grow(ref t_stage, (long)bins * width);
                fixed (float* acc = accArray)
                fixed (float* stage = stageArray)
                {
                    for (int cb = 0; cb < blocks; cb++)
                    {
                        int c0 = cb * width;
                        for (int k = k0; k < k1; k++)
                        {
                            int item = k * blocks + cb;
                            if (item < start || item >= end) continue;
                            ref readonly Roi r = ref geometry[k];
                            float* plane = xb + ((long)r.Batch * blocks + cb) * geo.H * geo.W * width;
                            Sample* sp = buf + runStart[k - k0];
                            // A RoI without points gives 0 (its sums stay 0; 1 avoids 0 / 0).
                            var count = Vector256.Create((float)Math.Max(1, r.Samples));
                            for (int bin = 0; bin < bins; bin++, sp += r.Samples)
                                AccumulateBin(plane, sp, r.Samples, acc + bin * width, first: true, count);
                            int channels = Math.Min(width, geo.C - c0);
                            RoiChannelBlocks.BinsOut(acc, stage, channels, bins);
                            RoiChannelBlocks.Stream((byte*)stage, (byte*)(y + ((long)k * geo.C + c0) * bins), (long)channels * bins * sizeof(float));
                        }
                    }
                }
                i = Math.Min(end, k1 * blocks);
            }
        }
        Sse.StoreFence();
    }

    /// <summary>
    /// Adds the n sample points at <paramref name="s"/> of one bin, over a block plane, to the 32
    /// channel sums at <paramref name="acc"/> (<paramref name="first"/>: the sums start at 0 and are
    /// divided by <paramref name="count"/> when stored). Per lane each point adds
    /// w1·v1 + w2·v2 + w3·v3 + w4·v4, as the scalar path (with fused multiply-adds).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AccumulateBin(float* plane, Sample* s, int n, float* acc, bool first, Vector256<float> count)
    {
        const int width = RoiChannelBlocks.Width;
        Vector256<float> a0, a1, a2, a3;
        if (first)
        {
            a0 = a1 = a2 = a3 = Vector256<float>.Zero;
        }
        else
        {
            a0 = Avx.LoadVector256(acc);
            a1 = Avx.LoadVector256(acc + 8);
            a2 = Avx.LoadVector256(acc + 16);
            a3 = Avx.LoadVector256(acc + 24);
        }
        for (int t = 0; t < n; t++)
        {
            float* p1 = plane + (long)s[t].P1 * width;
            float* p2 = plane + (long)s[t].P2 * width;
            float* p3 = plane + (long)s[t].P3 * width;
            float* p4 = plane + (long)s[t].P4 * width;
            var w1 = Vector256.Create(s[t].W1);
            var w2 = Vector256.Create(s[t].W2);
            var w3 = Vector256.Create(s[t].W3);
            var w4 = Vector256.Create(s[t].W4);
            a0 = Avx.Add(a0, Fma.MultiplyAdd(w4, Avx.LoadAlignedVector256(p4), Fma.MultiplyAdd(w3, Avx.LoadAlignedVector256(p3),
                Fma.MultiplyAdd(w2, Avx.LoadAlignedVector256(p2), Avx.Multiply(w1, Avx.LoadAlignedVector256(p1))))));
            a1 = Avx.Add(a1, Fma.MultiplyAdd(w4, Avx.LoadAlignedVector256(p4 + 8), Fma.MultiplyAdd(w3, Avx.LoadAlignedVector256(p3 + 8),
                Fma.MultiplyAdd(w2, Avx.LoadAlignedVector256(p2 + 8), Avx.Multiply(w1, Avx.LoadAlignedVector256(p1 + 8))))));
            a2 = Avx.Add(a2, Fma.MultiplyAdd(w4, Avx.LoadAlignedVector256(p4 + 16), Fma.MultiplyAdd(w3, Avx.LoadAlignedVector256(p3 + 16),
                Fma.MultiplyAdd(w2, Avx.LoadAlignedVector256(p2 + 16), Avx.Multiply(w1, Avx.LoadAlignedVector256(p1 + 16))))));
            a3 = Avx.Add(a3, Fma.MultiplyAdd(w4, Avx.LoadAlignedVector256(p4 + 24), Fma.MultiplyAdd(w3, Avx.LoadAlignedVector256(p3 + 24),
                Fma.MultiplyAdd(w2, Avx.LoadAlignedVector256(p2 + 24), Avx.Multiply(w1, Avx.LoadAlignedVector256(p1 + 24))))));
        }
        if (first)
        {
            a0 = Avx.Divide(a0, count);
            a1 = Avx.Divide(a1, count);
            a2 = Avx.Divide(a2, count);
            a3 = Avx.Divide(a3, count);
        }
        Avx.Store(acc, a0);
        Avx.Store(acc + 8, a1);
        Avx.Store(acc + 16, a2);
        Avx.Store(acc + 24, a3);
    }

    /// <summary>
    /// Blocked backward: gradients accumulate in a (N, ⌈C/32⌉, H, W, 32) scratch map; the
    /// (image, channel block) planes are split across workers in contiguous ranges, so each
    /// plane is written by one worker only (no races, deterministic). A worker builds the
    /// points of a run of its image's RoIs (in increasing order, up to <see cref="ChunkSamples"/>
    /// points) once, then for each of its blocks adds every RoI of the run, bin by bin, point by
    /// point: per lane the scalar path's order. Finally it unpacks its planes into gradX.
    /// </summary>
    private static void BackwardBlocked(float* gradY, float* gradX, Roi[] geometry, int[] order, int[] first, in RoiGeometry g)
    {
        const int width = RoiChannelBlocks.Width;
        using var packed = RoiChannelBlocks.Rent(g.N, g.C, g.H, g.W);
        int blocks = RoiChannelBlocks.Blocks(g.C);
        int bins = g.PH * g.PW;
        long plane = (long)g.H * g.W;
        long cost = plane * width + (long)g.K / Math.Max(1, g.N) * bins * width;
        var state = (geometry, order, first, pb: (nint)packed.Ptr<float>(), pgy: (nint)gradY, pgx: (nint)gradX, geo: g);
        Parallelism.For(g.N * blocks, cost, state,
            static (s, start, end) => BackwardBlockedRange(start, end, s.geometry, s.order, s.first, (float*)s.pb, (float*)s.pgy, (float*)s.pgx, s.geo));
    }

    /// <summary>Blocked backward of RoI k into block planes [cb0, cb1) of its image when its points do not fit one run.</summary>
    private static void BackwardLargeRoi(int k, int cb0, int cb1, in Roi r, float* gradY, float* gb, Sample* buf, int* offs, float* gyBins, in RoiGeometry g)
    {
        const int width = RoiChannelBlocks.Width;
        int bins = g.PH * g.PW;
        long planeLength = (long)g.H * g.W * width;
        int s = r.Samples;
        float count = s;
        if (s <= ChunkSamples)
        {
            int perPiece = ChunkSamples / s;
            for (int bin0 = 0; bin0 < bins; bin0 += perPiece)
            {
                int bin1 = Math.Min(bins, bin0 + perPiece);
                BuildBins(r, bin0, bin1, g, count, buf, offs);
                for (int cb = cb0; cb < cb1; cb++)
                {
                    int c0 = cb * width;
                    RoiChannelBlocks.BinsIn(gradY + ((long)k * g.C + c0) * bins, gyBins, Math.Min(width, g.C - c0), bins);
                    for (int bin = bin0; bin < bin1; bin++)
                        ScatterBin(gb + cb * planeLength, gyBins + bin * width, buf + offs[bin - bin0], offs[bin - bin0 + 1] - offs[bin - bin0]);
                }
            }
            return;
        }
        for (int bin = 0; bin < bins; bin++)
        {
            for (long s0 = 0; s0 < s; s0 += ChunkSamples)
            {
                int n = Build(r, bin / g.PW, bin % g.PW, s0, Math.Min(s, s0 + ChunkSamples), g.H, g.W, count, buf);
                for (int cb = cb0; cb < cb1; cb++)
                {
                    int c0 = cb * width;
                    RoiChannelBlocks.BinsIn(gradY + ((long)k * g.C + c0) * bins, gyBins, Math.Min(width, g.C - c0), bins);
                    ScatterBin(gb + cb * planeLength, gyBins + bin * width, buf, n);
                }
            }
        }
    }

    /// <summary>Blocked backward of the (image, channel block) planes [start, end), image-major.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardBlockedRange(int start, int end, Roi[] geometry, int[] order, int[] first, float* gxb, float* gradY, float* gradX, in RoiGeometry geo)
    {
        const int width = RoiChannelBlocks.Width;
        int blocks = RoiChannelBlocks.Blocks(geo.C);
        int bins = geo.PH * geo.PW;
        long plane = (long)geo.H * geo.W;
        Sample[] sampleArray = RoiChannelBlocks.Grow(ref t_samples, ChunkSamples);
        int[] offsetArray = RoiChannelBlocks.Grow(ref t_offsets, ChunkSamples + 1);
        int[] runArray = RoiChannelBlocks.Grow(ref t_run, 2 * ChunkSamples);
        float[] gyArray = RoiChannelBlocks.Grow(ref t_bins, (long)bins * width);
        fixed (Sample* buf = sampleArray)
        fixed (int* offs = offsetArray)
        fixed (int* run = runArray)
        fixed (float* gyBins = gyArray)
        {
            for (int b = start / blocks; b <= (end - 1) / blocks; b++)
            {
                int cb0 = Math.Max(start - b * blocks, 0), cb1 = Math.Min(end - b * blocks, blocks);
                float* gb = gxb + (long)b * blocks * plane * width;
                NativeMemory.Clear(gb + cb0 * plane * width, (nuint)((cb1 - cb0) * plane * width * sizeof(float)));
                ReadOnlySpan<int> imageRois = order.AsSpan(first[b], first[b + 1] - first[b]);
                for (int idx = 0; idx < imageRois.Length;)
                {
                    ref readonly Roi r0 = ref geometry[imageRois[idx]];
                    if ((long)r0.Samples * bins > ChunkSamples)
                    {
                        BackwardLargeRoi(imageRois[idx], cb0, cb1, r0, gradY, gb, buf, offs, gyBins, geo);
                        idx++;
                        continue;
                    }
                    // The run: RoI run[2q] has its bins' points at buf[offs[run[2q + 1] + bin] .. offs[run[2q + 1] + bin + 1]).
                    int runLength = 0, binCount = 0;
                    offs[0] = 0;
                    long budget = 0;
                    for (; idx < imageRois.Length && runLength < ChunkSamples; idx++)
                    {
                        ref readonly Roi r = ref geometry[imageRois[idx]];
                        long need = (long)r.Samples * bins;
                        if (need > ChunkSamples || budget + need > ChunkSamples) break;
                        if (r.Samples == 0) continue;
                        budget += need;
                        run[2 * runLength] = imageRois[idx];
                        run[2 * runLength + 1] = binCount;
                        runLength++;
                        float count = r.Samples;
                        for (int bin = 0; bin < bins; bin++, binCount++)
                            offs[binCount + 1] = offs[binCount] + Build(r, bin / geo.PW, bin % geo.PW, 0, r.Samples, geo.H, geo.W, count, buf + offs[binCount]);
                    }
                    for (int cb = cb0; cb < cb1; cb++)
                    {
                        float* gp = gb + cb * plane * width;
                        int c0 = cb * width;
                        for (int q = 0; q < runLength; q++)
                        {
                            int k = run[2 * q];
                            RoiChannelBlocks.BinsIn(gradY + ((long)k * geo.C + c0) * bins, gyBins, Math.Min(width, geo.C - c0), bins);
                            int* o = offs + run[2 * q + 1];
                            for (int bin = 0; bin < bins; bin++)
                                ScatterBin(gp, gyBins + bin * width, buf + o[bin], o[bin + 1] - o[bin]);
                        }
                    }
                }
                for (int cb = cb0; cb < cb1; cb++)
                {
                    int c0 = cb * width;
                    RoiChannelBlocks.UnpackBlock(gb + cb * plane * width, gradX + ((long)b * geo.C + c0) * plane, Math.Min(width, geo.C - c0), plane);
                }
            }
        }
    }

    /// <summary>
    /// Adds gy (32 lanes at <paramref name="gy"/>) times each point's weights to its four
    /// neighbours in a block plane, point by point and neighbour by neighbour (neighbours may
    /// coincide at the border, so each is read after the previous one is written).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ScatterBin(float* plane, float* gy, Sample* s, int n)
    {
        const int width = RoiChannelBlocks.Width;
        var g0 = Avx.LoadVector256(gy);
        var g1 = Avx.LoadVector256(gy + 8);
        var g2 = Avx.LoadVector256(gy + 16);
        var g3 = Avx.LoadVector256(gy + 24);
        for (int t = 0; t < n; t++)
        {
            Tap(plane + (long)s[t].P1 * width, Vector256.Create(s[t].W1), g0, g1, g2, g3);
            Tap(plane + (long)s[t].P2 * width, Vector256.Create(s[t].W2), g0, g1, g2, g3);
            Tap(plane + (long)s[t].P3 * width, Vector256.Create(s[t].W3), g0, g1, g2, g3);
            Tap(plane + (long)s[t].P4 * width, Vector256.Create(s[t].W4), g0, g1, g2, g3);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tap(float* cell, Vector256<float> w, Vector256<float> g0, Vector256<float> g1, Vector256<float> g2, Vector256<float> g3)
    {
        Avx.StoreAligned(cell, Fma.MultiplyAdd(g0, w, Avx.LoadAlignedVector256(cell)));
        Avx.StoreAligned(cell + 8, Fma.MultiplyAdd(g1, w, Avx.LoadAlignedVector256(cell + 8)));
        Avx.StoreAligned(cell + 16, Fma.MultiplyAdd(g2, w, Avx.LoadAlignedVector256(cell + 16)));
        Avx.StoreAligned(cell + 24, Fma.MultiplyAdd(g3, w, Avx.LoadAlignedVector256(cell + 24)));
    }
}
