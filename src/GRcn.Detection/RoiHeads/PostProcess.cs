// Inference output of the RoI head (torchvision's postprocess_detections): per RoI, softmax
// class scores and class-specific boxes decoded from the deltas, clipped to the image; every
// (RoI, object class) pair with score > threshold and a non-degenerate box is a candidate;
// per-class NMS; the top detections by score are kept; their boxes are mapped to the original
// image per axis as torchvision's GeneralizedRCNNTransform.postprocess (resize_boxes) does.
using GRcn.Detection.Boxes;
using GRcn.Detection.Data;
using GRcn.Detection.Variants;
using GRcn.Kernels;

namespace GRcn.Detection.RoiHeads;

internal static class PostProcess
{
    /// <summary>
    /// Detections of one image from logits (R, K+1) and deltas (R, 4(K+1)) of its RoIs (R×4),
    /// in original image pixels: resized coordinates times <paramref name="originalWidth"/> / <paramref name="width"/>
    /// (x) and <paramref name="originalHeight"/> / <paramref name="height"/> (y). Labels are 0-based object classes,
    /// named from <paramref name="classNames"/>.
    /// </summary>
    public static List<DetectedObject> Run(ReadOnlySpan<float> logits, ReadOnlySpan<float> deltas, ReadOnlySpan<float> rois, int classesWithBackground,
        int height, int width, int originalHeight, int originalWidth, RoiHeadSettings s, BoxCoder coder, IReadOnlyList<string> classNames)
    {
        // resize_boxes: ratio = torch.tensor(original, float32) / torch.tensor(resized, float32), one
        // float32 quotient per axis, then one float32 product per coordinate (not a division by the
        // resize rule's scale: a rounded resized side makes the two differ by up to half a pixel).
        float ratioX = (float)originalWidth / width, ratioY = (float)originalHeight / height;
        int r = rois.Length / 4, k1 = classesWithBackground;
        var candBoxes = new List<float>();
        var candScores = new List<float>();
        var candLabels = new List<long>();
        Span<float> box = stackalloc float[4];
        var probs = new double[k1];
        for (int i = 0; i < r; i++)
        {
            var row = logits.Slice(i * k1, k1);
            float max = float.NegativeInfinity;
            foreach (var v in row) max = MathF.Max(max, v);
            double sum = 0;
            for (int c = 0; c < k1; c++) sum += probs[c] = Math.Exp(row[c] - max);
            for (int c = 1; c < k1; c++)
            {
                float score = (float)(probs[c] / sum);
                if (!(score > s.ScoreThreshold)) continue;
                coder.Decode(deltas.Slice((i * k1 + c) * 4, 4), rois.Slice(4 * i, 4), box);
                BoxOps.Clip(box, height, width);
                // remove_small_boxes(min_size = 1e-2)
                if (box[2] - box[0] < 1e-2f || box[3] - box[1] < 1e-2f) continue;
                candBoxes.AddRange(box);
                candScores.Add(score);
                candLabels.Add(c);
            }
        }
        var result = new List<DetectedObject>();
        int n = candScores.Count;
        if (n == 0) return result;
        using var tb = Tensor.FromArray(candBoxes.ToArray(), n, 4);
        using var ts = Tensor.FromArray(candScores.ToArray(), n);
        using var tl = Tensor.FromArray(candLabels.ToArray(), n);
        using var keep = BatchedNms.Forward(tb, ts, tl, s.NmsThreshold);
        var kept = keep.ToArray<long>();
        for (int j = 0; j < kept.Length && j < s.DetectionsPerImage; j++)
        {
            int c = (int)kept[j];
            result.Add(new DetectedObject(
                new Box(candBoxes[4 * c] * ratioX, candBoxes[4 * c + 1] * ratioY, candBoxes[4 * c + 2] * ratioX, candBoxes[4 * c + 3] * ratioY),
                candScores[c], (int)candLabels[c] - 1) { ClassName = classNames[(int)candLabels[c] - 1] });
        }
        return result;
    }
}
