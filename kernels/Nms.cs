// nms, batched_nms and box_iou on the device, reproducing the CPU backend (Cpu/NmsCpu.cs) bit for
// bit: IoU in float64 as torchvision's nms_kernel.cpp, a box dropped when its IoU with a kept box
// is strictly above the threshold. Shapes: boxes (K, 4) [x1, y1, x2, y2], scores (K), idxs (K)
// int64, keep (K) int64 of which the first `count` are written.
//
// Pipeline (everything stays on the device; only the kept count comes back to the host):
//   1. score order: 64-bit keys (descending score key << 32 | index) sorted ascending, by rank
//      or bitonic (kernels/NmsSort.cs); the index in the low word makes every key unique, so the
//      order is the stable one (ties by index, NaN first, −0 = +0).
//   2. Gather: one thread per sorted position p: order[p], the box as float64 rows x1, y1, x2,
//      y2 and area (5 × K, coalesced), and its class (batched).
//   3. Mask: torchvision's nms_kernel: the sorted boxes in blocks of 64; one group of 64
//      threads per block pair (row, col) with row ≤ col (a 1-D grid over the triangle), stages
//      the 64 boxes of column block col in shared memory; thread t builds the 64-bit word of
//      sorted box row·64 + t against them: bit b set when it suppresses box col·64 + b (a later
//      box: only b > t on the diagonal block; batched: only boxes of its class). mask (K, colBlocks).
//   4. Sweep: one group walks the sorted boxes in order (torchvision's gather_keep_from_mask):
//      every thread holds the current block's removed word in a register; when a box is kept,
//      thread 0 writes its index and the group ORs its mask row into the removed words (global
//      scratch, words striped over the threads), then a barrier; the count goes to count[0].
//   5. batched_nms above NmsCpu.CoordinateTrickMaxBoxes boxes (torchvision's per-class path):
//      one thread re-orders the kept list as torch's unstable CPU sort does (PerClassOrder).
//
// box_iou: one thread per pair (a, b) of the (A, B) output, row-major, implicitly grouped.
//
// Multiplications go through Mul: on CUDA it is PTX mul.rn.f64, which the PTX assembler never
// contracts with a following add into an FMA (ILGPU's plain mul.f64 may be), so unions and IoUs
// round exactly as the CPU's (the threshold decisions depend on the last bit).
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

/// <summary>Sizes of one nms / batched_nms call: K boxes, ColBlocks = ⌈K / 64⌉ mask words per box, Batched 0/1.</summary>
internal readonly record struct NmsShape(int K, int ColBlocks, double Threshold, int Batched);

internal static class NmsKernels
{
    /// <summary>Boxes per mask word (bits of a ulong) and threads per mask group.</summary>
    public const int BlockBoxes = 64;

    /// <summary>
    /// Whether kept box i suppresses box j: NmsCpu.Suppresses term for term (std::max as
    /// a &lt; b ? b : a); with no overlap the IoU is 0 / union, above a negative threshold only,
    /// and NaN (never above) when the union is 0.
    /// </summary>
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
            double inter = ExactMath.Mul(ww, hh);
            return inter / (iarea + jarea - inter) > threshold;
        }
        return threshold < 0.0 && iarea + jarea != 0.0;
    }

    /// <summary>
    /// Step 2: sorted position p → order[p] (box index), coords rows x1, y1, x2, y2, area (5 × K,
    /// float64) and, batched, sortedClass[p].
    /// </summary>
    [Kernel]
    public static void Gather(Index1D p, NmsShape s, ArrayView<ulong> keys, ArrayView<float> boxes, ArrayView<long> idxs,
        ArrayView<long> order, ArrayView<double> coords, ArrayView<long> sortedClass)
    {
        if (p >= s.K) return;
        long i = (long)(keys[p] & 0xFFFF_FFFFul);
        order[p] = i;
        double x1 = boxes[4 * i], y1 = boxes[4 * i + 1], x2 = boxes[4 * i + 2], y2 = boxes[4 * i + 3];
        long k = s.K;
        coords[p] = x1;
        coords[k + p] = y1;
        coords[2 * k + p] = x2;
        coords[3 * k + p] = y2;
        coords[4 * k + p] = ExactMath.Mul(x2 - x1, y2 - y1);
        if (s.Batched != 0) sortedClass[p] = idxs[i];
    }

    /// <summary>Step 3: the suppression bitmask (see the file comment); groups of 64 threads, one per block pair row ≤ col.</summary>
    [Kernel]
    public static void Mask(NmsShape s, ArrayView<double> coords, ArrayView<long> sortedClass, ArrayView<ulong> mask)
    {
        // group g → (row, col) with row ≤ col, row-major over the triangle: row r starts at
        // g0(r) = r·cb − r(r − 1)/2; estimate r from the quadratic, then correct the rounding
        int cb = s.ColBlocks;
        long g = Grid.IdxX;
        long b2 = 2L * cb + 1;
        int row = (int)((b2 - XMath.Sqrt((double)(b2 * b2 - 8 * g))) / 2.0);
        if (row < 0) row = 0;
        if (row > cb - 1) row = cb - 1;
        while (row > 0 && RowStart(row, cb) > g) row--;
        while (row < cb - 1 && RowStart(row + 1, cb) <= g) row++;
        int col = row + (int)(g - RowStart(row, cb));
        var shared = SharedMemory.Allocate<double>(5 * BlockBoxes);
        var sharedClass = SharedMemory.Allocate<long>(BlockBoxes);
        int t = Group.IdxX;
        long k = s.K;
        int colSize = Min(s.K - col * BlockBoxes, BlockBoxes), rowSize = Min(s.K - row * BlockBoxes, BlockBoxes);
        if (t < colSize)
        {
            long j = (long)col * BlockBoxes + t;
            for (int r = 0; r < 5; r++) shared[r * BlockBoxes + t] = coords[r * k + j];
            if (s.Batched != 0) sharedClass[t] = sortedClass[j];
        }
        Group.Barrier();
        if (t >= rowSize) return;
        long i = (long)row * BlockBoxes + t;
        double ix1 = coords[i], iy1 = coords[k + i], ix2 = coords[2 * k + i], iy2 = coords[3 * k + i], iarea = coords[4 * k + i];
        long cls = s.Batched != 0 ? sortedClass[i] : 0;
        ulong word = 0;
        for (int b = row == col ? t + 1 : 0; b < colSize; b++)
        {
            if (s.Batched != 0 && sharedClass[b] != cls) continue;
            if (Suppresses(ix1, iy1, ix2, iy2, iarea,
                    shared[b], shared[BlockBoxes + b], shared[2 * BlockBoxes + b], shared[3 * BlockBoxes + b], shared[4 * BlockBoxes + b],
                    s.Threshold))
                word |= 1ul << b;
        }
        mask[i * s.ColBlocks + col] = word;
    }

    /// <summary>
    /// Step 4: the greedy sweep in one group (see the file comment): keep[0 .. count) = order of
    /// the kept sorted positions, count[0] = count; removed (ColBlocks) is scratch.
    /// </summary>
    [Kernel]
    public static void Sweep(NmsShape s, ArrayView<ulong> mask, ArrayView<long> order, ArrayView<ulong> removed,
        ArrayView<long> keep, ArrayView<long> count)
    {
        int t = Group.IdxX, threads = Group.DimX, cb = s.ColBlocks;
        for (int w = t; w < cb; w += threads) removed[w] = 0;
        Group.Barrier();
        int kept = 0;
        for (int nb = 0; nb < cb; nb++)
        {
            ulong rv = removed[nb];
            Group.Barrier();  // every thread has read word nb before any thread ORs into it again
            int end = Min(BlockBoxes, s.K - nb * BlockBoxes);
            for (int b = 0; b < end; b++)
            {
                if ((rv & (1ul << b)) != 0) continue;  // uniform: every thread holds the same rv
                long i = (long)nb * BlockBoxes + b;
                if (t == 0) keep[kept] = order[i];
                kept++;
                // the kept box's row: words before its own block are unused (lower triangle)
                long rowStart = i * cb;
                for (int w = nb + t; w < cb; w += threads) removed[w] |= mask[rowStart + w];
                Group.Barrier();
                // no barrier after this read: a thread already ORing the next kept box's row into
                // word nb adds only bits after that box (its row sets later boxes only), so the
                // slower threads' decisions up to it are the same; the next barrier re-syncs rv
                rv = removed[nb];
            }
        }
        if (t == 0) count[0] = kept;
    }

    /// <summary>
    /// Step 5, batched_nms's per-class path, one thread: torchvision takes the kept indices in
    /// ascending order and sorts them by descending score with torch's unstable CPU sort
    /// (libstdc++'s introsort, NmsCpu's IntroSort). Distinct scores have one order, the one the
    /// sweep wrote, so the thread returns at once unless two kept scores tie (equal, or both
    /// NaN); then it rebuilds the ascending list and runs the introsort step for step.
    /// flags (K) int, sortScores (K) float and stack (3 × 64) int are scratch.
    /// </summary>
    [Kernel]
    public static void PerClassOrder(Index1D unused, NmsShape s, ArrayView<float> scores, ArrayView<long> keep, ArrayView<long> count,
        ArrayView<int> flags, ArrayView<float> sortScores, ArrayView<int> stack)
    {
        if (unused != 0) return;
        int n = (int)count[0];
        bool ties = false;
        for (int c = 1; c < n && !ties; c++)
            ties = NmsSortKernels.DescendingKey(scores[keep[c - 1]]) == NmsSortKernels.DescendingKey(scores[keep[c]]);
        if (!ties) return;
        for (int i = 0; i < s.K; i++) flags[i] = 0;
        for (int c = 0; c < n; c++) flags[(int)keep[c]] = 1;
        int m = 0;
        for (int i = 0; i < s.K; i++)
        {
            if (flags[i] == 0) continue;
            keep[m] = i;
            sortScores[m] = scores[i];
            m++;
        }
        DeviceIntroSort.Sort(sortScores, keep, n, stack);
    }

    /// <summary>iou[a, b] for the pair of one thread (A, B row-major), NmsCpu.BoxIou's float64 arithmetic; 0/0 gives 0.</summary>
    [Kernel]
    public static void BoxIou(Index1D pair, int nb, int count, ArrayView<float> a, ArrayView<float> b, ArrayView<float> iou)
    {
        if (pair >= count) return;
        long ia = 4L * (pair / nb), ib = 4L * (pair % nb);
        double ax1 = a[ia], ay1 = a[ia + 1], ax2 = a[ia + 2], ay2 = a[ia + 3];
        double bx1 = b[ib], by1 = b[ib + 1], bx2 = b[ib + 2], by2 = b[ib + 3];
        double areaA = ExactMath.Mul(ax2 - ax1, ay2 - ay1);
        double areaB = ExactMath.Mul(bx2 - bx1, by2 - by1);
        // Math.Max(v, 0.0) / Math.Min / Math.Max of finite values as the CPU (Max(−0, 0) = +0)
        double w = MaxZero((ax2 < bx2 ? ax2 : bx2) - (ax1 > bx1 ? ax1 : bx1));
        double h = MaxZero((ay2 < by2 ? ay2 : by2) - (ay1 > by1 ? ay1 : by1));
        double inter = ExactMath.Mul(w, h);
        double union = areaA + areaB - inter;
        iou[pair] = inter == 0.0 && union == 0.0 ? 0f : (float)(inter / union);
    }

    /// <summary>First group of mask row r: the r earlier rows hold cb, cb − 1, …, cb − r + 1 pairs.</summary>
    private static long RowStart(int r, int cb) => (long)r * cb - (long)r * (r - 1) / 2;

    private static double MaxZero(double v) => v > 0.0 ? v : 0.0;

    private static int Min(int a, int b) => a < b ? a : b;
}

/// <summary>
/// NmsCpu's IntroSort (libstdc++'s std::sort with torch's descending NaN-first comparator) on
/// parallel arrays of scores and indices, in one device thread: the recursion of its loop
/// becomes an explicit stack of ranges (disjoint ranges, so the order they are finished in does
/// not change the result); a popped range's pushes have falling depths, so the stack holds at
/// most 2·⌊log2 n⌋ + 1 ≤ 63 frames.
/// </summary>
internal static class DeviceIntroSort
{
    private const int Threshold = 16;

    private static bool Less(float a, float b) => (float.IsNaN(a) && !float.IsNaN(b)) || a > b;

    private static void Swap(ArrayView<float> s, ArrayView<long> x, int i, int j)
    {
        float ts = s[i];
        s[i] = s[j];
        s[j] = ts;
        long tx = x[i];
        x[i] = x[j];
        x[j] = tx;
    }

    /// <summary>Sorts the first n pairs; stack holds 3 × 64 ints.</summary>
    public static void Sort(ArrayView<float> s, ArrayView<long> x, int n, ArrayView<int> stack)
    {
        if (n <= 1) return;
        int log2 = 0;
        for (int v = n; v > 1; v >>= 1) log2++;
        int sp = 0;
        stack[0] = 0;
        stack[1] = n;
        stack[2] = 2 * log2;
        sp = 1;
        while (sp > 0)
        {
            sp--;
            int first = stack[3 * sp], last = stack[3 * sp + 1], depth = stack[3 * sp + 2];
            while (last - first > Threshold)
            {
                if (depth == 0)
                {
                    HeapSort(s, x, first, last);
                    break;
                }
                depth--;
                int mid = first + (last - first) / 2;
                MoveMedianToFirst(s, x, first, first + 1, mid, last - 1);
                int cut = UnguardedPartition(s, x, first + 1, last, first);
                // the recursive call's range [cut, last) now, the loop's continuation [first, cut) later
                stack[3 * sp] = first;
                stack[3 * sp + 1] = cut;
                stack[3 * sp + 2] = depth;
                sp++;
                first = cut;
            }
        }
        if (n > Threshold)
        {
            InsertionSort(s, x, 0, Threshold);
            for (int i = Threshold; i < n; i++) UnguardedLinearInsert(s, x, i);
        }
        else InsertionSort(s, x, 0, n);
    }

    private static void MoveMedianToFirst(ArrayView<float> s, ArrayView<long> x, int result, int a, int b, int c)
    {
        if (Less(s[a], s[b]))
        {
            if (Less(s[b], s[c])) Swap(s, x, result, b);
            else if (Less(s[a], s[c])) Swap(s, x, result, c);
            else Swap(s, x, result, a);
        }
        else if (Less(s[a], s[c])) Swap(s, x, result, a);
        else if (Less(s[b], s[c])) Swap(s, x, result, c);
        else Swap(s, x, result, b);
    }

    private static int UnguardedPartition(ArrayView<float> s, ArrayView<long> x, int first, int last, int pivot)
    {
        while (true)
        {
            while (Less(s[first], s[pivot])) first++;
            last--;
            while (Less(s[pivot], s[last])) last--;
            if (!(first < last)) return first;
            Swap(s, x, first, last);
            first++;
        }
    }

    private static void InsertionSort(ArrayView<float> s, ArrayView<long> x, int first, int last)
    {
        if (first == last) return;
        for (int i = first + 1; i < last; i++)
        {
            if (Less(s[i], s[first]))
            {
                float vs = s[i];
                long vx = x[i];
                for (int m = i; m > first; m--)  // move [first, i) up by one, from the top
                {
                    s[m] = s[m - 1];
                    x[m] = x[m - 1];
                }
                s[first] = vs;
                x[first] = vx;
            }
            else UnguardedLinearInsert(s, x, i);
        }
    }

    private static void UnguardedLinearInsert(ArrayView<float> s, ArrayView<long> x, int last)
    {
        float vs = s[last];
        long vx = x[last];
        int next = last - 1;
        while (Less(vs, s[next]))
        {
            s[last] = s[next];
            x[last] = x[next];
            last = next;
            next--;
        }
        s[last] = vs;
        x[last] = vx;
    }

    private static void HeapSort(ArrayView<float> s, ArrayView<long> x, int first, int last)
    {
        int len = last - first;
        if (len >= 2)
        {
            int parent = (len - 2) / 2;
            while (true)
            {
                AdjustHeap(s, x, first, parent, len, s[first + parent], x[first + parent]);
                if (parent == 0) break;
                parent--;
            }
        }
        while (last - first > 1)
        {
            last--;
            float vs = s[last];
            long vx = x[last];
            s[last] = s[first];
            x[last] = x[first];
            AdjustHeap(s, x, first, 0, last - first, vs, vx);
        }
    }

    private static void AdjustHeap(ArrayView<float> s, ArrayView<long> x, int first, int hole, int len, float vs, long vx)
    {
        int top = hole, child = hole;
        while (child < (len - 1) / 2)
        {
            child = 2 * (child + 1);
            if (Less(s[first + child], s[first + child - 1])) child--;
            s[first + hole] = s[first + child];
            x[first + hole] = x[first + child];
            hole = child;
        }
        if ((len & 1) == 0 && child == (len - 2) / 2)
        {
            child = 2 * (child + 1);
            s[first + hole] = s[first + child - 1];
            x[first + hole] = x[first + child - 1];
            hole = child - 1;
        }
        int parent = (hole - 1) / 2;
        while (hole > top && Less(s[first + parent], vs))
        {
            s[first + hole] = s[first + parent];
            x[first + hole] = x[first + parent];
            hole = parent;
            parent = (hole - 1) / 2;
        }
        s[first + hole] = vs;
        x[first + hole] = vx;
    }
}
