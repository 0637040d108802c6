// Box regression coding of Faster R-CNN, as torchvision's det_utils.BoxCoder: a box relative to
// a reference box (anchor or proposal) is (dx, dy, dw, dh) = (wx·(gx − rx)/rw, wy·(gy − ry)/rh,
// ww·log(gw/rw), wh·log(gh/rh)) with centres x1 + 0.5·w and widths x2 − x1 (no +1); decoding
// inverts it with dw, dh clamped to `clip` before exp. Every step is float32 in torchvision's
// operation order, so results agree with it to the last bit up to exp/log rounding.
// Shapes: boxes are flat float spans, 4 per box [x1, y1, x2, y2]; deltas 4 per box (or
// 4·C per box for class-specific deltas). Single-threaded: callers parallelise over images.
using GRcn.Kernels;

namespace GRcn.Detection.Boxes;

/// <summary>Encodes boxes as deltas relative to reference boxes and decodes them back (torchvision's BoxCoder).</summary>
public sealed class BoxCoder
{
    /// <summary>torchvision's default clamp of dw and dh: log(1000 / 16).</summary>
    public const double DefaultClip = 4.135166556742356;

    /// <summary>Creates a coder with weights (wx, wy, ww, wh) and the dw/dh clamp <paramref name="clip"/>.</summary>
    /// <param name="wx">Weight of dx (RPN 1, RoI head 10).</param>
    /// <param name="wy">Weight of dy (RPN 1, RoI head 10).</param>
    /// <param name="ww">Weight of dw (RPN 1, RoI head 5).</param>
    /// <param name="wh">Weight of dh (RPN 1, RoI head 5).</param>
    /// <param name="clip">Upper clamp of the decoded dw and dh (after dividing by the weights).</param>
    public BoxCoder(double wx, double wy, double ww, double wh, double clip = DefaultClip)
    {
        CheckWeight(wx, nameof(wx));
        CheckWeight(wy, nameof(wy));
        CheckWeight(ww, nameof(ww));
        CheckWeight(wh, nameof(wh));
        if (double.IsNaN(clip)) throw new ArgumentOutOfRangeException(nameof(clip), clip, "clip must be a number");
        // torchvision turns the Python-float weights and clamp into float32 scalars
        Wx = (float)wx;
        Wy = (float)wy;
        Ww = (float)ww;
        Wh = (float)wh;
        Clip = (float)clip;
    }

    /// <summary>Weight of dx.</summary>
    public float Wx { get; }

    /// <summary>Weight of dy.</summary>
    public float Wy { get; }

    /// <summary>Weight of dw.</summary>
    public float Ww { get; }

    /// <summary>Weight of dh.</summary>
    public float Wh { get; }

    /// <summary>Upper clamp of dw and dh before exp.</summary>
    public float Clip { get; }

    /// <summary>The same settings for the kernel library's device ops (RpnProposals, Loss.HarmonicWeights).</summary>
    public BoxCoding Coding => new(Wx, Wy, Ww, Wh, Clip);

    private static void CheckWeight(double w, string name)
    {
        if (!(w > 0) || double.IsInfinity(w))
            throw new ArgumentOutOfRangeException(name, w, "box coder weights must be positive and finite");
    }

    /// <summary>
    /// Deltas (K, 4) of <paramref name="gt"/> (K, 4) relative to <paramref name="reference"/> (K, 4),
    /// pairwise by row (torchvision's encode_single(gt, reference)).
    /// </summary>
    /// <param name="reference">Reference boxes (anchors or proposals), 4 floats per box.</param>
    /// <param name="gt">Target boxes, one per reference box.</param>
    /// <param name="deltas">Output, 4 floats per box.</param>
    public void Encode(ReadOnlySpan<float> reference, ReadOnlySpan<float> gt, Span<float> deltas)
    {
        if (reference.Length % 4 != 0)
            throw new ArgumentException($"reference must hold 4 floats per box (K, 4); got {reference.Length} floats", nameof(reference));
        if (gt.Length != reference.Length)
            throw new ArgumentException($"gt must have reference's shape ({reference.Length / 4}, 4); got {gt.Length} floats", nameof(gt));
        if (deltas.Length != reference.Length)
            throw new ArgumentException($"deltas must have shape ({reference.Length / 4}, 4); got {deltas.Length} floats", nameof(deltas));
        for (int i = 0; i < reference.Length; i += 4)
        {
            float exW = reference[i + 2] - reference[i];
            float exH = reference[i + 3] - reference[i + 1];
            float exCx = reference[i] + 0.5f * exW;
            float exCy = reference[i + 1] + 0.5f * exH;
            float gtW = gt[i + 2] - gt[i];
            float gtH = gt[i + 3] - gt[i + 1];
            float gtCx = gt[i] + 0.5f * gtW;
            float gtCy = gt[i + 1] + 0.5f * gtH;
            // torchvision's order: (w · difference) / size, w · log(ratio)
            deltas[i] = Wx * (gtCx - exCx) / exW;
            deltas[i + 1] = Wy * (gtCy - exCy) / exH;
            deltas[i + 2] = Ww * MathF.Log(gtW / exW);
            deltas[i + 3] = Wh * MathF.Log(gtH / exH);
        }
    }

    /// <summary>Boxes (K, 4) from <paramref name="deltas"/> (K, 4) applied to <paramref name="reference"/> (K, 4).</summary>
    /// <param name="deltas">Deltas, 4 floats per box.</param>
    /// <param name="reference">Reference boxes (anchors or proposals), 4 floats per box.</param>
    /// <param name="boxes">Output boxes, 4 floats per box (may not overlap the inputs).</param>
    public void Decode(ReadOnlySpan<float> deltas, ReadOnlySpan<float> reference, Span<float> boxes)
    {
        if (reference.Length % 4 != 0)
            throw new ArgumentException($"reference must hold 4 floats per box (K, 4); got {reference.Length} floats", nameof(reference));
        if (deltas.Length != reference.Length)
            throw new ArgumentException($"deltas must have shape ({reference.Length / 4}, 4); got {deltas.Length} floats", nameof(deltas));
        if (boxes.Length != reference.Length)
            throw new ArgumentException($"boxes must have shape ({reference.Length / 4}, 4); got {boxes.Length} floats", nameof(boxes));
        DecodeCore(deltas, reference, 1, boxes);
    }

    /// <summary>
    /// Class-specific boxes (K, 4·C) from deltas (K, 4·C) applied to <paramref name="reference"/> (K, 4):
    /// columns [4c, 4c + 4) of row k are class c's deltas of reference box k (torchvision's decode_single).
    /// </summary>
    /// <param name="deltas">Deltas, 4·<paramref name="numClasses"/> floats per reference box.</param>
    /// <param name="reference">Reference boxes, 4 floats per box.</param>
    /// <param name="numClasses">C, the number of 4-float groups per row.</param>
    /// <param name="boxes">Output, same layout as <paramref name="deltas"/>.</param>
    public void DecodePerClass(ReadOnlySpan<float> deltas, ReadOnlySpan<float> reference, int numClasses, Span<float> boxes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(numClasses, 1);
        if (reference.Length % 4 != 0)
            throw new ArgumentException($"reference must hold 4 floats per box (K, 4); got {reference.Length} floats", nameof(reference));
        long expected = (long)reference.Length * numClasses;
        if (deltas.Length != expected)
            throw new ArgumentException($"deltas must have shape ({reference.Length / 4}, {4 * numClasses}); got {deltas.Length} floats", nameof(deltas));
        if (boxes.Length != expected)
            throw new ArgumentException($"boxes must have shape ({reference.Length / 4}, {4 * numClasses}); got {boxes.Length} floats", nameof(boxes));
        DecodeCore(deltas, reference, numClasses, boxes);
    }

    private void DecodeCore(ReadOnlySpan<float> deltas, ReadOnlySpan<float> reference, int numClasses, Span<float> boxes)
    {
        var coding = Coding;
        int row = 4 * numClasses;
        // row k of deltas/boxes starts at k·4C; class c's group at + 4c
        for (int k = 0, r = 0; r < reference.Length; k++, r += 4)
            for (int o = k * row, end = o + row; o < end; o += 4)
                coding.Decode(reference.Slice(r, 4), deltas[o], deltas[o + 1], deltas[o + 2], deltas[o + 3], boxes.Slice(o, 4));
    }
}
