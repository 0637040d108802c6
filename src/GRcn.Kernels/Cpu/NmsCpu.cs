// nms, batched_nms and box_iou on the CPU, reproducing torchvision 0.14 (nms_kernel.cpp with
// T = double on float32 inputs, boxes.py): stable descending score order with NaN first,
// areas (x2 − x1)·(y2 − y1), inter from max(0, ·) sides, IoU = inter / (area_i + area_j − inter)
// in float64, a box dropped when IoU > threshold (strictly).
using System.Buffers;
using System.Runtime.CompilerServices;

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
/// keep index order, NaN scores first, as torch's sort with its NaN-aware comparator), by
/// sorting 64-bit keys (monotone score bits, then index). Coordinates and areas are gathered in
/// that order as float64; the suppression sweep walks the order, keeps the first remaining box
/// and compacts the remaining list to the boxes whose IoU with it is not above the threshold
/// (O(K²) worst case). The arithmetic is that of torchvision's kernel in double, term for term,
/// so degenerate boxes (x2 &lt; x1, negative areas) and 0/0 IoUs (never above the threshold)
/// behave as there.
/// </para>
/// <para>
/// batched_nms runs the sweep per class (classes in parallel with <see cref="Parallelism.For"/>),
/// comparing only boxes of one class on their own coordinates. Result order follows
/// torchvision's two CPU paths: up to <see cref="CoordinateTrickMaxBoxes"/> boxes it runs one nms
/// over class-offset boxes, so kept boxes come in the global stable score order; above that it
/// runs nms per class and orders the kept indices (ascending) with torch's unstable sort, which
/// is libstdc++'s introsort, reproduced here exactly (<see cref="IntroSort"/>), ties included.
/// </para>
/// <para>box_iou fills (A, B) float32 from float64 arithmetic, rows of A split across workers;
/// where the union is 0 and the intersection 0 (0/0, NaN in torchvision) it writes 0.</para>
/// </remarks>
internal static unsafe class NmsCpu
{
    /// <summary>torchvision uses the coordinate trick while boxes.numel() ≤ 4000 on the CPU.</summary>
    public const int CoordinateTrickMaxBoxes = 1000;

    public static int Nms(float* boxes, float* scores, int k, double threshold, long* keep)
    {
        using var s = new Scratch(k);
        int* order = s.Order;
        SortDescending(scores, k, order, s.Keys);
        Gather(boxes, order, k, s.Coords);
        int* rem = s.Positions;
        for (int i = 0; i < k; i++) rem[i] = i;
        int kept = Sweep(s.Coords, k, rem, k, threshold, s.Kept);
        for (int i = 0; i < kept; i++) keep[i] = order[s.Kept[i]];
        return kept;
    }

    public static int BatchedNms(float* boxes, float* scores, long* idxs, int k, double threshold, long* keep)
    {
        using var s = new Scratch(k);
        int* order = s.Order;
        SortDescending(scores, k, order, s.Keys);
        Gather(boxes, order, k, s.Coords);

        // group the sorted positions by class, each group ascending (so in score order)
        long[] clsArr = ArrayPool<long>.Shared.Rent(k);
        int[] groupArr = ArrayPool<int>.Shared.Rent(k + 1);
        try
        {
            fixed (long* cls = clsArr)
            fixed (int* groupStart = groupArr)
            {
                int* pos = s.Positions;
                for (int i = 0; i < k; i++)
                {
                    cls[i] = idxs[order[i]];
                    pos[i] = i;
                }
                new Span<long>(cls, k).Sort(new Span<int>(pos, k));
                int groups = 0;
                for (int i = 0; i < k; i++)
                {
                    if (i == 0 || cls[i] != cls[i - 1]) groupStart[groups++] = i;
                }
                groupStart[groups] = k;
                for (int gi = 0; gi < groups; gi++)
                    new Span<int>(pos + groupStart[gi], groupStart[gi + 1] - groupStart[gi]).Sort();

                // per-class sweeps; kept flags by sorted position
                byte* flag = s.Flags;
                new Span<byte>(flag, k).Clear();
                nint pc = (nint)s.Coords, pp = (nint)pos, pf = (nint)flag, pgs = (nint)groupStart;
                double thr = threshold;
                Parallelism.For(groups, Math.Max(1, (long)k / groups) * Math.Max(1, (long)k / groups), (g0, g1) =>
                {
                    int* gs = (int*)pgs;
                    int maxLen = 0;
                    for (int gi = g0; gi < g1; gi++) maxLen = Math.Max(maxLen, gs[gi + 1] - gs[gi]);
                    int[] keptArr = ArrayPool<int>.Shared.Rent(Math.Max(1, maxLen));
                    try
                    {
                        fixed (int* kept = keptArr)
                        {
                            for (int gi = g0; gi < g1; gi++)
                            {
                                int len = gs[gi + 1] - gs[gi];
                                int nk = Sweep((double*)pc, k, (int*)pp + gs[gi], len, thr, kept);
                                for (int t = 0; t < nk; t++) ((byte*)pf)[kept[t]] = 1;
                            }
                        }
                    }
                    finally
                    {
                        ArrayPool<int>.Shared.Return(keptArr);
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

                // per-class path: kept indices ascending, then torch's (unstable) descending sort of their scores
                for (int i = 0; i < k; i++)
                    if (flag[i] != 0) keep[count++] = order[i];
                new Span<long>(keep, count).Sort();
                var pairs = ArrayPool<ScoreIndex>.Shared.Rent(count);
                try
                {
                    for (int i = 0; i < count; i++) pairs[i] = new ScoreIndex(scores[keep[i]], keep[i]);
                    IntroSort.Sort(pairs.AsSpan(0, count));
                    for (int i = 0; i < count; i++) keep[i] = pairs[i].Index;
                }
                finally
                {
                    ArrayPool<ScoreIndex>.Shared.Return(pairs);
                }
                return count;
            }
        }
        finally
        {
            ArrayPool<long>.Shared.Return(clsArr);
            ArrayPool<int>.Shared.Return(groupArr);
        }
    }

    public static void BoxIou(float* a, int na, float* b, int nb, float* iou)
    {
        nint pa = (nint)a, pb = (nint)b, pi = (nint)iou;
        Parallelism.For(na, 16L * nb, (start, end) =>
        {
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
    /// (key 0), −0 equal to +0; the low 32 bits hold the index, so sorting the keys is a stable sort.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong DescendingKey(float score, int index)
    {
        uint key;
        if (float.IsNaN(score)) key = 0;
        else
        {
            uint bits = BitConverter.SingleToUInt32Bits(score == 0f ? 0f : score);
            uint ascending = (bits & 0x8000_0000u) != 0 ? ~bits : bits | 0x8000_0000u;
            key = ~ascending;  // ≥ 0x007F_FFFF for every non-NaN value
        }
        return ((ulong)key << 32) | (uint)index;
    }

    /// <summary>order = indices by descending score, ties in index order, NaN first.</summary>
    private static void SortDescending(float* scores, int k, int* order, ulong* keys)
    {
        for (int i = 0; i < k; i++) keys[i] = DescendingKey(scores[i], i);
        new Span<ulong>(keys, k).Sort();
        for (int i = 0; i < k; i++) order[i] = (int)(uint)keys[i];
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
    /// Greedy suppression over the positions rem[0 .. count) (ascending = score order); writes
    /// the kept positions to <paramref name="kept"/> and returns how many. rem is overwritten.
    /// </summary>
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
                // std::max / std::min as in nms_kernel.cpp: max(a, b) = a < b ? b : a
                double xx1 = ix1 < x1[j] ? x1[j] : ix1;
                double yy1 = iy1 < y1[j] ? y1[j] : iy1;
                double xx2 = x2[j] < ix2 ? x2[j] : ix2;
                double yy2 = y2[j] < iy2 ? y2[j] : iy2;
                double ww = xx2 - xx1, hh = yy2 - yy1;
                bool suppress;
                if (0.0 < ww && 0.0 < hh)
                {
                    double inter = ww * hh;
                    suppress = inter / (iarea + area[j] - inter) > threshold;
                }
                else
                {
                    // inter = 0: the IoU is 0 / union, ±0 (above a negative threshold) or NaN when union = 0
                    suppress = threshold < 0.0 && iarea + area[j] != 0.0;
                }
                if (!suppress) rem[w++] = j;
            }
            count = w;
        }
        return nk;
    }

    /// <summary>Per-call scratch from the shared array pools (no allocation in steady state).</summary>
    private readonly struct Scratch : IDisposable
    {
        private readonly ulong[] _keys;
        private readonly int[] _ints;
        private readonly double[] _coords;
        private readonly byte[] _flags;
        private readonly System.Runtime.InteropServices.GCHandle[] _handles;
        private readonly int _k;

        public Scratch(int k)
        {
            _k = k;
            _keys = ArrayPool<ulong>.Shared.Rent(Math.Max(1, k));
            _ints = ArrayPool<int>.Shared.Rent(Math.Max(1, 3 * k));
            _coords = ArrayPool<double>.Shared.Rent(Math.Max(1, 5 * k));
            _flags = ArrayPool<byte>.Shared.Rent(Math.Max(1, k));
            _handles =
            [
                System.Runtime.InteropServices.GCHandle.Alloc(_keys, System.Runtime.InteropServices.GCHandleType.Pinned),
                System.Runtime.InteropServices.GCHandle.Alloc(_ints, System.Runtime.InteropServices.GCHandleType.Pinned),
                System.Runtime.InteropServices.GCHandle.Alloc(_coords, System.Runtime.InteropServices.GCHandleType.Pinned),
                System.Runtime.InteropServices.GCHandle.Alloc(_flags, System.Runtime.InteropServices.GCHandleType.Pinned),
            ];
        }

        public ulong* Keys => (ulong*)_handles[0].AddrOfPinnedObject();
        public int* Order => (int*)_handles[1].AddrOfPinnedObject();
        public int* Positions => Order + _k;
        public int* Kept => Order + 2L * _k;
        public double* Coords => (double*)_handles[2].AddrOfPinnedObject();
        public byte* Flags => (byte*)_handles[3].AddrOfPinnedObject();

        public void Dispose()
        {
            foreach (var h in _handles) h.Free();
            ArrayPool<ulong>.Shared.Return(_keys);
            ArrayPool<int>.Shared.Return(_ints);
            ArrayPool<double>.Shared.Return(_coords);
            ArrayPool<byte>.Shared.Return(_flags);
        }
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
