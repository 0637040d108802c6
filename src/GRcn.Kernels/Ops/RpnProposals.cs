// The proposals of one image from the RPN head's outputs on one feature level, as torchvision's
// RegionProposalNetwork.filter_proposals: the pre-NMS-N anchors of highest objectness logit
// (ties by anchor index, NaN first), decoded with their deltas (BoxCoder.decode_single: dw, dh
// clamped before exp), clipped to the image, boxes with a side below MinSize or a sigmoid score
// below ScoreThreshold dropped, NMS, the first post-NMS-N kept. Everything runs on the outputs'
// device; what comes back is the image's proposals and scores as tensors on that device.
// Layouts: objectness (N, A, H, W) and deltas (N, 4A, H, W) as the head writes them; anchor
// i = (y·W + x)·A + a (torchvision's permute_and_flatten order) reads objectness channel a and
// delta channels 4a .. 4a + 3 at (y, x); anchors (H·W·A, 4) in that order.
namespace GRcn.Kernels;

/// <summary>Device kernels of <see cref="RpnProposals"/>; arguments arrive validated.</summary>
internal interface IRpnProposalsBackend
{
    (Tensor Boxes, Tensor Scores) Select(Tensor objectness, Tensor deltas, Tensor anchors, int image, int imageHeight, int imageWidth, in RpnProposalOptions options);
}

/// <summary>Settings of <see cref="RpnProposals.Select"/> (torchvision's RPN defaults where it has them).</summary>
/// <param name="PreNmsTopN">Anchors kept by logit before decoding (≥ 1).</param>
/// <param name="PostNmsTopN">Proposals kept after NMS (≥ 1).</param>
/// <param name="NmsThreshold">IoU above which NMS drops the lower-scoring box.</param>
/// <param name="MinSize">Boxes with a side below this are dropped.</param>
/// <param name="ScoreThreshold">Boxes whose sigmoid score is below this are dropped.</param>
/// <param name="Coding">The RPN's box coding (torchvision: weights 1, clamp log(1000/16)).</param>
public readonly record struct RpnProposalOptions(int PreNmsTopN, int PostNmsTopN, double NmsThreshold, float MinSize, float ScoreThreshold, BoxCoding Coding);

/// <summary>RPN proposal selection for one image, on the head outputs' device.</summary>
/// <remarks>
/// Sorting, decoding, clipping, filtering, NMS and the top-N run on the device; on a GPU the host
/// learns two counts (the boxes surviving the filters, and NMS's kept count) to size the tensors.
/// Sigmoid and exp are the device's float32 functions, so a GPU may differ from the CPU in the last
/// bit of a score or box (and so, rarely, in an order or an NMS decision at exactly tied values).
/// </remarks>
public static class RpnProposals
{
    /// <summary>
    /// Proposals of image <paramref name="image"/>: boxes (P, 4) [x1, y1, x2, y2] in input pixels and their sigmoid
    /// scores (P), by descending score, P ≤ PostNmsTopN. The caller owns both tensors.
    /// </summary>
    /// <param name="objectness">Logits (N, A, H, W).</param>
    /// <param name="deltas">Deltas (N, 4A, H, W).</param>
    /// <param name="anchors">Anchors (H·W·A, 4) in anchor order, on the same device.</param>
    /// <param name="image">Which image, in [0, N).</param>
    /// <param name="imageHeight">Height the boxes are clipped to (≥ 0).</param>
    /// <param name="imageWidth">Width the boxes are clipped to (≥ 0).</param>
    /// <param name="options">Counts, thresholds and box coding.</param>
    public static (Tensor Boxes, Tensor Scores) Select(Tensor objectness, Tensor deltas, Tensor anchors, int image, int imageHeight, int imageWidth,
        RpnProposalOptions options)
    {
        Check.Tensor(objectness, nameof(objectness), 4, "(N, A, H, W)");
        int n = objectness.Dim(0), a = objectness.Dim(1), h = objectness.Dim(2), w = objectness.Dim(3);
        string deltaShape = $"(N, 4A, H, W) = ({n}, {4 * a}, {h}, {w})";
        Check.Tensor(deltas, nameof(deltas), 4, deltaShape);
        Check.Shape(deltas, nameof(deltas), deltaShape, n, 4 * a, h, w);
        Check.SameDevice(objectness, nameof(objectness), deltas, nameof(deltas));
        long p = (long)h * w * a;
        string anchorShape = $"(H·W·A, 4) = ({p}, 4)";
        Check.Tensor(anchors, nameof(anchors), 2, anchorShape);
        if (p > int.MaxValue) throw new ArgumentException($"objectness {objectness.ShapeString} has more than {int.MaxValue} anchors per image", nameof(objectness));
        Check.Shape(anchors, nameof(anchors), anchorShape, (int)p, 4);
        Check.SameDevice(objectness, nameof(objectness), anchors, nameof(anchors));
        if ((uint)image >= (uint)n) throw new ArgumentOutOfRangeException(nameof(image), image, $"image must be in [0, {n}) for objectness {objectness.ShapeString}");
        Check.NonNegative(imageHeight, nameof(imageHeight));
        Check.NonNegative(imageWidth, nameof(imageWidth));
        Check.Positive(options.PreNmsTopN, "options.PreNmsTopN");
        Check.Positive(options.PostNmsTopN, "options.PostNmsTopN");
        if (double.IsNaN(options.NmsThreshold)) throw new ArgumentOutOfRangeException(nameof(options), "options.NmsThreshold must be a number");
        options.Coding.Validate(nameof(options));
        if (float.IsNaN(options.MinSize) || float.IsNaN(options.ScoreThreshold))
            throw new ArgumentOutOfRangeException(nameof(options), "options.MinSize and ScoreThreshold must be numbers");
        return objectness.Device.Kernels<IRpnProposalsBackend>("rpn_proposals")
            .Select(objectness, deltas, anchors, image, imageHeight, imageWidth, options);
    }
}
