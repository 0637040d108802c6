// roi_pool on the CPU, exactly as torchvision.ops.roi_pool (csrc/ops/cpu/roi_pool_kernel.cpp):
// RoI coordinates are scaled and rounded half away from zero in double, bins are cut with
// floor/ceil in double, max pooling keeps the first strictly greater value.
using System.Runtime.InteropServices;

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
/// For RoI k, start = round(x1·scale), end = round(x2·scale) (C <c>round</c>, half away from
/// zero, in double), roi_w = max(end − start + 1, 1), bin_w = roi_w / pw; bin j spans
/// [floor(j·bin_w), ceil((j+1)·bin_w)) + start clipped to [0, W) (likewise vertically).
/// An empty bin gives 0 and argmax −1; otherwise the maximum starts at −FLT_MAX and a cell
/// wins only when strictly greater (the first maximum in row-major order wins; NaN and −∞
/// never win, so a bin of only those gives −FLT_MAX and argmax −1). argmax = h·W + w.
/// The bin edges of every RoI are computed once per call; the (RoI, channel) pairs are split
/// across workers in contiguous ranges.
/// </para>
/// <para>
/// Backward: gradX (N, C, H, W) = 0, then gradX[b, c, argmax] += gradY for every bin with
/// argmax ≥ 0, RoIs in increasing order (the reference's summation order). RoIs are grouped
/// by image and the (image, channel) planes are split across workers, so each plane of gradX
/// is written by one worker only (no races, deterministic). An argmax value that is neither
/// −1 nor a cell of the plane is skipped and reported afterwards as an ArgumentException.
/// </para>
/// </remarks>
internal static unsafe class RoiPoolCpu
{
    /// <summary>Bin edges of every RoI: per RoI, ph (start, end) row pairs then pw (start, end) column pairs, clipped.</summary>
    private static int[] BinEdges(float* rois, in RoiGeometry g)
    {
        int stride = 2 * (g.PH + g.PW);
        var edges = new int[checked(g.K * stride)];
        for (int k = 0; k < g.K; k++)
        {
            float* r = rois + (long)k * 5;
            int o = k * stride;
            Axis(r[2], r[4], g.SpatialScale, g.PH, g.H, edges.AsSpan(o, 2 * g.PH));
            Axis(r[1], r[3], g.SpatialScale, g.PW, g.W, edges.AsSpan(o + 2 * g.PH, 2 * g.PW));
        }
        return edges;
    }

    /// <summary>
    /// Bin edges along one axis. Integer arithmetic of the reference done in double, which is
    /// exact for any in-range coordinate and saturates sensibly (clipped) for absurd ones.
    /// </summary>
    private static void Axis(float lo, float hi, double scale, int bins, int size, Span<int> edges)
    {
        double start = Math.Round(lo * scale, MidpointRounding.AwayFromZero);
        double end = Math.Round(hi * scale, MidpointRounding.AwayFromZero);
        double length = Math.Max(end - start + 1, 1);
        double bin = length / bins;
        for (int i = 0; i < bins; i++)
        {
            double s = Math.Floor(i * bin) + start;
            double e = Math.Ceiling((i + 1) * bin) + start;
            edges[2 * i] = (int)Math.Clamp(s, 0, size);
            edges[2 * i + 1] = (int)Math.Clamp(e, 0, size);
        }
    }

    public static void Forward(float* x, float* rois, float* y, long* argmax, RoiGeometry g)
    {
        int[] edges = BinEdges(rois, g);
        int groups = (long)g.K * g.C <= int.MaxValue ? g.C : 1;
        if (groups == 0) return;
        long plane = (long)g.H * g.W;
        long cost = Math.Max(1, Math.Min(plane, 4L * g.PH * g.PW + plane));
        nint px = (nint)x, pr = (nint)rois, py = (nint)y, pa = (nint)argmax;
        Parallelism.For(g.K * groups, cost, (start, end) =>
        {
            fixed (int* e = edges)
            {
                for (int i = start; i < end;)
                {
                    int k = i / groups;
                    int segEnd = Math.Min(end, (k + 1) * groups);
                    int c0 = (int)((long)(i - k * groups) * g.C / groups);
                    int c1 = (int)((long)(segEnd - k * groups) * g.C / groups);
                    ForwardRoi(k, c0, c1, (float*)px, (float*)pr, (float*)py, (long*)pa, e + (long)k * 2 * (g.PH + g.PW), g);
                    i = segEnd;
                }
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

    public static void Backward(float* gradY, float* rois, long* argmax, float* gradX, RoiGeometry g)
    {
        long plane = (long)g.H * g.W;
        var (order, first) = RoiImages.Group(rois, g.K, g.N);
        int groups = (long)g.N * g.C <= int.MaxValue ? g.C : 1;
        if (groups == 0) return;
        long cost = plane + (long)g.K / Math.Max(1, g.N) * g.PH * g.PW;
        int invalid = 0;
        nint pgy = (nint)gradY, pa = (nint)argmax, pgx = (nint)gradX;
        Parallelism.For(g.N * groups, cost, (start, end) =>
        {
            for (int i = start; i < end;)
            {
                int b = i / groups;
                int segEnd = Math.Min(end, (b + 1) * groups);
                int c0 = (int)((long)(i - b * groups) * g.C / groups);
                int c1 = (int)((long)(segEnd - b * groups) * g.C / groups);
                if (!BackwardImage(b, c0, c1, (float*)pgy, (long*)pa, (float*)pgx, order.AsSpan(first[b], first[b + 1] - first[b]), g))
                    Volatile.Write(ref invalid, 1);
                i = segEnd;
            }
        });
        if (invalid != 0) ThrowBadArgmax(argmax, (long)g.K * g.C * g.PH * g.PW, plane);
    }

    /// <summary>
    /// Zeroes image <paramref name="b"/>'s channels [c0, c1) of gradX and scatters its RoIs'
    /// gradients into them. Returns false when an argmax value is neither −1 nor a cell of
    /// the plane (such bins are skipped).
    /// </summary>
    private static bool BackwardImage(int b, int c0, int c1, float* gradY, long* argmax, float* gradX, ReadOnlySpan<int> imageRois, in RoiGeometry g)
    {
        long plane = (long)g.H * g.W;
        int bins = g.PH * g.PW;
        bool valid = true;
        NativeMemory.Clear(gradX + ((long)b * g.C + c0) * plane, (nuint)((c1 - c0) * plane * sizeof(float)));
        foreach (int k in imageRois)
        {
            for (int c = c0; c < c1; c++)
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
    /// offsets: image b's RoIs are order[first[b] .. first[b + 1])).
    /// </summary>
    public static (int[] Order, int[] First) Group(float* rois, int k, int n)
    {
        var first = new int[n + 1];
        for (int i = 0; i < k; i++) first[(int)rois[(long)i * 5] + 1]++;
        for (int b = 0; b < n; b++) first[b + 1] += first[b];
        var order = new int[k];
        var next = (int[])first.Clone();
        for (int i = 0; i < k; i++) order[next[(int)rois[(long)i * 5]]++] = i;
        return (order, first);
    }
}
