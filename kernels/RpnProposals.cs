// RPN proposal selection on the GPU (see src/GRcn.Kernels/Ops/RpnProposals.cs), for one image:
//   Keys     one thread per padded key slot (a power of two n2 ≥ P): anchor i = s·A + a gets
//            DescendingKey(objectness[image, a, s]) << 32 | i, padding ulong.MaxValue; the keys are
//            then sorted by the NMS sort (kernels/NmsSort.cs), so the order is the CPU's.
//   Decode   one thread per selected anchor j < K = min(PreNmsTopN, P): the anchor of sorted key j,
//            its sigmoid score, decode (multiplies and adds unfused, division IEEE, as the CPU's
//            float32 order), clip, and the keep flag (both sides ≥ MinSize, score ≥ ScoreThreshold).
//   Compact  ONE group (GroupSums.For threads ≤ 256): thread t counts the flags of its contiguous
//            run of ⌈K / threads⌉ candidates, thread 0 turns the counts into offsets in shared
//            memory, and each thread moves its kept candidates there, so the order is kept; the
//            total goes to count[0].
//   Gather   one thread per kept proposal j: boxes and scores of NMS's keep[j].
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

/// <summary>
/// Scalars of a proposal launch: anchors per location A, H·W, the image's first objectness element, candidates
/// K, clip size, the box coding and the filters.
/// </summary>
internal readonly record struct ProposalParams(int A, int HW, long ObjectnessStart, int K, float Height, float Width,
    float Wx, float Wy, float Ww, float Wh, float Clamp, float MinSize, float ScoreThreshold);

internal static class RpnProposalsKernels
{
    /// <summary>keys[i] = DescendingKey(logit of anchor i) &lt;&lt; 32 | i for i &lt; P = A·HW, ulong.MaxValue up to the padded count.</summary>
    [Kernel]
    public static void Keys(Index1D i, ProposalParams q, ArrayView<float> objectness, ArrayView<ulong> keys)
    {
        int p = q.A * q.HW;
        // anchor i = s·A + a reads channel a at position s
        keys[i] = i < p ? ((ulong)NmsSortKernels.DescendingKey(objectness[q.ObjectnessStart + (long)(i % q.A) * q.HW + i / q.A]) << 32) | (uint)(int)i
            : ulong.MaxValue;
    }

    /// <summary>Candidate j: the box (4 floats at 4j), score and keep flag (1 or 0) of the anchor of sorted key j.</summary>
    [Kernel]
    public static void Decode(Index1D j, ProposalParams q, ArrayView<ulong> sorted, ArrayView<float> objectness, ArrayView<float> deltas,
        ArrayView<float> anchors, ArrayView<float> boxes, ArrayView<float> scores, ArrayView<int> flags)
    {
        if (j >= q.K) return;
        int i = (int)(uint)sorted[j], s = i / q.A, a = i % q.A;
        float logit = objectness[q.ObjectnessStart + (long)a * q.HW + s];
        float score = ExactMath.Div(1f, 1f + XMath.Exp(-logit));
        // the image's deltas start 4·P after the previous image's: ObjectnessStart·4
        long d0 = 4 * q.ObjectnessStart + (long)(4 * a) * q.HW + s;
        DecodeBox(anchors[4L * i], anchors[4L * i + 1], anchors[4L * i + 2], anchors[4L * i + 3],
            deltas[d0], deltas[d0 + q.HW], deltas[d0 + 2L * q.HW], deltas[d0 + 3L * q.HW], q.Wx, q.Wy, q.Ww, q.Wh, q.Clamp,
            out float bx1, out float by1, out float bx2, out float by2);
        float x1 = Clip(bx1, q.Width), y1 = Clip(by1, q.Height);
        float x2 = Clip(bx2, q.Width), y2 = Clip(by2, q.Height);
        boxes[4L * j] = x1;
        boxes[4L * j + 1] = y1;
        boxes[4L * j + 2] = x2;
        boxes[4L * j + 3] = y2;
        scores[j] = score;
        // NaN sides or scores fail the tests and drop the box
        flags[j] = x2 - x1 >= q.MinSize && y2 - y1 >= q.MinSize && score >= q.ScoreThreshold ? 1 : 0;
    }

    /// <summary>
    /// torchvision's decode_single of one box from reference (rx1, ry1, rx2, ry2) and deltas in its float32
    /// order (BoxCoding.Decode on the CPU): multiplies and adds unfused, divisions IEEE, dw and dh
    /// clamped above (NaN kept) before exp.
    /// </summary>
    public static void DecodeBox(float rx1, float ry1, float rx2, float ry2, float ddx, float ddy, float ddw, float ddh,
        float wx, float wy, float ww, float wh, float clamp, out float x1, out float y1, out float x2, out float y2)
    {
        float w = rx2 - rx1;
        float h = ry2 - ry1;
        float cx = ExactMath.Add(rx1, ExactMath.Mul(0.5f, w));
        float cy = ExactMath.Add(ry1, ExactMath.Mul(0.5f, h));
        float dx = ExactMath.Div(ddx, wx);
        float dy = ExactMath.Div(ddy, wy);
        float dw = ExactMath.Div(ddw, ww);
        float dh = ExactMath.Div(ddh, wh);
        dw = float.IsNaN(dw) ? dw : XMath.Min(dw, clamp);
        dh = float.IsNaN(dh) ? dh : XMath.Min(dh, clamp);
        float pcx = ExactMath.Add(ExactMath.Mul(dx, w), cx);
        float pcy = ExactMath.Add(ExactMath.Mul(dy, h), cy);
        float halfW = ExactMath.Mul(0.5f, ExactMath.Mul(XMath.Exp(dw), w));
        float halfH = ExactMath.Mul(0.5f, ExactMath.Mul(XMath.Exp(dh), h));
        x1 = pcx - halfW;
        y1 = pcy - halfH;
        x2 = pcx + halfW;
        y2 = pcy + halfH;
    }

    /// <summary>IoU of two boxes in torchvision's float32 order (BoxIou.Pair on the CPU): products unfused, 0 when both areas are 0.</summary>
    public static float Iou(float ax1, float ay1, float ax2, float ay2, float bx1, float by1, float bx2, float by2)
    {
        float areaA = ExactMath.Mul(ax2 - ax1, ay2 - ay1);
        float areaB = ExactMath.Mul(bx2 - bx1, by2 - by1);
        float w = XMath.Max(XMath.Min(ax2, bx2) - XMath.Max(ax1, bx1), 0f);
        float h = XMath.Max(XMath.Min(ay2, by2) - XMath.Max(ay1, by1), 0f);
        float inter = ExactMath.Mul(w, h);
        float union = ExactMath.Add(areaA, areaB) - inter;
        return inter == 0f && union == 0f ? 0f : ExactMath.Div(inter, union);
    }

    /// <summary>min(max(v, 0), size) with a NaN kept (torch.clamp, MathF.Min/Max).</summary>
    private static float Clip(float v, float size) => float.IsNaN(v) ? v : XMath.Min(XMath.Max(v, 0f), size);

    /// <summary>Moves the flagged candidates to the front in order (one group); count[0] = how many.</summary>
    [Kernel]
    public static void Compact(ProposalParams q, ArrayView<float> boxes, ArrayView<float> scores, ArrayView<int> flags,
        ArrayView<float> outBoxes, ArrayView<float> outScores, ArrayView<long> count)
    {
        var offsets = SharedMemory.Allocate<int>(GroupSums.Threads);
        int t = Group.IdxX, run = (q.K + Group.DimX - 1) / Group.DimX;
        int first = t * run, last = XMath.Min(first + run, q.K), kept = 0;
        for (int j = first; j < last; j++) kept += flags[j];
        offsets[t] = kept;
        Group.Barrier();
        if (t == 0)
        {
            int total = 0;
            for (int u = 0; u < Group.DimX; u++)
            {
                int c = offsets[u];
                offsets[u] = total;
                total += c;
            }
            count[0] = total;
        }
        Group.Barrier();
        int at = offsets[t];
        for (int j = first; j < last; j++)
        {
            if (flags[j] == 0) continue;
            for (int c = 0; c < 4; c++) outBoxes[4L * at + c] = boxes[4L * j + c];
            outScores[at] = scores[j];
            at++;
        }
    }

    /// <summary>outBoxes[j], outScores[j] = boxes[keep[j]], scores[keep[j]] for j &lt; outScores.Length.</summary>
    [Kernel]
    public static void Gather(Index1D j, ArrayView<long> keep, ArrayView<float> boxes, ArrayView<float> scores, ArrayView<float> outBoxes, ArrayView<float> outScores)
    {
        if (j >= outScores.Length) return;
        long s = keep[j];
        for (int c = 0; c < 4; c++) outBoxes[4L * j + c] = boxes[4 * s + c];
        outScores[j] = scores[s];
    }
}
