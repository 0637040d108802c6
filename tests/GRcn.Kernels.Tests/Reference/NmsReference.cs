// Oracle for nms / batched_nms / box_iou: torchvision 0.14's CPU kernel written out plainly
// (float64 arithmetic on float32 inputs, stable descending order with NaN scores first, IoU
// strictly above the threshold suppresses), without any of the kernel's sorting or
// compaction tricks.
namespace GRcn.Kernels.Tests.Reference;

internal static class NmsReference
{
    /// <summary>Indices by descending score, NaN first, ties by ascending index.</summary>
    public static int[] StableOrder(float[] scores, IEnumerable<int> indices) =>
        indices.OrderBy(i => float.IsNaN(scores[i]) ? 0 : 1)
            .ThenByDescending(i => float.IsNaN(scores[i]) ? 0.0 : (double)scores[i])
            .ThenBy(i => i)
            .ToArray();

    /// <summary>IoU as nms_kernel.cpp computes it with T = double.</summary>
    public static double Iou(float[] boxes, int i, int j)
    {
        double ix1 = boxes[4 * i], iy1 = boxes[4 * i + 1], ix2 = boxes[4 * i + 2], iy2 = boxes[4 * i + 3];
        double jx1 = boxes[4 * j], jy1 = boxes[4 * j + 1], jx2 = boxes[4 * j + 2], jy2 = boxes[4 * j + 3];
        double iarea = (ix2 - ix1) * (iy2 - iy1);
        double jarea = (jx2 - jx1) * (jy2 - jy1);
        double w = Math.Max(0.0, Math.Min(ix2, jx2) - Math.Max(ix1, jx1));
        double h = Math.Max(0.0, Math.Min(iy2, jy2) - Math.Max(iy1, jy1));
        double inter = w * h;
        return inter / (iarea + jarea - inter);
    }

    /// <summary>Greedy NMS over the given candidate indices; returns kept indices in score order.</summary>
    public static List<int> Nms(float[] boxes, float[] scores, IEnumerable<int> candidates, double threshold)
    {
        var order = StableOrder(scores, candidates);
        var suppressed = new bool[order.Length];
        var keep = new List<int>();
        for (int a = 0; a < order.Length; a++)
        {
            if (suppressed[a]) continue;
            keep.Add(order[a]);
            for (int b = a + 1; b < order.Length; b++)
            {
                if (!suppressed[b] && Iou(boxes, order[a], order[b]) > threshold) suppressed[b] = true;
            }
        }
        return keep;
    }

    public static long[] Nms(float[] boxes, float[] scores, double threshold) =>
        Nms(boxes, scores, Enumerable.Range(0, scores.Length), threshold).Select(i => (long)i).ToArray();

    /// <summary>
    /// The set kept by NMS within each class. The order is the global stable score order, as
    /// torchvision's coordinate-trick path gives it (up to 1000 boxes); above that torchvision
    /// orders ties differently (its unstable sort), so compare sets or use distinct scores there.
    /// </summary>
    public static long[] BatchedNms(float[] boxes, float[] scores, long[] idxs, double threshold)
    {
        var kept = new List<int>();
        foreach (var cls in idxs.Distinct())
            kept.AddRange(Nms(boxes, scores, Enumerable.Range(0, scores.Length).Where(i => idxs[i] == cls), threshold));
        return StableOrder(scores, kept).Select(i => (long)i).ToArray();
    }

    /// <summary>IoU matrix as torchvision.ops.box_iou, in float64, with 0/0 taken as 0.</summary>
    public static float[] BoxIou(float[] a, float[] b)
    {
        int na = a.Length / 4, nb = b.Length / 4;
        var r = new float[na * nb];
        for (int i = 0; i < na; i++)
        {
            for (int j = 0; j < nb; j++)
            {
                double areaA = ((double)a[4 * i + 2] - a[4 * i]) * ((double)a[4 * i + 3] - a[4 * i + 1]);
                double areaB = ((double)b[4 * j + 2] - b[4 * j]) * ((double)b[4 * j + 3] - b[4 * j + 1]);
                double w = Math.Max(0.0, Math.Min((double)a[4 * i + 2], b[4 * j + 2]) - Math.Max((double)a[4 * i], b[4 * j]));
                double h = Math.Max(0.0, Math.Min((double)a[4 * i + 3], b[4 * j + 3]) - Math.Max((double)a[4 * i + 1], b[4 * j + 1]));
                double inter = w * h, union = areaA + areaB - inter;
                r[i * nb + j] = inter == 0 && union == 0 ? 0f : (float)(inter / union);
            }
        }
        return r;
    }
}
