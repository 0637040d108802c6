// RPN proposal selection (GRcn.Kernels.RpnProposals) on the CPU, the reference the GPU kernels are
// checked against: the image's logits and deltas gathered into anchor order, the 64-bit keys
// (NmsCpu.DescendingKey(logit) << 32 | anchor) sorted, the first pre-NMS-N decoded in torchvision's
// float32 operation order, clipped, filtered (order kept), NMS (CPU backend), the first post-NMS-N.
// Single-threaded per image: at most a few tens of thousands of anchors.
namespace GRcn.Kernels.Cpu;

internal sealed unsafe partial class CpuBackend : IRpnProposalsBackend
{
    public (Tensor Boxes, Tensor Scores) Select(Tensor objectness, Tensor deltas, Tensor anchors, int image, int imageHeight, int imageWidth,
        in RpnProposalOptions o)
    {
        int a = objectness.Dim(1), hw = objectness.Dim(2) * objectness.Dim(3), p = hw * a;
        ReadOnlySpan<float> obj = objectness.AsSpan<float>().Slice(image * p, p);
        ReadOnlySpan<float> del = deltas.AsSpan<float>().Slice(image * 4 * p, 4 * p);
        ReadOnlySpan<float> anc = anchors.AsSpan<float>();

        // anchor i = s·A + a (s = y·W + x) reads channel a of the objectness and 4a + c of the deltas at s
        var keys = new ulong[p];
        for (int i = 0; i < p; i++) keys[i] = ((ulong)NmsCpu.DescendingKey(obj[(i % a) * hw + i / a]) << 32) | (uint)i;
        Array.Sort(keys);
        int k = Math.Min(o.PreNmsTopN, p);
        var boxes = new float[4 * k];
        var scores = new float[k];
        float width = imageWidth, height = imageHeight;
        int m = 0;
        for (int j = 0; j < k; j++)
        {
            int i = (int)(keys[j] & 0xFFFFFFFF), s = i / a, ai = i % a;
            float logit = obj[ai * hw + s];
            float score = 1f / (1f + MathF.Exp(-logit));
            var box = boxes.AsSpan(4 * m, 4);
            o.Coding.Decode(anc.Slice(4 * i, 4), del[(4 * ai) * hw + s], del[(4 * ai + 1) * hw + s], del[(4 * ai + 2) * hw + s], del[(4 * ai + 3) * hw + s], box);
            // clamp(min = 0, max = size) = min(max(v, 0), size); a NaN stays NaN (and fails the size test below)
            box[0] = MathF.Min(MathF.Max(box[0], 0f), width);
            box[1] = MathF.Min(MathF.Max(box[1], 0f), height);
            box[2] = MathF.Min(MathF.Max(box[2], 0f), width);
            box[3] = MathF.Min(MathF.Max(box[3], 0f), height);
            float bw = box[2] - box[0], bh = box[3] - box[1];
            if (!(bw >= o.MinSize && bh >= o.MinSize && score >= o.ScoreThreshold)) continue;
            scores[m++] = score;
        }
        if (m == 0) return (Tensor.Empty(objectness.Device, DataType.Float32, 0, 4), Tensor.Empty(objectness.Device, DataType.Float32, 0));

        long[] keep;
        using (var tb = Tensor.FromSpan<float>(objectness.Device, boxes.AsSpan(0, 4 * m), m, 4))
        using (var ts = Tensor.FromSpan<float>(objectness.Device, scores.AsSpan(0, m), m))
        using (var tk = Kernels.Nms.Forward(tb, ts, o.NmsThreshold))
            keep = tk.ToArray<long>();
        int kept = Math.Min(keep.Length, o.PostNmsTopN);
        var outBoxes = Tensor.Empty(objectness.Device, DataType.Float32, kept, 4);
        var outScores = Tensor.Empty(objectness.Device, DataType.Float32, kept);
        Span<float> ob = outBoxes.AsSpan<float>(), os = outScores.AsSpan<float>();
        for (int j = 0; j < kept; j++)
        {
            int s = (int)keep[j];
            boxes.AsSpan(4 * s, 4).CopyTo(ob.Slice(4 * j, 4));
            os[j] = scores[s];
        }
        return (outBoxes, outScores);
    }
}
