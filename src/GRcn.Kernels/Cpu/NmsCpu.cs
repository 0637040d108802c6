// nms, batched_nms and box_iou on the CPU, reproducing torchvision 0.14 (nms_kernel.cpp with
// T = double on float32 inputs, boxes.py): stable descending score order with NaN first,
// areas (x2 − x1)·(y2 − y1), inter from max(0, ·) sides, IoU = inter / (area_i + area_j − inter)
// in float64, a box dropped when IoU > threshold (strictly).
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GRcn.Kernels.Cpu;

internal sealed unsafe partial class CpuBackend : INmsBackend
{
    public int Nms(Tensor boxes, Tensor scores, double iouThreshold, Tensor keep) =>
        NmsCpu.Nms(boxes.Ptr<float>(), scores.Ptr<float>(), boxes.Dim(0), iouThreshold, keep.Ptr<long>());

    public int BatchedNms(Tensor boxes, Tensor scores, Tensor idxs, double iouThreshold, Tensor keep) =>
        NmsCpu.BatchedNms(boxes.Ptr<float>(), scores.Ptr<float>(), idxs.Ptr<long>(), boxes.Dim(0), iouThreshold, keep.Ptr<long>());

    public void BoxIou(Tensor a, Tensor b, Tensor iou) =>
        NmsCpu.BoxIou(a.Ptr<float>(), a.Dim(0), b.Ptr<float>(), b.Dim(0), iou.Ptr<float>());
}

/// <summary>Non-maximum suppression and pairwise IoU on raw pointers.</summary>
/// <remarks>
/// <para>
/// Shapes: boxes (K, 4) rows [x1, y1, x2, y2], scores (K), idxs (K) int64, keep (K) int64 of
/// which the returned count is written. Scores are ordered once, descending and stable (ties
/// keep index order, NaN scores first, as torch's sort with its NaN-aware comparator): an LSD
/// radix sort of monotone 32-bit score keys (a comparison sort of score-then-index keys for
/// few boxes). Coordinates and areas are gathered in that order as float64.
/// </para>
/// <para>
/// Greedy suppression keeps a box iff no earlier kept box has IoU above the threshold with it.
/// The decision for one pair is torchvision's double arithmetic, term for term
/// (<see cref="Suppresses"/>), so degenerate boxes (x2 &lt; x1, negative areas) and 0/0 IoUs
/// (never above the threshold) behave as there. Two sweeps give the same kept set:
/// <list type="bullet">
/// <item><see cref="Sweep"/>, the brute force: keep the first remaining box and compact the
/// remaining list to the boxes it does not suppress (O(K²) worst case). Used for a negative
/// threshold (where disjoint boxes suppress each other) and for few boxes.</item>
/// <item><see cref="GridSweep"/> for a threshold ≥ 0: a pair can only be above it when both
/// boxes are non-degenerate and overlap with positive width and height, so degenerate boxes
/// are kept untested and each candidate is tested only against kept boxes sharing a cell of a
/// uniform grid (cell side from the median box size), each such pair once (in the first cell
/// both cover), 8 pairs at a time: a float32 pre-filter that is exact for the overlap and
/// conservative for the IoU, then the double decision for the pairs it passes
/// (<see cref="BoxLists.AnySuppresses(int*, int, in Candidate, TestMode)"/>; 4 pairs at a time
/// in double where float32 could overflow or underflow). Boxes covering many cells go to a
/// list every candidate tests. Near-linear for boxes small against the image.</item>
/// </list>
/// The sweep itself is sequential (the greedy order is a chain of decisions).
/// </para>
/// <para>
/// batched_nms groups the sorted positions by class (a stable radix sort on the class ids)
/// and runs the suppression per class (classes in parallel with <see cref="Parallelism.For"/>),
/// comparing only boxes of one class on their own coordinates.
/// Result order follows torchvision's two CPU paths: up to <see cref="CoordinateTrickMaxBoxes"/>
/// boxes it runs one nms over class-offset boxes, so kept boxes come in the global stable score
/// order; above that it runs nms per class and orders the kept indices (ascending) with torch's
/// unstable sort, which is libstdc++'s introsort, reproduced here exactly
/// (<see cref="IntroSort"/>), ties included.
/// </para>
/// <para>box_iou fills (A, B) float32 from float64 arithmetic, rows of A split across workers;
/// where the union is 0 and the intersection 0 (0/0, NaN in torchvision) it writes 0.</para>
/// <para>Scratch lives in per-thread pinned buffers that grow on demand (no allocation in
/// steady state).</para>
/// </remarks>
internal static unsafe class NmsCpu
{
    /// <summary>torchvision uses the coordinate trick while boxes.numel() ≤ 4000 on the CPU.</summary>
    public const int CoordinateTrickMaxBoxes = 1000;

    /// <summary>Below this many boxes the brute-force sweep runs (the grid's setup does not pay).</summary>
    internal const int GridMinBoxes = 64;

    /// <summary>A box covering more grid cells than this is tested against (and by) every box.</summary>
    internal const int MaxCellsPerBox = 16;

    /// <summary>Grid cell side in median box sides (mean of width and height).</summary>
    private const double CellSides = 1.25;

    /// <summary>Boxes whose sides estimate the median.</summary>
    private const int SideSample = 63;

    /// <summary>Most cells per grid axis.</summary>
    private const int MaxGridSide = 1024;

    /// <summary>From this many boxes the score order comes from the radix sort.</summary>
    private const int RadixMinBoxes = 256;

    /// <summary>
    /// Test hook: which suppression runs on this thread. Auto: by size and threshold; Grid: the
    /// grid with the float32 pre-filter where it is exact (else GridDouble); GridDouble: 4 pairs
    /// at a time in double; GridScalar: one pair at a time. A negative threshold always sweeps.
    /// </summary>
    internal enum SuppressPath { Auto, Sweep, Grid, GridDouble, GridScalar }

    [ThreadStatic] internal static SuppressPath ForcePath;

    public static int Nms(float* boxes, float* scores, int k, double threshold, long* keep)
    {
        var ws = Workspace.For(k);
        int* order = ws.Order;
        SortDescending(scores, k, order, ws);
        Gather(boxes, order, k, ws.Coords);
        int* pos = ws.Positions, kept = ws.Kept;
        for (int i = 0; i < k; i++) pos[i] = i;
        int nk = Suppress(ws.Coords, k, pos, k, threshold, kept);
        for (int i = 0; i < nk; i++) keep[i] = order[kept[i]];
        return nk;
    }

    public static int BatchedNms(float* boxes, float* scores, long* idxs, int k, double threshold, long* keep)
    {
        var ws = Workspace.For(k);
        int* order = ws.Order;
        SortDescending(scores, k, order, ws);
        Gather(boxes, order, k, ws.Coords);

        // group the sorted positions by class, each group ascending (so in score order)
        int* pos = ws.Positions, groupStart = ws.GroupStart;
        ulong* cls = GroupByClass(idxs, order, k, pos, ws);
        int groups = 0;
        for (int i = 0; i < k; i++)
        {
            if (i == 0 || cls[i] != cls[i - 1]) groupStart[groups++] = i;
        }
        groupStart[groups] = k;

        // per-class suppression; group gi writes its kept positions into kept[gs[gi] ..], then flags them
        byte* flag = ws.Flags;
        new Span<byte>(flag, k).Clear();
        long perGroup = Math.Max(1, (long)k / groups);
        var state = (pc: (nint)ws.Coords, pp: (nint)pos, pk: (nint)ws.Kept, pf: (nint)flag, pgs: (nint)groupStart, thr: threshold, k);
        Parallelism.For(groups, perGroup * perGroup, state, static (s, g0, g1) =>
        {
            var (pc, pp, pk, pf, pgs, thr, k) = s;
            int* gs = (int*)pgs;
            for (int gi = g0; gi < g1; gi++)
            {
                int* kept = (int*)pk + gs[gi];
                int nk = Suppress((double*)pc, k, (int*)pp + gs[gi], gs[gi + 1] - gs[gi], thr, kept);
                for (int t = 0; t < nk; t++) ((byte*)pf)[kept[t]] = 1;
            }
        });

        int count = 0;
        if (k <= CoordinateTrickMaxBoxes)
        {
            // one nms over offset boxes: kept boxes in the global stable score order
            for (int i = 0; i < k; i++)
                if (flag[i] != 0) keep[count++] = order[i];
            return count;
        }

        // per-class path: kept indices ascending (flags moved from sorted positions to indices),
        // then torch's (unstable) descending sort of their scores
        byte* byIndex = flag + k;
        for (int i = 0; i < k; i++) byIndex[order[i]] = flag[i];
        for (int i = 0; i < k; i++)
            if (byIndex[i] != 0) keep[count++] = i;
        Span<ScoreIndex> pairs = ws.Pairs(count);
        for (int i = 0; i < count; i++) pairs[i] = new ScoreIndex(scores[keep[i]], keep[i]);
        IntroSort.Sort(pairs);
        for (int i = 0; i < count; i++) keep[i] = pairs[i].Index;
        return count;
    }

    public static void BoxIou(float* a, int na, float* b, int nb, float* iou)
    {
        Parallelism.For(na, 16L * nb, (pa: (nint)a, pb: (nint)b, pi: (nint)iou, nb), static (s, start, end) =>
        {
            var (pa, pb, pi, nb) = s;
            float* bb = (float*)pb;
            for (int i = start; i < end; i++)
            {
                float* ai = (float*)pa + 4L * i;
                double ax1 = ai[0], ay1 = ai[1], ax2 = ai[2], ay2 = ai[3];
                double areaA = (ax2 - ax1) * (ay2 - ay1);
                float* row = (float*)pi + (long)i * nb;
                for (int j = 0; j < nb; j++)
                {
                    float* bj = bb + 4L * j;
                    double bx1 = bj[0], by1 = bj[1], bx2 = bj[2], by2 = bj[3];
                    double areaB = (bx2 - bx1) * (by2 - by1);
                    double w = Math.Max(Math.Min(ax2, bx2) - Math.Max(ax1, bx1), 0.0);
                    double h = Math.Max(Math.Min(ay2, by2) - Math.Max(ay1, by1), 0.0);
                    double inter = w * h;
                    double union = areaA + areaB - inter;
                    row[j] = inter == 0.0 && union == 0.0 ? 0f : (float)(inter / union);
                }
            }
        });
    }

    /// <summary>
    /// Order key of a score: ascending keys give descending scores, every NaN first and equal
    /// (key 0), −0 equal to +0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static uint DescendingKey(float score)
    {
        if (float.IsNaN(score)) return 0;
        uint bits = BitConverter.SingleToUInt32Bits(score == 0f ? 0f : score);
        uint ascending = (bits & 0x8000_0000u) != 0 ? ~bits : bits | 0x8000_0000u;
        return ~ascending;  // ≥ 0x007F_FFFF for every non-NaN value
    }

    /// <summary>order = indices by descending score, ties in index order, NaN first.</summary>
    private static void SortDescending(float* scores, int k, int* order, Workspace ws)
    {
        if (k < RadixMinBoxes)
        {
            // key then index in one 64-bit word: sorting the words is a stable sort by key
            ulong* keys = ws.Keys;
            for (int i = 0; i < k; i++) keys[i] = ((ulong)DescendingKey(scores[i]) << 32) | (uint)i;
            new Span<ulong>(keys, k).Sort();
            for (int i = 0; i < k; i++) order[i] = (int)(uint)keys[i];
            return;
        }

        // LSD radix sort (stable) on the keys in digits of 11, 11 and 10 bits, indices riding along
        uint* keyA = (uint*)ws.Keys, keyB = keyA + k;
        int* idxA = order, idxB = ws.SortIndices;
        int* hist = ws.Histogram;
        new Span<int>(hist, 3 * 2048).Clear();
        for (int i = 0; i < k; i++)
        {
            uint key = DescendingKey(scores[i]);
            keyA[i] = key;
            idxA[i] = i;
            hist[key & 2047]++;
            hist[2048 + ((key >> 11) & 2047)]++;
            hist[4096 + (key >> 22)]++;
        }
        for (int d = 0; d < 3; d++)
        {
            int shift = 11 * d;
            int* h = hist + 2048 * d;
            if (h[(keyA[0] >> shift) & 2047] == k) continue;  // one digit value throughout: pass changes nothing
            int sum = 0;
            for (int b = 0; b < 2048; b++)
            {
                int c = h[b];
                h[b] = sum;
                sum += c;
            }
            for (int i = 0; i < k; i++)
            {
                uint key = keyA[i];
                int dst = h[(key >> shift) & 2047]++;
                keyB[dst] = key;
                idxB[dst] = idxA[i];
            }
            uint* kt = keyA;
            keyA = keyB;
            keyB = kt;
            int* it = idxA;
            idxA = idxB;
            idxB = it;
        }
        if (idxA != order) new Span<int>(idxA, k).CopyTo(new Span<int>(order, k));
    }

    /// <summary>
    /// pos = the sorted positions 0 .. K − 1 stably ordered by the class of their box (an LSD
    /// radix sort in bytes of the class ids, skipping bytes that never vary), so each class's
    /// positions stay ascending; returns the class keys in that order.
    /// </summary>
    private static ulong* GroupByClass(long* idxs, int* order, int k, int* pos, Workspace ws)
    {
        ulong* keyA = ws.Keys, keyB = keyA + k;
        int* posA = pos, posB = ws.SortIndices;
        int* hist = ws.Histogram;
        new Span<int>(hist, 8 * 256).Clear();
        for (int i = 0; i < k; i++)
        {
            ulong key = (ulong)idxs[order[i]] ^ 0x8000_0000_0000_0000ul;  // signed order (any order would do)
            keyA[i] = key;
            posA[i] = i;
            for (int d = 0; d < 8; d++) hist[256 * d + (int)((key >> (8 * d)) & 255)]++;
        }
        for (int d = 0; d < 8; d++)
        {
            int shift = 8 * d;
            int* h = hist + 256 * d;
            if (h[(int)((keyA[0] >> shift) & 255)] == k) continue;  // one byte value throughout
            int sum = 0;
            for (int b = 0; b < 256; b++)
            {
                int c = h[b];
                h[b] = sum;
                sum += c;
            }
            for (int i = 0; i < k; i++)
            {
                ulong key = keyA[i];
                int dst = h[(int)((key >> shift) & 255)]++;
                keyB[dst] = key;
                posB[dst] = posA[i];
            }
            ulong* kt = keyA;
            keyA = keyB;
            keyB = kt;
            int* pt = posA;
            posA = posB;
            posB = pt;
        }
        if (posA != pos) new Span<int>(posA, k).CopyTo(new Span<int>(pos, k));
        return keyA;
    }

    /// <summary>coords (5 × K): x1, y1, x2, y2, area rows in sorted order, float64.</summary>
    private static void Gather(float* boxes, int* order, int k, double* coords)
    {
        double* x1 = coords, y1 = coords + k, x2 = coords + 2L * k, y2 = coords + 3L * k, area = coords + 4L * k;
        for (int p = 0; p < k; p++)
        {
            float* b = boxes + 4L * order[p];
            x1[p] = b[0];
            y1[p] = b[1];
            x2[p] = b[2];
            y2[p] = b[3];
            area[p] = (x2[p] - x1[p]) * (y2[p] - y1[p]);
        }
    }

    /// <summary>
    /// Greedy suppression over the positions pos[0 .. count) (ascending = score order); writes
    /// the kept positions, ascending, to <paramref name="kept"/> and returns how many. pos may be overwritten.
    /// </summary>
    private static int Suppress(double* coords, int k, int* pos, int count, double threshold, int* kept)
    {
        var path = ForcePath;
        if (path == SuppressPath.Auto) path = count < GridMinBoxes ? SuppressPath.Sweep : SuppressPath.Grid;
        if (!Avx.IsSupported && path is SuppressPath.Grid or SuppressPath.GridDouble) path = SuppressPath.GridScalar;
        // the grid relies on disjoint boxes never suppressing each other, false below 0
        if (threshold < 0.0 || path == SuppressPath.Sweep) return Sweep(coords, k, pos, count, threshold, kept);
        var test = path switch
        {
            SuppressPath.Grid => TestMode.Float8,
            SuppressPath.GridDouble => TestMode.Double4,
            _ => TestMode.Scalar,
        };
        return GridSweep(coords, k, pos, count, threshold, kept, test);
    }

    /// <summary>
    /// Whether kept box i suppresses box j: nms_kernel.cpp's test in double, term for term
    /// (std::max(a, b) = a &lt; b ? b : a). With inter = 0 the IoU is 0 / union: ±0, above a
    /// negative threshold only, or NaN (never above) when the union is 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Suppresses(double ix1, double iy1, double ix2, double iy2, double iarea,
        double jx1, double jy1, double jx2, double jy2, double jarea, double threshold)
    {
        double xx1 = ix1 < jx1 ? jx1 : ix1;
        double yy1 = iy1 < jy1 ? jy1 : iy1;
        double xx2 = jx2 < ix2 ? jx2 : ix2;
        double yy2 = jy2 < iy2 ? jy2 : iy2;
        double ww = xx2 - xx1, hh = yy2 - yy1;
        if (0.0 < ww && 0.0 < hh)
        {
            double inter = ww * hh;
            return inter / (iarea + jarea - inter) > threshold;
        }
        return threshold < 0.0 && iarea + jarea != 0.0;
    }

    /// <summary>Brute-force greedy suppression (see <see cref="Suppress"/>); compacts pos as it goes.</summary>
    private static int Sweep(double* coords, int k, int* rem, int count, double threshold, int* kept)
    {
        double* x1 = coords, y1 = coords + k, x2 = coords + 2L * k, y2 = coords + 3L * k, area = coords + 4L * k;
        int nk = 0, head = 0;
        while (head < count)
        {
            int i = rem[head++];
            kept[nk++] = i;
            double ix1 = x1[i], iy1 = y1[i], ix2 = x2[i], iy2 = y2[i], iarea = area[i];
            int w = head;
            for (int t = head; t < count; t++)
            {
                int j = rem[t];
                if (!Suppresses(ix1, iy1, ix2, iy2, iarea, x1[j], y1[j], x2[j], y2[j], area[j], threshold)) rem[w++] = j;
            }
            count = w;
        }
        return nk;
    }

    /// <summary>Grid cell of a coordinate: monotone in v, so overlapping intervals share a cell.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Cell(double v, double min, double inv, int cells)
    {
        int c = (int)((v - min) * inv);  // v ≥ min, so truncation is floor
        return c < cells ? c : cells - 1;
    }

    /// <summary>
    /// Greedy suppression for threshold ≥ 0 (see <see cref="Suppress"/>): same kept set as
    /// <see cref="Sweep"/>, testing each candidate only against kept boxes it can overlap.
    /// </summary>
    private static int GridSweep(double* coords, int k, int* pos, int count, double threshold, int* kept, TestMode test)
    {
        double* x1 = coords, y1 = coords + k, x2 = coords + 2L * k, y2 = coords + 3L * k, area = coords + 4L * k;
        var grid = GridBuffers.Current;

        // extent, smallest area and a sample of sides (w + h) of the non-degenerate boxes
        double minX = double.PositiveInfinity, minY = double.PositiveInfinity;
        double maxX = double.NegativeInfinity, maxY = double.NegativeInfinity, minArea = double.PositiveInfinity;
        double* sample = grid.Sample(SideSample);
        int valid = 0, ns = 0, step = Math.Max(1, count / SideSample);
        for (int t = 0; t < count; t++)
        {
            int p = pos[t];
            double bx1 = x1[p], by1 = y1[p], bx2 = x2[p], by2 = y2[p];
            if (!(bx1 < bx2 && by1 < by2)) continue;
            if (valid++ % step == 0 && ns < SideSample) sample[ns++] = (bx2 - bx1) + (by2 - by1);
            minX = bx1 < minX ? bx1 : minX;
            minY = by1 < minY ? by1 : minY;
            maxX = bx2 > maxX ? bx2 : maxX;
            maxY = by2 > maxY ? by2 : maxY;
            minArea = area[p] < minArea ? area[p] : minArea;
        }
        if (valid == 0)
        {
            // with threshold ≥ 0 a degenerate box (x2 ≤ x1 or y2 ≤ y1) neither suppresses nor is suppressed
            new Span<int>(pos, count).CopyTo(new Span<int>(kept, count));
            return count;
        }

        // grid: cells of about CellSides median sides over the extent, at most 2·valid of them
        new Span<double>(sample, ns).Sort();
        double cell = CellSides * 0.5 * sample[ns / 2];
        double ex = maxX - minX, ey = maxY - minY;
        int gx = (int)Math.Clamp(Math.Ceiling(ex / cell), 1, MaxGridSide);
        int gy = (int)Math.Clamp(Math.Ceiling(ey / cell), 1, MaxGridSide);
        long maxCells = Math.Max(64, 2L * valid);
        if ((long)gx * gy > maxCells)
        {
            double f = Math.Sqrt((double)maxCells / ((long)gx * gy));
            gx = Math.Max(1, (int)(gx * f));
            gy = Math.Max(1, (int)(gy * f));
        }
        double invX = gx / ex, invY = gy / ey;
        int cells = gx * gy;

        // A kept box registers in every cell it covers, in one of 4 lists per cell by whether
        // the cell is its first column (bit 0 clear) and its first row (bit 1 clear). A pair that
        // overlaps shares the cells from (max first column, max first row) on, and is tested
        // only there: the candidate reads all 4 lists of its own first cell, in the rest of its
        // first row only kept boxes starting in that column, and so on (see the query below).
        int lists4 = 4 * cells;
        int* listStart = grid.Cells(lists4), listCount = listStart + lists4;
        new Span<int>(listCount, lists4).Clear();
        int big = 0;
        for (int t = 0; t < count; t++)
        {
            int p = pos[t];
            if (!(x1[p] < x2[p] && y1[p] < y2[p])) continue;
            int cx0 = Cell(x1[p], minX, invX, gx), cx1 = Cell(x2[p], minX, invX, gx);
            int cy0 = Cell(y1[p], minY, invY, gy), cy1 = Cell(y2[p], minY, invY, gy);
            if ((cx1 - cx0 + 1) * (cy1 - cy0 + 1) > MaxCellsPerBox)
            {
                big++;
                continue;
            }
            for (int cy = cy0; cy <= cy1; cy++)
                for (int cx = cx0; cx <= cx1; cx++)
                    listCount[4 * (cy * gx + cx) + (cx > cx0 ? 1 : 0) + (cy > cy0 ? 2 : 0)]++;
        }
        // capacity per list: the boxes that would register there if kept, rounded up to a block
        long entries = 0;
        for (int l = 0; l < lists4; l++)
        {
            listStart[l] = (int)entries;
            entries += RoundUpToBlock(listCount[l]);
            listCount[l] = 0;
        }
        // (≤ 16 entries per box and 7 of padding per list: beyond int range only for ~10^8 boxes)
        if (entries + 2L * RoundUpToBlock(valid) > Array.MaxLength / 5) return Sweep(coords, k, pos, count, threshold, kept);
        // then all kept non-degenerate boxes (flat), then the kept big ones
        int flatStart = (int)entries, bigStart = flatStart + RoundUpToBlock(valid);
        var lists = grid.Lists((long)bigStart + RoundUpToBlock(big));
        int nFlat = 0, nBig = 0;

        // the float32 pre-filter is exact where no float32 term can overflow or underflow (see AnySuppresses)
        double maxAbs = Math.Max(Math.Max(-minX, maxX), Math.Max(-minY, maxY));
        var mode = test == TestMode.Float8 && !(maxAbs <= FloatFilterMaxCoordinate && minArea >= FloatFilterMinArea)
            ? TestMode.Double4 : test;
        float filterThreshold = threshold >= FloatFilterMinThreshold ? (float)(threshold * (1 - FloatFilterMargin)) : 0f;
        var thr = Vector256.Create(threshold);
        var fthr = Vector256.Create(filterThreshold);

        // (start, count) of the lists a candidate reads: for W × H cells 4 + 2(W − 1) + (H − 1)(W + 1)
        // ≤ 2·WH + 2, and the big list
        int* ranges = stackalloc int[2 * (2 * MaxCellsPerBox + 3)];
        int nk = 0;
        for (int t = 0; t < count; t++)
        {
            int p = pos[t];
            double bx1 = x1[p], by1 = y1[p], bx2 = x2[p], by2 = y2[p];
            if (!(bx1 < bx2 && by1 < by2))
            {
                kept[nk++] = p;
                continue;
            }
            int cx0 = Cell(bx1, minX, invX, gx), cx1 = Cell(bx2, minX, invX, gx);
            int cy0 = Cell(by1, minY, invY, gy), cy1 = Cell(by2, minY, invY, gy);
            bool isBig = (cx1 - cx0 + 1) * (cy1 - cy0 + 1) > MaxCellsPerBox;
            var box = new Candidate(bx1, by1, bx2, by2, area[p], threshold, thr, fthr);
            int nr = 0;
            if (isBig)
            {
                // a big box may overlap any kept box
                ranges[0] = flatStart;
                ranges[1] = nFlat;
                nr = 1;
            }
            else
            {
                // in cell (cx, cy) the lists of boxes starting in column cx unless cx = cx0, and in
                // row cy unless cy = cy0: list bit 0 only where cx = cx0, bit 1 only where cy = cy0
                for (int cy = cy0; cy <= cy1; cy++)
                {
                    int l = 4 * (cy * gx + cx0);
                    int rowBits = cy == cy0 ? 2 : 0;
                    AddRange(ranges, ref nr, listStart, listCount, l);
                    AddRange(ranges, ref nr, listStart, listCount, l + 1);
                    if (rowBits != 0)
                    {
                        AddRange(ranges, ref nr, listStart, listCount, l + 2);
                        AddRange(ranges, ref nr, listStart, listCount, l + 3);
                    }
                    for (int cx = cx0 + 1; cx <= cx1; cx++)
                    {
                        l += 4;
                        AddRange(ranges, ref nr, listStart, listCount, l);
                        if (rowBits != 0) AddRange(ranges, ref nr, listStart, listCount, l + 2);
                    }
                }
                ranges[2 * nr] = bigStart;
                ranges[2 * nr + 1] = nBig;
                nr++;
            }
            if (lists.AnySuppresses(ranges, nr, box, mode)) continue;

            kept[nk++] = p;
            lists.Append(flatStart, nFlat++, box);
            if (isBig) lists.Append(bigStart, nBig++, box);
            else
            {
                for (int cy = cy0; cy <= cy1; cy++)
                    for (int cx = cx0; cx <= cx1; cx++)
                    {
                        int l = 4 * (cy * gx + cx) + (cx > cx0 ? 1 : 0) + (cy > cy0 ? 2 : 0);
                        lists.Append(listStart[l], listCount[l]++, box);
                    }
            }
        }
        return nk;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddRange(int* ranges, ref int nr, int* listStart, int* listCount, int l)
    {
        ranges[2 * nr] = listStart[l];
        ranges[2 * nr + 1] = listCount[l];
        nr++;
    }

    /// <summary>Entries per block of a box list (one Vector256 of float32).</summary>
    private const int Block = 8;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int RoundUpToBlock(int n) => (n + Block - 1) & ~(Block - 1);

    /// <summary>The float32 pre-filter runs while every |coordinate| ≤ 2^60 (areas, sums and products stay below 2^124) ...</summary>
    private const double FloatFilterMaxCoordinate = 1152921504606846976.0;

    /// <summary>... and every area ≥ 2^-90 (unions stay normal floats).</summary>
    private const double FloatFilterMinArea = 8.0779356694631609e-28;

    /// <summary>Below this threshold the pre-filter passes every overlapping pair on to the exact test.</summary>
    private const double FloatFilterMinThreshold = 9.3132257461547852e-10;  // 2^-30

    /// <summary>Relative margin of the pre-filter's threshold (2^-16, against float32 errors below 2^-19).</summary>
    private const double FloatFilterMargin = 1.52587890625e-05;

    /// <summary>How a candidate is tested against a list.</summary>
    private enum TestMode { Scalar, Double4, Float8 }

    /// <summary>A box under test: its coordinates as scalars and broadcast to vector lanes.</summary>
    private readonly struct Candidate(double x1, double y1, double x2, double y2, double area, double threshold,
        Vector256<double> thr, Vector256<float> filterThr)
    {
        public readonly double X1 = x1, Y1 = y1, X2 = x2, Y2 = y2, Area = area, Threshold = threshold;
        public readonly Vector256<double> DX1 = Vector256.Create(x1), DY1 = Vector256.Create(y1);
        public readonly Vector256<double> DX2 = Vector256.Create(x2), DY2 = Vector256.Create(y2);
        public readonly Vector256<double> DArea = Vector256.Create(area), DThreshold = thr;
        public readonly Vector256<float> FX1 = Vector256.Create((float)x1), FY1 = Vector256.Create((float)y1);
        public readonly Vector256<float> FX2 = Vector256.Create((float)x2), FY2 = Vector256.Create((float)y2);
        public readonly Vector256<float> FArea = Vector256.Create(Area32((float)x1, (float)y1, (float)x2, (float)y2));
        public readonly Vector256<float> FThreshold = filterThr;
    }

    /// <summary>(x2 − x1)·(y2 − y1) in float32 arithmetic: the pre-filter's area.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Area32(float x1, float y1, float x2, float y2) => (x2 - x1) * (y2 - y1);

    /// <summary>
    /// Kept boxes in lists of blocks of <see cref="Block"/> entries, each block 5 rows of 8
    /// float32: x1, y1, x2, y2 (exactly the inputs) and the float32 area; float64 areas apart.
    /// Lists start on a block; the unused entries of a list's last block hold a box that
    /// overlaps nothing.
    /// </summary>
    private readonly struct BoxLists(float* blocks)
    {
        /// <summary>Row r (0 x1, 1 y1, 2 x2, 3 y2, 4 area32) of the block holding entry e.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private float* Row(long e, int r) => blocks + (e & ~(long)(Block - 1)) * 5 + r * Block;

        /// <summary>Writes box as entry n of the list at start; a fresh block is first filled with empty boxes.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Append(int start, int n, in Candidate box)
        {
            long at = start + n;
            int lane = n & (Block - 1);
            float* b = Row(at, 0);
            if (lane == 0)
            {
                // [+inf, +inf, −inf, −inf]: max(x1) = +inf, min(x2) = −inf, width −inf, never > 0
                new Span<float>(b, 2 * Block).Fill(float.PositiveInfinity);
                new Span<float>(b + 2 * Block, 2 * Block).Fill(float.NegativeInfinity);
                new Span<float>(b + 4 * Block, Block).Clear();
            }
            float fx1 = (float)box.X1, fy1 = (float)box.Y1, fx2 = (float)box.X2, fy2 = (float)box.Y2;
            b[lane] = fx1;
            b[Block + lane] = fy1;
            b[2 * Block + lane] = fx2;
            b[3 * Block + lane] = fy2;
            b[4 * Block + lane] = Area32(fx1, fy1, fx2, fy2);
        }

        /// <summary>Whether kept entry e suppresses box: the exact test in double.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private bool Exact(long e, in Candidate box)
        {
            float* b = Row(e, 0);
            long l = e & (Block - 1);
            double x1 = b[l], y1 = b[Block + l], x2 = b[2 * Block + l], y2 = b[3 * Block + l];
            // the area as Gather computes it from the same coordinates
            return Suppresses(x1, y1, x2, y2, (x2 - x1) * (y2 - y1), box.X1, box.Y1, box.X2, box.Y2, box.Area, box.Threshold);
        }

        /// <summary>
        /// Whether any box of the lists (start, count) in ranges[0 .. 2·nRanges) suppresses box (threshold ≥ 0).
        /// <para>Double4: <see cref="Suppresses"/> in 4 lanes: max/min of non-NaN values (the
        /// sign of a zero cannot change ww or hh), then the same subtractions, product, sum and
        /// division, each an IEEE operation as in the scalar code.</para>
        /// <para>Float8: the overlap test (ww &gt; 0 and hh &gt; 0) is exact in float32 (min, max
        /// and the sign of a difference of floats are); the IoU test is relaxed to inter ≥
        /// t'·union with t' = t·(1 − 2^-16), or t' = 0 for t &lt; 2^-30. In float32 inter and union
        /// are within 3 and 12 rounding units (2^-24) of the exact values, and the double IoU
        /// within 17 units (2^-53), as long as nothing overflows (coordinates ≤ 2^60) and the
        /// union and any inter that matters stay normal (areas ≥ 2^-90, and an inter below 2^-126
        /// gives an IoU below 2^-35); so every pair the double test suppresses passes, and the
        /// passing pairs are decided by the exact double test.</para>
        /// </summary>
        [MethodImpl(MethodImplOptions.NoInlining)]
        public bool AnySuppresses(int* ranges, int nRanges, in Candidate box, TestMode mode)
        {
            for (int r = 0; r < nRanges; r++)
            {
                if (AnySuppresses(ranges[2 * r], ranges[2 * r + 1], box, mode)) return true;
            }
            return false;
        }

        /// <summary>Whether any of the n boxes of the list at start suppresses box (threshold ≥ 0).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private bool AnySuppresses(int start, int n, in Candidate box, TestMode mode)
        {
            long end = start + n;
            if (mode == TestMode.Float8)
            {
                var zero = Vector256<float>.Zero;
                Vector256<float> bx1 = box.FX1, by1 = box.FY1, bx2 = box.FX2, by2 = box.FY2, barea = box.FArea, bthr = box.FThreshold;
                for (long e = start; e < end; e += Block)
                {
                    float* b = blocks + e * 5;
                    var ww = Avx.Subtract(Avx.Min(Avx.LoadVector256(b + 2 * Block), bx2), Avx.Max(Avx.LoadVector256(b), bx1));
                    var hh = Avx.Subtract(Avx.Min(Avx.LoadVector256(b + 3 * Block), by2), Avx.Max(Avx.LoadVector256(b + Block), by1));
                    var overlap = Avx.And(Avx.CompareGreaterThan(ww, zero), Avx.CompareGreaterThan(hh, zero));
                    var inter = Avx.Multiply(ww, hh);
                    var union = Avx.Subtract(Avx.Add(Avx.LoadVector256(b + 4 * Block), barea), inter);
                    var near = Avx.CompareGreaterThanOrEqual(inter, Avx.Multiply(bthr, union));
                    uint m = (uint)Avx.MoveMask(Avx.And(overlap, near));
                    while (m != 0)
                    {
                        if (Exact(e + System.Numerics.BitOperations.TrailingZeroCount(m), box)) return true;
                        m &= m - 1;
                    }
                }
                return false;
            }
            if (mode == TestMode.Double4)
            {
                var zero = Vector256<double>.Zero;
                for (long e = start; e < end; e += 4)
                {
                    // entries e .. e + 3: half (e & 4) of their block's rows
                    float* b = Row(e, 0) + (e & (Block - 1));
                    var ax1 = Avx.ConvertToVector256Double(Sse.LoadVector128(b));
                    var ay1 = Avx.ConvertToVector256Double(Sse.LoadVector128(b + Block));
                    var ax2 = Avx.ConvertToVector256Double(Sse.LoadVector128(b + 2 * Block));
                    var ay2 = Avx.ConvertToVector256Double(Sse.LoadVector128(b + 3 * Block));
                    var ww = Avx.Subtract(Avx.Min(ax2, box.DX2), Avx.Max(ax1, box.DX1));
                    var hh = Avx.Subtract(Avx.Min(ay2, box.DY2), Avx.Max(ay1, box.DY1));
                    var overlap = Avx.And(Avx.CompareGreaterThan(ww, zero), Avx.CompareGreaterThan(hh, zero));
                    var inter = Avx.Multiply(ww, hh);
                    var area = Avx.Multiply(Avx.Subtract(ax2, ax1), Avx.Subtract(ay2, ay1));
                    // (area_i + area_j) − inter, i the kept box: + is commutative in IEEE arithmetic
                    var iou = Avx.Divide(inter, Avx.Subtract(Avx.Add(area, box.DArea), inter));
                    if (Avx.MoveMask(Avx.And(overlap, Avx.CompareGreaterThan(iou, box.DThreshold))) != 0) return true;
                }
                return false;
            }
            for (long e = start; e < end; e++)
            {
                if (Exact(e, box)) return true;
            }
            return false;
        }
    }

    /// <summary>Per-thread pinned scratch of the grid sweep (one per worker of batched_nms).</summary>
    private sealed class GridBuffers
    {
        [ThreadStatic] private static GridBuffers? t_current;
        private int[] _cells = [];
        private double[] _sample = [];
        private float[] _floats = [];

        public static GridBuffers Current => t_current ??= new GridBuffers();

        public double* Sample(int n) => Pin(ref _sample, n);

        /// <summary>listStart (lists) then listCount (lists).</summary>
        public int* Cells(int lists) => Pin(ref _cells, 2L * lists);

        public BoxLists Lists(long n)
        {
            return new BoxLists(Pin(ref _floats, 5L * n));
        }
    }

    /// <summary>Per-thread pinned scratch of nms / batched_nms for K boxes.</summary>
    private sealed class Workspace
    {
        [ThreadStatic] private static Workspace? t_current;
        private ulong[] _keys = [];
        private int[] _ints = [];
        private double[] _coords = [];
        private byte[] _flags = [];
        private ScoreIndex[] _pairs = [];
        private int _k;

        public static Workspace For(int k)
        {
            var ws = t_current ??= new Workspace();
            ws._k = k;
            ws.Keys = Pin(ref ws._keys, 2L * k);
            ws.Order = Pin(ref ws._ints, 5L * k + 1 + 3 * 2048);
            ws.Coords = Pin(ref ws._coords, 5L * k);
            return ws;
        }

        /// <summary>2K 64-bit sort keys (or 4K 32-bit ones).</summary>
        public ulong* Keys { get; private set; }

        public int* Order { get; private set; }
        public int* Positions => Order + _k;
        public int* Kept => Order + 2L * _k;
        public int* SortIndices => Order + 3L * _k;
        public int* GroupStart => Order + 4L * _k;
        public int* Histogram => Order + 5L * _k + 1;
        public double* Coords { get; private set; }
        /// <summary>2K flags.</summary>
        public byte* Flags => Pin(ref _flags, 2L * _k);
        public Span<ScoreIndex> Pairs(int n) => new(Pin(ref _pairs, n), n);
    }

    /// <summary>A pointer to a pinned per-thread array of at least n elements, grown (by half again) when short.</summary>
    private static T* Pin<T>(ref T[] cache, long n) where T : unmanaged
    {
        if (n > Array.MaxLength)
            throw new InvalidOperationException($"nms scratch buffer of {n} elements is too large");
        if (cache.Length < n)
            cache = GC.AllocateUninitializedArray<T>((int)Math.Min(Array.MaxLength, Math.Max(n, cache.Length + cache.Length / 2)), pinned: true);
        return (T*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(cache));
    }
}

/// <summary>A score and the box index it belongs to, as sorted by torch's CPU sort.</summary>
internal readonly record struct ScoreIndex(float Score, long Index);

/// <summary>
/// libstdc++'s std::sort (introsort: median-of-three quicksort with an unguarded partition,
/// heapsort past depth 2·⌊log2 n⌋, final insertion sort with threshold 16), step for step, with
/// torch's descending comparator (NaN greatest). torch 1.13's unstable CPU sort is exactly this,
/// so the order of tied scores matches it.
/// </summary>
internal static class IntroSort
{
    private const int Threshold = 16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Less(in ScoreIndex a, in ScoreIndex b) =>
        (float.IsNaN(a.Score) && !float.IsNaN(b.Score)) || a.Score > b.Score;

    public static void Sort(Span<ScoreIndex> v)
    {
        int n = v.Length;
        if (n <= 1) return;
        Loop(v, 0, n, 2 * (31 - System.Numerics.BitOperations.LeadingZeroCount((uint)n)));
        if (n > Threshold)
        {
            InsertionSort(v, 0, Threshold);
            for (int i = Threshold; i < n; i++) UnguardedLinearInsert(v, i);
        }
        else InsertionSort(v, 0, n);
    }

    private static void Loop(Span<ScoreIndex> v, int first, int last, int depth)
    {
        while (last - first > Threshold)
        {
            if (depth == 0)
            {
                HeapSort(v, first, last);
                return;
            }
            depth--;
            int mid = first + (last - first) / 2;
            MoveMedianToFirst(v, first, first + 1, mid, last - 1);
            int cut = UnguardedPartition(v, first + 1, last, first);
            Loop(v, cut, last, depth);
            last = cut;
        }
    }

    private static void Swap(Span<ScoreIndex> v, int i, int j) => (v[i], v[j]) = (v[j], v[i]);

    private static void MoveMedianToFirst(Span<ScoreIndex> v, int result, int a, int b, int c)
    {
        if (Less(v[a], v[b]))
        {
            if (Less(v[b], v[c])) Swap(v, result, b);
            else if (Less(v[a], v[c])) Swap(v, result, c);
            else Swap(v, result, a);
        }
        else if (Less(v[a], v[c])) Swap(v, result, a);
        else if (Less(v[b], v[c])) Swap(v, result, c);
        else Swap(v, result, b);
    }

    private static int UnguardedPartition(Span<ScoreIndex> v, int first, int last, int pivot)
    {
        while (true)
        {
            while (Less(v[first], v[pivot])) first++;
            last--;
            while (Less(v[pivot], v[last])) last--;
            if (!(first < last)) return first;
            Swap(v, first, last);
            first++;
        }
    }

    private static void InsertionSort(Span<ScoreIndex> v, int first, int last)
    {
        if (first == last) return;
        for (int i = first + 1; i < last; i++)
        {
            if (Less(v[i], v[first]))
            {
                var val = v[i];
                v.Slice(first, i - first).CopyTo(v.Slice(first + 1));
                v[first] = val;
            }
            else UnguardedLinearInsert(v, i);
        }
    }

    private static void UnguardedLinearInsert(Span<ScoreIndex> v, int last)
    {
        var val = v[last];
        int next = last - 1;
        while (Less(val, v[next]))
        {
            v[last] = v[next];
            last = next;
            next--;
        }
        v[last] = val;
    }

    private static void HeapSort(Span<ScoreIndex> v, int first, int last)
    {
        // __partial_sort(first, last, last) = __heap_select (make_heap only) + __sort_heap
        int len = last - first;
        if (len >= 2)
        {
            int parent = (len - 2) / 2;
            while (true)
            {
                AdjustHeap(v, first, parent, len, v[first + parent]);
                if (parent == 0) break;
                parent--;
            }
        }
        while (last - first > 1)
        {
            last--;
            var val = v[last];
            v[last] = v[first];
            AdjustHeap(v, first, 0, last - first, val);
        }
    }

    private static void AdjustHeap(Span<ScoreIndex> v, int first, int hole, int len, ScoreIndex val)
    {
        int top = hole, child = hole;
        while (child < (len - 1) / 2)
        {
            child = 2 * (child + 1);
            if (Less(v[first + child], v[first + child - 1])) child--;
            v[first + hole] = v[first + child];
            hole = child;
        }
        if ((len & 1) == 0 && child == (len - 2) / 2)
        {
            child = 2 * (child + 1);
            v[first + hole] = v[first + child - 1];
            hole = child - 1;
        }
        int parent = (hole - 1) / 2;
        while (hole > top && Less(v[first + parent], val))
        {
            v[first + hole] = v[first + parent];
            hole = parent;
            parent = (hole - 1) / 2;
        }
        v[first + hole] = val;
    }
}
