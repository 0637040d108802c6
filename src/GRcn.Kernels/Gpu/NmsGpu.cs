// nms, batched_nms and box_iou on a GPU device: the kernels of kernels/Nms.cs and
// kernels/NmsSort.cs behind INmsBackend. Sort, IoU mask, sweep and (batched, per-class path)
// re-ordering all run on the device; the one transfer to the host is the kept count (8 bytes),
// which the caller needs to size its result.
using ILGPU;
using ILGPU.Runtime;
using GRcn.Kernels.Cpu;

namespace GRcn.Kernels.Gpu;

internal sealed partial class GpuBackend : INmsBackend
{
    private Action<Index1D, int, ArrayView<float>, ArrayView<ulong>>? _nmsKeys;
    private Action<KernelConfig, BitonicStep, ArrayView<ulong>>? _nmsSortLocal;
    private Action<Index1D, BitonicStep, ArrayView<ulong>>? _nmsSortGlobal;
    private Action<Index1D, int, ArrayView<ulong>, ArrayView<ulong>>? _nmsSortRank;
    private Action<Index1D, NmsShape, ArrayView<ulong>, ArrayView<float>, ArrayView<long>, ArrayView<long>, ArrayView<double>, ArrayView<long>>? _nmsGather;
    private Action<KernelConfig, NmsShape, ArrayView<double>, ArrayView<long>, ArrayView<ulong>>? _nmsMask;
    private Action<KernelConfig, NmsShape, ArrayView<ulong>, ArrayView<long>, ArrayView<ulong>, ArrayView<long>, ArrayView<long>>? _nmsSweep;
    private Action<Index1D, NmsShape, ArrayView<float>, ArrayView<long>, ArrayView<long>, ArrayView<int>, ArrayView<float>, ArrayView<int>>? _nmsPerClassOrder;
    private Action<Index1D, int, int, ArrayView<float>, ArrayView<float>, ArrayView<float>>? _boxIou;

    /// <summary>Boxes up to which the score order comes from the rank sort (above: bitonic).</summary>
    internal const int RankSortMaxBoxes = 16384;

    /// <summary>Test hook: 1 forces the bitonic sort at any size.</summary>
    [ThreadStatic] internal static int NmsForceBitonic;

    /// <summary>Test hook: keys per shared-memory sort chunk (a power of two, 2 .. <see cref="NmsSortKernels.MaxChunk"/>); 0 for the default.</summary>
    [ThreadStatic] internal static int NmsSortChunk;

    public int Nms(Tensor boxes, Tensor scores, double iouThreshold, Tensor keep) => RunNms(boxes, scores, null, iouThreshold, keep);

    public int BatchedNms(Tensor boxes, Tensor scores, Tensor idxs, double iouThreshold, Tensor keep) =>
        RunNms(boxes, scores, idxs, iouThreshold, keep);

    public void BoxIou(Tensor a, Tensor b, Tensor iou)
    {
        int na = a.Dim(0), nb = b.Dim(0);
        long count = (long)na * nb;
        if (count == 0) return;
        if (count > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(iou), $"box_iou of {na} × {nb} pairs: at most {int.MaxValue} on a GPU device");
        var k = Kernel(ref _boxIou, "box_iou",
            acc => acc.LoadAutoGroupedStreamKernel<Index1D, int, int, ArrayView<float>, ArrayView<float>, ArrayView<float>>(NmsKernels.BoxIou));
        k((int)count, nb, (int)count, a.Floats(), b.Floats(), iou.Floats());
    }

    /// <summary>nms (idxs null) or batched_nms: keep[0 .. count) in descending score order; returns count.</summary>
    private int RunNms(Tensor boxes, Tensor scores, Tensor? idxs, double threshold, Tensor keep)
    {
        int k = boxes.Dim(0);
        if (k == 0) return 0;
        int cb = (k + NmsKernels.BlockBoxes - 1) / NmsKernels.BlockBoxes;
        var shape = new NmsShape(k, cb, threshold, idxs is null ? 0 : 1);
        var dev = Device;

        using var keyBuffer = Tensor.Empty(dev, DataType.Int64, PowerOfTwo(k) + k);
        var keys = SortKeys(scores.Floats(), k, keyBuffer.Longs().Cast<ulong>());

        using var order = Tensor.Empty(dev, DataType.Int64, k);
        using var coords = Tensor.Empty(dev, DataType.Int64, 5, k);
        using var sortedClass = idxs is null ? null : Tensor.Empty(dev, DataType.Int64, k);
        var classes = sortedClass is null ? ArrayView<long>.Empty : sortedClass.Longs();
        var gather = Kernel(ref _nmsGather, "nms_gather",
            acc => acc.LoadAutoGroupedStreamKernel<Index1D, NmsShape, ArrayView<ulong>, ArrayView<float>, ArrayView<long>, ArrayView<long>,
                ArrayView<double>, ArrayView<long>>(NmsKernels.Gather));
        gather(k, shape, keys, boxes.Floats(), idxs is null ? ArrayView<long>.Empty : idxs.Longs(),
            order.Longs(), coords.Longs().Cast<double>(), classes);

        using var mask = Tensor.Empty(dev, DataType.Int64, k, cb);
        var maskKernel = Kernel(ref _nmsMask, "nms_mask",
            acc => acc.LoadStreamKernel<NmsShape, ArrayView<double>, ArrayView<long>, ArrayView<ulong>>(NmsKernels.Mask));
        // one group per block pair row ≤ col: cb·(cb + 1)/2 groups
        maskKernel(new KernelConfig((int)Math.Min(int.MaxValue, (long)cb * (cb + 1) / 2), NmsKernels.BlockBoxes), shape,
            coords.Longs().Cast<double>(), classes, mask.Longs().Cast<ulong>());

        using var removed = Tensor.Empty(dev, DataType.Int64, cb);
        using var count = Tensor.Empty(dev, DataType.Int64, 1);
        var sweep = Kernel(ref _nmsSweep, "nms_sweep",
            acc => acc.LoadStreamKernel<NmsShape, ArrayView<ulong>, ArrayView<long>, ArrayView<ulong>, ArrayView<long>, ArrayView<long>>(NmsKernels.Sweep));
        // one group: a warp per 32 words of a mask row, at most 1024 threads
        int threads = Math.Clamp((cb + 31) / 32 * 32, 32, 1024);
        sweep(new KernelConfig(1, threads), shape, mask.Longs().Cast<ulong>(), order.Longs(), removed.Longs().Cast<ulong>(),
            keep.Longs(), count.Longs());

        if (idxs is not null && k > NmsCpu.CoordinateTrickMaxBoxes)
        {
            using var flags = Tensor.Empty(dev, DataType.Float32, k);
            using var sortScores = Tensor.Empty(dev, DataType.Float32, k);
            using var stack = Tensor.Empty(dev, DataType.Float32, 3 * 64);
            var perClass = Kernel(ref _nmsPerClassOrder, "batched_nms_per_class_order",
                acc => acc.LoadAutoGroupedStreamKernel<Index1D, NmsShape, ArrayView<float>, ArrayView<long>, ArrayView<long>,
                    ArrayView<int>, ArrayView<float>, ArrayView<int>>(NmsKernels.PerClassOrder));
            perClass(1, shape, scores.Floats(), keep.Longs(), count.Longs(), flags.Floats().Cast<int>(), sortScores.Floats(),
                stack.Floats().Cast<int>());
        }

        // the only device → host transfer: the kept count
        return (int)count.ToArray<long>()[0];
    }

    /// <summary>
    /// The keys of the k scores sorted ascending, the stable descending score order
    /// (kernels/NmsSort.cs), in a part of buffer (n2 + k: n2 = a power of two ≥ max(k, 2)).
    /// </summary>
    private ArrayView<ulong> SortKeys(ArrayView<float> scores, int k, ArrayView<ulong> buffer)
    {
        int n2 = (int)(buffer.Length - k);
        var keys = buffer.SubView(0, n2);
        var init = Kernel(ref _nmsKeys, "nms_sort_keys",
            acc => acc.LoadAutoGroupedStreamKernel<Index1D, int, ArrayView<float>, ArrayView<ulong>>(NmsSortKernels.Keys));
        init(n2, k, scores, keys);
        return SortKeys(k, buffer);
    }

    /// <summary>
    /// Sorts the keys already written to buffer[0 .. n2) (k distinct keys, ulong.MaxValue padding) ascending;
    /// returns the view of the sorted keys, in buffer (n2 + k: n2 = a power of two ≥ max(k, 2)).
    /// </summary>
    private ArrayView<ulong> SortKeys(int k, ArrayView<ulong> buffer)
    {
        int n2 = (int)(buffer.Length - k);
        var keys = buffer.SubView(0, n2);
        if (k <= RankSortMaxBoxes && NmsForceBitonic == 0)
        {
            var rank = Kernel(ref _nmsSortRank, "nms_sort_rank",
                acc => acc.LoadAutoGroupedStreamKernel<Index1D, int, ArrayView<ulong>, ArrayView<ulong>>(NmsSortKernels.Rank));
            var sorted = buffer.SubView(n2, k);
            rank(k, k, keys, sorted);
            return sorted;
        }
        var local = Kernel(ref _nmsSortLocal, "nms_sort_local",
            acc => acc.LoadStreamKernel<BitonicStep, ArrayView<ulong>>(NmsSortKernels.Local));
        var global = Kernel(ref _nmsSortGlobal, "nms_sort_global",
            acc => acc.LoadAutoGroupedStreamKernel<Index1D, BitonicStep, ArrayView<ulong>>(NmsSortKernels.Global));
        int chunk = Math.Min(n2, NmsSortChunk > 0 ? NmsSortChunk : NmsSortKernels.MaxChunk);
        var config = new KernelConfig(n2 / chunk, chunk / 2);
        local(config, new BitonicStep(n2, chunk, 0, 0), keys);
        for (long stage = 2L * chunk; stage <= n2; stage <<= 1)
        {
            for (long j = stage >> 1; j >= chunk; j >>= 1) global(n2 / 2, new BitonicStep(n2, chunk, (int)stage, (int)j), keys);
            local(config, new BitonicStep(n2, chunk, (int)stage, 0), keys);
        }
        return keys;
    }

    /// <summary>The least power of two ≥ max(k, 2).</summary>
    private static int PowerOfTwo(int k)
    {
        if (k > 1 << 30) throw new ArgumentOutOfRangeException(nameof(k), $"{k} boxes: at most 2^30 on a GPU device");
        int n = 2;
        while (n < k) n <<= 1;
        return n;
    }
}
