// nms: boxes sorted by descending score (stable: ties keep input order); walking that order, a
// box is kept unless its IoU with an already kept box is strictly greater than the threshold.
// IoU = inter / (area_a + area_b − inter) with areas (x2 − x1)·(y2 − y1), no +1, computed in
// float64, as torchvision.ops.nms. Shapes: boxes (K, 4) [x1, y1, x2, y2], scores (K), keep (k) int64.
namespace GRcn.Kernels;

/// <summary>Device kernels of <see cref="Nms"/>, <see cref="BatchedNms"/> and <see cref="BoxIou"/>.</summary>
internal interface INmsBackend
{
    /// <summary>Writes the kept indices, in descending score order, into keep (K) and returns how many.</summary>
    int Nms(Tensor boxes, Tensor scores, double iouThreshold, Tensor keep);

    /// <summary>As <see cref="Nms"/> within each class of idxs (K) int64; result in descending score order.</summary>
    int BatchedNms(Tensor boxes, Tensor scores, Tensor idxs, double iouThreshold, Tensor keep);

    /// <summary>Fills iou (A, B) with the IoU of every pair of boxes a (A, 4), b (B, 4).</summary>
    void BoxIou(Tensor a, Tensor b, Tensor iou);
}

/// <summary>Non-maximum suppression, as <c>torchvision.ops.nms</c>.</summary>
public static class Nms
{
    /// <summary>Indices (int64) of the boxes kept, in descending score order.</summary>
    /// <param name="boxes">Boxes (K, 4) as [x1, y1, x2, y2], finite.</param>
    /// <param name="scores">Scores (K).</param>
    /// <param name="iouThreshold">A box is dropped when its IoU with a kept box is strictly greater than this.</param>
    /// <remarks>Zero boxes give an empty result.</remarks>
    public static Tensor Forward(Tensor boxes, Tensor scores, double iouThreshold)
    {
        int k = CheckBoxesAndScores(boxes, scores, iouThreshold);
        return Keep(boxes, k, (boxes, scores, iouThreshold),
            static (s, keep) => s.boxes.Device.Kernels<INmsBackend>("nms").Nms(s.boxes, s.scores, s.iouThreshold, keep));
    }

    internal static int CheckBoxesAndScores(Tensor boxes, Tensor scores, double iouThreshold)
    {
        Check.Tensor(boxes, nameof(boxes), 2, "(K, 4) rows [x1, y1, x2, y2]");
        Check.Dim(boxes, 1, 4, nameof(boxes), "(K, 4) rows [x1, y1, x2, y2]");
        int k = boxes.Dim(0);
        Check.Tensor(scores, nameof(scores), 1, "(K,) one per box");
        Check.Shape(scores, nameof(scores), "(K,) one per box", k);
        Check.SameDevice(boxes, nameof(boxes), scores, nameof(scores));
        if (double.IsNaN(iouThreshold))
            throw new ArgumentOutOfRangeException(nameof(iouThreshold), iouThreshold, "IoU threshold must be a number");
        Check.Finite(boxes, nameof(boxes));
        return k;
    }

    /// <summary>
    /// Runs a kernel that writes up to K indices, then returns them as a (kept,) int64 tensor
    /// (the kernel is a static lambda over <paramref name="state"/>, so nothing is captured).
    /// </summary>
    internal static Tensor Keep<TState>(Tensor boxes, int k, TState state, Func<TState, Tensor, int> kernel)
    {
        if (k == 0) return Tensor.Empty(boxes.Device, DataType.Int64, 0);
        using var all = Tensor.Empty(boxes.Device, DataType.Int64, k);
        int kept = kernel(state, all);
        var keep = Tensor.Empty(boxes.Device, DataType.Int64, kept);
        if (kept > 0) boxes.Device.Copy(all.Buffer, 0, keep.Buffer, 0, kept * sizeof(long));
        return keep;
    }
}

/// <summary>Class-aware non-maximum suppression, as <c>torchvision.ops.batched_nms</c>: boxes of different classes never suppress each other.</summary>
public static class BatchedNms
{
    /// <summary>Indices (int64) of the boxes kept, in descending score order over all classes.</summary>
    /// <param name="boxes">Boxes (K, 4) as [x1, y1, x2, y2], finite.</param>
    /// <param name="scores">Scores (K).</param>
    /// <param name="idxs">Class (or image) of each box (K), int64.</param>
    /// <param name="iouThreshold">A box is dropped when its IoU with a kept box of its class is strictly greater than this.</param>
    public static Tensor Forward(Tensor boxes, Tensor scores, Tensor idxs, double iouThreshold)
    {
        int k = Nms.CheckBoxesAndScores(boxes, scores, iouThreshold);
        Check.Tensor(idxs, nameof(idxs), 1, "(K,) int64, one per box", DataType.Int64);
        Check.Shape(idxs, nameof(idxs), "(K,) one per box", k);
        Check.SameDevice(boxes, nameof(boxes), idxs, nameof(idxs));
        return Nms.Keep(boxes, k, (boxes, scores, idxs, iouThreshold),
            static (s, keep) => s.boxes.Device.Kernels<INmsBackend>("batched_nms").BatchedNms(s.boxes, s.scores, s.idxs, s.iouThreshold, keep));
    }
}

/// <summary>Pairwise intersection over union, as <c>torchvision.ops.box_iou</c>.</summary>
public static class BoxIou
{
    /// <summary>
    /// IoU of two boxes [x1, y1, x2, y2] in float32, torchvision's box_iou order on float32 boxes
    /// (areas, intersection, union = areaA + areaB − inter); 0 when both areas are 0. The GPU
    /// kernels' RpnProposalsKernels.Iou computes the same with unfused products.
    /// </summary>
    public static float Pair(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        float areaA = (a[2] - a[0]) * (a[3] - a[1]);
        float areaB = (b[2] - b[0]) * (b[3] - b[1]);
        float w = MathF.Max(MathF.Min(a[2], b[2]) - MathF.Max(a[0], b[0]), 0f);
        float h = MathF.Max(MathF.Min(a[3], b[3]) - MathF.Max(a[1], b[1]), 0f);
        float inter = w * h;
        float union = areaA + areaB - inter;
        return inter == 0f && union == 0f ? 0f : inter / union;
    }

    /// <summary>IoU (A, B) of every box of <paramref name="a"/> (A, 4) with every box of <paramref name="b"/> (B, 4).</summary>
    /// <remarks>Areas are (x2 − x1)·(y2 − y1); two empty boxes have IoU NaN as 0/0 in torchvision, here 0.</remarks>
    public static Tensor Forward(Tensor a, Tensor b)
    {
        Check.Tensor(a, nameof(a), 2, "(A, 4) rows [x1, y1, x2, y2]");
        Check.Dim(a, 1, 4, nameof(a), "(A, 4) rows [x1, y1, x2, y2]");
        Check.Tensor(b, nameof(b), 2, "(B, 4) rows [x1, y1, x2, y2]");
        Check.Dim(b, 1, 4, nameof(b), "(B, 4) rows [x1, y1, x2, y2]");
        Check.SameDevice(a, nameof(a), b, nameof(b));
        Check.Finite(a, nameof(a));
        Check.Finite(b, nameof(b));
        var iou = Tensor.Empty(a.Device, DataType.Float32, a.Dim(0), b.Dim(0));
        if (iou.Length == 0) return iou;
        try
        {
            a.Device.Kernels<INmsBackend>("box_iou").BoxIou(a, b, iou);
            return iou;
        }
        catch
        {
            iou.Dispose();
            throw;
        }
    }
}
