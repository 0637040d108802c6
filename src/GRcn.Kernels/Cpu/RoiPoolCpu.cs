// roi_pool on the CPU, exactly as torchvision.ops.roi_pool's float32 kernel
// (csrc/ops/cpu/roi_pool_kernel.cpp with T = float): bin and coordinate arithmetic is float32
// as torchvision's float kernel does it (spatial_scale converted to float, RoI coordinates
// scaled in float and rounded half away from zero, bin sizes divided and bins cut with
// floor/ceil in float), max pooling keeps the first strictly greater value. x (N, C, H, W),
// rois (K, 5) → y, argmax (K, C, ph, pw). Forward scans 32 channels at a time with AVX2 on a
// channel-blocked copy of x (workers take contiguous runs of (channel block, RoI) items), or
// per channel where that does not pay; backward scatters per (image, channel) plane.
using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GRcn.Kernels.Cpu;

internal sealed unsafe partial class CpuBackend : IRoiPoolBackend
{
    public void RoiPoolForward(Tensor x, Tensor rois, Tensor y, Tensor argmax, in RoiGeometry g) =>
        RoiPoolCpu.Forward(x.Ptr<float>(), rois.Ptr<float>(), y.Ptr<float>(), argmax.Ptr<long>(), g);

    public void RoiPoolBackward(Tensor gradY, Tensor rois, Tensor argmax, Tensor gradX, in RoiGeometry g) =>
        RoiPoolCpu.Backward(gradY.Ptr<float>(), rois.Ptr<float>(), argmax.Ptr<long>(), gradX.Ptr<float>(), g);
}

/// <summary>RoI max pooling kernels on host memory.</summary>
/// <remarks>
/// <para>
/// Forward: x (N, C, H, W), rois (K, 5) rows [b, x1, y1, x2, y2] → y and argmax (K, C, ph, pw).
/// For RoI k, with s = (float)spatial_scale, start = round(x1·s), end = round(x2·s) (the product
/// in float, C <c>round</c>: half away from zero), roi_w = max(end − start + 1, 1) (integers),
/// bin_w = (float)roi_w / (float)pw in float; bin j spans [floor((float)j·bin_w),
/// ceil((float)(j+1)·bin_w)) + start clipped to [0, W), products in float (likewise
/// vertically). Float, as torchvision's float32 kernel: a RoI 29 cells long cut into 7 bins
/// ends its last bin at ceil(7·(29f/7f)) = 29, where double arithmetic would give 30.
/// An empty bin gives 0 and argmax −1; otherwise the maximum starts at −FLT_MAX and a cell
/// wins only when strictly greater (the first maximum in row-major order wins; NaN and −∞
/// never win, so a bin of only those gives −FLT_MAX and argmax −1). argmax = h·W + w.
/// The bin edges of every RoI are computed once per call. Blocked path (AVX2, enough work to
/// pay for packing): x is packed to (N, ⌈C/32⌉, H, W, 32) and the (channel block, RoI) items,
/// block-major, are split across workers in contiguous ranges; each item scans its bins for
/// 32 channels at once with the same per-lane rule (ordered compare, blend), reorders the
/// (bins, 32) results to the (32, bins) runs of y and argmax and streams them out with
/// non-temporal stores. Scalar path: the (RoI, channel) pairs are split across workers in
/// contiguous ranges.
/// </para>
/// <para>
/// Backward: gradX (N, C, H, W) = 0, then gradX[b, c, argmax] += gradY for every bin with
/// argmax ≥ 0, RoIs in increasing order (the reference's summation order). RoIs are grouped
/// by image and the (image, channel) planes are split across workers, so each plane of gradX
/// is written by one worker only (no races, deterministic); a worker adds every RoI to a tile
/// of about 256 KiB of its planes before moving to the next tile. An argmax value that is neither
/// −1 nor a cell of the plane is skipped and reported afterwards as an ArgumentException.
/// </para>
/// </remarks>
internal static unsafe class RoiPoolCpu
{
    /// <summary>Test hook: calls started on this thread run this path (see <see cref="RoiKernelPath"/>).</summary>
    [ThreadStatic] internal static RoiKernelPath Path;

    [ThreadStatic] private static float[]? t_binMax;
    [ThreadStatic] private static int[]? t_binArg;
    [ThreadStatic] private static float[]? t_outMax;
    [ThreadStatic] private static long[]? t_outArg;

    /// <summary>
    /// Bin edges of every RoI into <paramref name="edges"/>: per RoI, ph (start, end) row pairs
    /// then pw (start, end) column pairs, clipped. Returns the cells all bins of all RoIs cover
    /// in one channel (the work of a pass over the bins).
    /// </summary>
    private static long BinEdges(float* rois, int* edges, in RoiGeometry g)
    {
        int stride = 2 * (g.PH + g.PW);
        // torchvision's kernel takes spatial_scale as T: float for float32 tensors.
        float scale = (float)g.SpatialScale;
        long cells = 0;
        for (int k = 0; k < g.K; k++)
        {
            float* r = rois + (long)k * 5;
            int* e = edges + (long)k * stride;
            Axis(r[2], r[4], scale, g.PH, g.H, e);
            Axis(r[1], r[3], scale, g.PW, g.W, e + 2 * g.PH);
            long rows = 0, cols = 0;
            for (int i = 0; i < g.PH; i++) rows += Math.Max(0, e[2 * i + 1] - e[2 * i]);
            for (int j = 0; j < g.PW; j++) cols += Math.Max(0, e[2 * g.PH + 2 * j + 1] - e[2 * g.PH + 2 * j]);
            cells += rows * cols;
        }
        return cells;
    }

    /// <summary>
    /// Bin edges along one axis, in torchvision's float32 arithmetic (roi_pool_kernel.cpp with
    /// T = float). The rounded coordinates and the integer arithmetic on them (start, end,
    /// length, the offset added to each edge) are held in double, which is exact for every
    /// in-range coordinate and saturates sensibly (clipped) for absurd ones where the
    /// reference's int would overflow.
    /// </summary>
    private static void Axis(float lo, float hi, float scale, int bins, int size, int* edges)
    {
        // round(offset_rois[i] * spatial_scale): float product, C round (half away from zero).
        double start = MathF.Round(lo * scale, MidpointRounding.AwayFromZero);
        double end = MathF.Round(hi * scale, MidpointRounding.AwayFromZero);
        double length = Math.Max(end - start + 1, 1);
        // bin_size = static_cast<T>(roi_len) / static_cast<T>(pooled): a float division.
        float bin = (float)length / bins;
        for (int i = 0; i < bins; i++)
        {
            // floor(static_cast<T>(i) * bin_size), ceil(static_cast<T>(i + 1) * bin_size), in float.
            double s = MathF.Floor((float)i * bin) + start;
            double e = MathF.Ceiling((float)(i + 1) * bin) + start;
            edges[2 * i] = (int)Math.Clamp(s, 0, size);
            edges[2 * i + 1] = (int)Math.Clamp(e, 0, size);
        }
    }

    public static void Forward(float* x, float* rois, float* y, long* argmax, RoiGeometry g)
    {
        if (g.C == 0) return;
        int stride = 2 * (g.PH + g.PW);
        int[] edgeArray = ArrayPool<int>.Shared.Rent(checked(g.K * stride));
        try
        {
            fixed (int* edges = edgeArray)
            {
                long cells = BinEdges(rois, edges, g);
                // Packing costs about one pass over every input cell; the blocked scan is many
                // times cheaper per cell than the scalar one, so it pays once the bins cover
                // half the map's cells per channel.
                bool blocked = Path switch
                {
                    RoiKernelPath.Scalar => false,
                    RoiKernelPath.Blocked => true,
                    _ => g.C >= 8 && 2 * cells >= (long)g.N * g.H * g.W,
                };
                if (blocked && RoiChannelBlocks.Supported(g.H, g.W) && (long)RoiChannelBlocks.Blocks(g.C) * g.K <= int.MaxValue)
                    ForwardBlocked(x, rois, y, argmax, edges, g);
                else
                    ForwardScalar(x, rois, y, argmax, edges, g);
            }
        }
        finally
        {
            ArrayPool<int>.Shared.Return(edgeArray);
        }
    }

    private static void ForwardScalar(float* x, float* rois, float* y, long* argmax, int* edges, in RoiGeometry g)
    {
        int groups = (long)g.K * g.C <= int.MaxValue ? g.C : 1;
        long plane = (long)g.H * g.W;
        long cost = Math.Max(1, Math.Min(plane, 4L * g.PH * g.PW + plane));
        int stride = 2 * (g.PH + g.PW);
        var state = (px: (nint)x, pr: (nint)rois, py: (nint)y, pa: (nint)argmax, pe: (nint)edges, geo: g, groups, stride);
        Parallelism.For(g.K * groups, cost, state, static (s, start, end) =>
        {
            var (px, pr, py, pa, pe, geo, groups, stride) = s;
            for (int i = start; i < end;)
            {
                int k = i / groups;
                int segEnd = Math.Min(end, (k + 1) * groups);
                int c0 = (int)((long)(i - k * groups) * geo.C / groups);
                int c1 = (int)((long)(segEnd - k * groups) * geo.C / groups);
                ForwardRoi(k, c0, c1, (float*)px, (float*)pr, (float*)py, (long*)pa, (int*)pe + (long)k * stride, geo);
                i = segEnd;
            }
        });
    }

    private static void ForwardRoi(int k, int c0, int c1, float* x, float* rois, float* y, long* argmax, int* edges, in RoiGeometry g)
    {
        int b = (int)rois[(long)k * 5];
        int bins = g.PH * g.PW;
        long plane = (long)g.H * g.W;
        int* rowEdges = edges;
        int* colEdges = edges + 2 * g.PH;
        for (int c = c0; c < c1; c++)
        {
            float* xp = x + ((long)b * g.C + c) * plane;
            long o = ((long)k * g.C + c) * bins;
            float* yp = y + o;
            long* ap = argmax + o;
            for (int i = 0; i < g.PH; i++)
            {
                int hs = rowEdges[2 * i], he = rowEdges[2 * i + 1];
                for (int j = 0; j < g.PW; j++)
                {
                    int ws = colEdges[2 * j], we = colEdges[2 * j + 1];
                    int bin = i * g.PW + j;
                    if (he <= hs || we <= ws)
                    {
                        yp[bin] = 0f;
                        ap[bin] = -1;
                        continue;
                    }
                    float max = -float.MaxValue;
                    long arg = -1;
                    for (int h = hs; h < he; h++)
                    {
                        float* row = xp + (long)h * g.W;
                        for (int w = ws; w < we; w++)
                        {
                            if (row[w] > max)
                            {
                                max = row[w];
                                arg = (long)h * g.W + w;
                            }
                        }
                    }
                    yp[bin] = max;
                    ap[bin] = arg;
                }
            }
        }
    }

    /// <summary>
    /// The blocked path: x is packed to (N, ⌈C/32⌉, H, W, 32) and each (channel block, RoI)
    /// pair scans its bins 32 channels at a time, the items ordered block-major so a worker
    /// keeps one block plane in cache across all RoIs.
    /// </summary>
    private static void ForwardBlocked(float* x, float* rois, float* y, long* argmax, int* edges, in RoiGeometry g)
    {
        const int width = RoiChannelBlocks.Width;
        using var packed = RoiChannelBlocks.Rent(g.N, g.C, g.H, g.W);
        float* xb = packed.Ptr<float>();
        RoiChannelBlocks.Pack(x, xb, g.N, g.C, g.H, g.W);
        int blocks = RoiChannelBlocks.Blocks(g.C);
        long cost = Math.Max(1, (long)g.PH * g.PW * width);
        var state = (pb: (nint)xb, pr: (nint)rois, py: (nint)y, pa: (nint)argmax, pe: (nint)edges, geo: g);
        Parallelism.For(blocks * g.K, cost, state,
            static (s, start, end) => ForwardBlockedRange(start, end, (float*)s.pb, (float*)s.pr, (float*)s.py, (long*)s.pa, (int*)s.pe, s.geo));
    }

    /// <summary>
    /// Max and argmax of every bin of one RoI over one block plane (H·W cells of 32 channels),
    /// into binMax and binArg (bins, 32). Per lane this is the scalar scan: the maximum starts
    /// at −FLT_MAX with argmax −1 and a cell replaces it only when strictly greater (an ordered
    /// comparison, so NaN never wins), cells in row-major order; an empty bin gives 0 and −1.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScanBlock(float* plane, int* edges, float* binMax, int* binArg, in RoiGeometry g)
    {
        const int width = RoiChannelBlocks.Width;
        int* rowEdges = edges;
        int* colEdges = edges + 2 * g.PH;
        var lowest = Vector256.Create(-float.MaxValue);
        var none = Vector256.Create(-1).AsSingle();
        var one = Vector256.Create(1);
        for (int i = 0; i < g.PH; i++)
        {
            int hs = rowEdges[2 * i], he = rowEdges[2 * i + 1];
            for (int j = 0; j < g.PW; j++)
            {
                int ws = colEdges[2 * j], we = colEdges[2 * j + 1];
                float* om = binMax + (i * g.PW + j) * width;
                float* oa = (float*)(binArg + (i * g.PW + j) * width);
                if (he <= hs || we <= ws)
                {
                    for (int l = 0; l < width; l += 8)
                    {
                        Avx.Store(om + l, Vector256<float>.Zero);
                        Avx.Store(oa + l, none);
                    }
                    continue;
                }
                Vector256<float> m0 = lowest, m1 = lowest, m2 = lowest, m3 = lowest;
                Vector256<float> a0 = none, a1 = none, a2 = none, a3 = none;
                for (int h = hs; h < he; h++)
                {
                    float* cell = plane + ((long)h * g.W + ws) * width;
                    // The argmax of lane l is the flat cell index h·W + w, as int32 bits in a float vector.
                    var index = Vector256.Create(h * g.W + ws);
                    for (int w = ws; w < we; w++, cell += width, index = Avx2.Add(index, one))
                    {
                        var v0 = Avx.LoadAlignedVector256(cell);
                        var v1 = Avx.LoadAlignedVector256(cell + 8);
                        var v2 = Avx.LoadAlignedVector256(cell + 16);
                        var v3 = Avx.LoadAlignedVector256(cell + 24);
                        var g0 = Avx.Compare(v0, m0, FloatComparisonMode.OrderedGreaterThanNonSignaling);
                        var g1 = Avx.Compare(v1, m1, FloatComparisonMode.OrderedGreaterThanNonSignaling);
                        var g2 = Avx.Compare(v2, m2, FloatComparisonMode.OrderedGreaterThanNonSignaling);
                        var g3 = Avx.Compare(v3, m3, FloatComparisonMode.OrderedGreaterThanNonSignaling);
                        var fi = index.AsSingle();
                        m0 = Avx.BlendVariable(m0, v0, g0);
                        m1 = Avx.BlendVariable(m1, v1, g1);
                        m2 = Avx.BlendVariable(m2, v2, g2);
                        m3 = Avx.BlendVariable(m3, v3, g3);
                        a0 = Avx.BlendVariable(a0, fi, g0);
                        a1 = Avx.BlendVariable(a1, fi, g1);
                        a2 = Avx.BlendVariable(a2, fi, g2);
                        a3 = Avx.BlendVariable(a3, fi, g3);
                    }
                }
                Avx.Store(om, m0);
                Avx.Store(om + 8, m1);
                Avx.Store(om + 16, m2);
                Avx.Store(om + 24, m3);
                Avx.Store(oa, a0);
                Avx.Store(oa + 8, a1);
                Avx.Store(oa + 16, a2);
                Avx.Store(oa + 24, a3);
            }
        }
    }

    /// <summary>Blocked forward of the (channel block, RoI) items [start, end), block-major.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardBlockedRange(int start, int end, float* xb, float* rois, float* y, long* argmax, int* edges, in RoiGeometry geo)
    {
        const int width = RoiChannelBlocks.Width;
        int blocks = RoiChannelBlocks.Blocks(geo.C);
        int bins = geo.PH * geo.PW;
        int stride = 2 * (geo.PH + geo.PW);
        float[] maxArray = RoiChannelBlocks.Grow(ref t_binMax, (long)bins * width);
        int[] argArray = RoiChannelBlocks.Grow(ref t_binArg, (long)bins * width);
        float[] outMaxArray = RoiChannelBlocks.Grow(ref t_outMax, (long)bins * width);
        long[] outArgArray = RoiChannelBlocks.Grow(ref t_outArg, (long)bins * width);
        fixed (float* binMax = maxArray)
        fixed (int* binArg = argArray)
        fixed (float* outMax = outMaxArray)
        fixed (long* outArg = outArgArray)
        {
            for (int i = start; i < end; i++)
            {
                int cb = i / geo.K, k = i % geo.K;
                int b = (int)(rois)[(long)k * 5];
                float* plane = xb + ((long)b * blocks + cb) * geo.H * geo.W * width;
                ScanBlock(plane, edges + (long)k * stride, binMax, binArg, geo);
                int c0 = cb * width, count = Math.Min(width, geo.C - c0);
                long o = ((long)k * geo.C + c0) * bins;
                RoiChannelBlocks.BinsOut(binMax, outMax, count, bins);
                RoiChannelBlocks.BinsOut(binArg, outArg, count, bins);
                RoiChannelBlocks.Stream((byte*)outMax, (byte*)(y + o), (long)count * bins * sizeof(float));
                RoiChannelBlocks.Stream((byte*)outArg, (byte*)(argmax + o), (long)count * bins * sizeof(long));
            }
        }
        Sse.StoreFence();
    }

    public static void Backward(float* gradY, float* rois, long* argmax, float* gradX, RoiGeometry g)
    {
        long plane = (long)g.H * g.W;
        var (order, first) = RoiImages.Group(rois, g.K, g.N);
        try
        {
            int groups = (long)g.N * g.C <= int.MaxValue ? g.C : 1;
            if (groups == 0) return;
            long cost = plane + (long)g.K / Math.Max(1, g.N) * g.PH * g.PW;
            int invalid = 0;
            var state = (pgy: (nint)gradY, pa: (nint)argmax, pgx: (nint)gradX, order, first, g, groups, invalid: (nint)(&invalid));
            Parallelism.For(g.N * groups, cost, state, static (s, start, end) =>
            {
                var (pgy, pa, pgx, order, first, g, groups, _) = s;
                for (int i = start; i < end;)
                {
                    int b = i / groups;
                    int segEnd = Math.Min(end, (b + 1) * groups);
                    int c0 = (int)((long)(i - b * groups) * g.C / groups);
                    int c1 = (int)((long)(segEnd - b * groups) * g.C / groups);
                    if (!BackwardImage(b, c0, c1, (float*)pgy, (long*)pa, (float*)pgx, order.AsSpan(first[b], first[b + 1] - first[b]), g))
                        Volatile.Write(ref *(int*)s.invalid, 1);
                    i = segEnd;
                }
            });
            if (invalid != 0) ThrowBadArgmax(argmax, (long)g.K * g.C * g.PH * g.PW, plane);
        }
        finally
        {
            RoiImages.Return(order, first);
        }
    }

    /// <summary>
    /// Zeroes image <paramref name="b"/>'s channels [c0, c1) of gradX and scatters its RoIs'
    /// gradients into them. Returns false when an argmax value is neither −1 nor a cell of
    /// the plane (such bins are skipped).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool BackwardImage(int b, int c0, int c1, float* gradY, long* argmax, float* gradX, ReadOnlySpan<int> imageRois, in RoiGeometry g)
    {
        long plane = (long)g.H * g.W;
        int bins = g.PH * g.PW;
        bool valid = true;
        // Channels in tiles of about 256 KiB of gradX, so the tile stays in L2 while every RoI of
        // the image adds to it and each RoI's (tile, bins) run of argmax and gradY is read in order.
        int tile = (int)Math.Clamp(65536 / Math.Max(1, plane), 1, 64);
        for (int t0 = c0; t0 < c1; t0 += tile)
        {
            int t1 = Math.Min(c1, t0 + tile);
            NativeMemory.Clear(gradX + ((long)b * g.C + t0) * plane, (nuint)((t1 - t0) * plane * sizeof(float)));
            foreach (int k in imageRois)
            {
                for (int c = t0; c < t1; c++)
                {
                    float* gx = gradX + ((long)b * g.C + c) * plane;
                    long o = ((long)k * g.C + c) * bins;
                    float* gy = gradY + o;
                    long* ap = argmax + o;
                    for (int bin = 0; bin < bins; bin++)
                    {
                        long a = ap[bin];
                        if ((ulong)a < (ulong)plane) gx[a] += gy[bin];
                        else if (a != -1) valid = false;
                    }
                }
            }
        }
        return valid;
    }

    private static void ThrowBadArgmax(long* argmax, long count, long plane)
    {
        for (long i = 0; i < count; i++)
        {
            long a = argmax[i];
            if (a < -1 || a >= plane)
                throw new ArgumentException(
                    $"argmax holds {a} at flat index {i}; expected -1 or a cell index in [0, {plane}) of the H*W input plane, as returned by RoiPool.Forward",
                    "argmax");
        }
    }
}

/// <summary>RoIs grouped by the image they belong to (stable, so RoI order is kept within an image).</summary>
internal static unsafe class RoiImages
{
    /// <summary>
    /// Returns <c>order</c> (RoI indices sorted by batch index, stable) and <c>first</c> (N + 1
    /// offsets: image b's RoIs are order[first[b] .. first[b + 1])), in pooled arrays (possibly
    /// longer) that the caller gives back with <see cref="Return"/>.
    /// </summary>
    public static (int[] Order, int[] First) Group(float* rois, int k, int n)
    {
        var first = ArrayPool<int>.Shared.Rent(n + 1);
        var order = ArrayPool<int>.Shared.Rent(Math.Max(k, 1));
        Array.Clear(first, 0, n + 1);
        for (int i = 0; i < k; i++) first[(int)rois[(long)i * 5] + 1]++;
        for (int b = 0; b < n; b++) first[b + 1] += first[b];
        // Fill with first[b] as image b's cursor (ending at image b + 1's offset), then shift back.
        for (int i = 0; i < k; i++) order[first[(int)rois[(long)i * 5]]++] = i;
        for (int b = n; b > 0; b--) first[b] = first[b - 1];
        first[0] = 0;
        return (order, first);
    }

    public static void Return(int[] order, int[] first)
    {
        ArrayPool<int>.Shared.Return(order);
        ArrayPool<int>.Shared.Return(first);
    }
}
