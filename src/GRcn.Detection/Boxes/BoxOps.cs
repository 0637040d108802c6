// Host box utilities as torchvision.ops: clip_boxes_to_image, remove_small_boxes and box_iou.
// Boxes are flat float spans, 4 per box [x1, y1, x2, y2]. IoU is float32 in torchvision's
// order (areas (x2 − x1)·(y2 − y1), inter = clamp(w, 0)·clamp(h, 0), union = a1 + a2 − inter,
// inter / union), so thresholds compare the same float32 values torchvision compares; the one
// deliberate difference: 0/0 (two empty boxes) is 0 here, NaN in torchvision. Single-threaded.
using GRcn.Kernels;

namespace GRcn.Detection.Boxes;

/// <summary>Box operations on host float arrays (torchvision.ops semantics).</summary>
public static class BoxOps
{
    /// <summary>Clamps x coordinates to [0, width] and y coordinates to [0, height] in place.</summary>
    /// <param name="boxes">Boxes, 4 floats per box.</param>
    /// <param name="height">Image height.</param>
    /// <param name="width">Image width.</param>
    public static void Clip(Span<float> boxes, int height, int width)
    {
        CheckBoxes(boxes, nameof(boxes));
        ArgumentOutOfRangeException.ThrowIfNegative(height);
        ArgumentOutOfRangeException.ThrowIfNegative(width);
        float w = width, h = height;
        for (int i = 0; i < boxes.Length; i += 4)
        {
            // clamp(min = 0, max = size) = min(max(v, 0), size); a NaN stays NaN as in torch.clamp
            boxes[i] = MathF.Min(MathF.Max(boxes[i], 0f), w);
            boxes[i + 1] = MathF.Min(MathF.Max(boxes[i + 1], 0f), h);
            boxes[i + 2] = MathF.Min(MathF.Max(boxes[i + 2], 0f), w);
            boxes[i + 3] = MathF.Min(MathF.Max(boxes[i + 3], 0f), h);
        }
    }

    /// <summary>Indices (ascending) of the boxes whose width and height are both ≥ <paramref name="minSize"/>.</summary>
    public static int[] RemoveSmall(ReadOnlySpan<float> boxes, float minSize)
    {
        CheckBoxes(boxes, nameof(boxes));
        int n = 0;
        for (int i = 0; i < boxes.Length; i += 4)
            if (IsLargeEnough(boxes, i, minSize)) n++;
        var keep = new int[n];
        n = 0;
        for (int i = 0; i < boxes.Length; i += 4)
            if (IsLargeEnough(boxes, i, minSize)) keep[n++] = i / 4;
        return keep;
    }

    private static bool IsLargeEnough(ReadOnlySpan<float> boxes, int i, float minSize) =>
        boxes[i + 2] - boxes[i] >= minSize && boxes[i + 3] - boxes[i + 1] >= minSize;

    /// <summary>IoU (A, B), row-major, of every box of <paramref name="a"/> with every box of <paramref name="b"/>.</summary>
    public static float[] Iou(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        CheckBoxes(a, nameof(a));
        CheckBoxes(b, nameof(b));
        var iou = new float[(long)(a.Length / 4) * (b.Length / 4)];
        Iou(a, b, iou);
        return iou;
    }

    /// <summary>Writes the IoU (A, B), row-major, of every box of <paramref name="a"/> with every box of <paramref name="b"/>.</summary>
    /// <param name="a">A boxes, 4 floats per box.</param>
    /// <param name="b">B boxes, 4 floats per box.</param>
    /// <param name="iou">Output, A·B floats: iou[i·B + j] = IoU(a_i, b_j).</param>
    public static void Iou(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> iou)
    {
        CheckBoxes(a, nameof(a));
        CheckBoxes(b, nameof(b));
        int na = a.Length / 4, nb = b.Length / 4;
        if (iou.Length != (long)na * nb)
            throw new ArgumentException($"iou must hold ({na}, {nb}) = {(long)na * nb} floats; got {iou.Length}", nameof(iou));
        for (int i = 0; i < na; i++)
            for (int j = 0; j < nb; j++) iou[i * nb + j] = BoxIou.Pair(a.Slice(4 * i, 4), b.Slice(4 * j, 4));
    }

    internal static void CheckBoxes(ReadOnlySpan<float> boxes, string name)
    {
        if (boxes.Length % 4 != 0)
            throw new ArgumentException($"{name} must hold 4 floats per box (K, 4) [x1, y1, x2, y2]; got {boxes.Length} floats", name);
    }
}
