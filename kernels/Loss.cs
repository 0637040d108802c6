// The detection losses on the GPU (see src/GRcn.Kernels/Ops/Loss.cs): softmax cross-entropy over
// rows of logits (R, K), smooth-L1 and binary cross-entropy with logits over selected elements,
// each one explicitly grouped kernel of ONE group (GroupSums.For threads): a step's losses cover
// at most a few thousand rows or terms, so one group finishes in microseconds and its fixed-order
// tree sum (GroupSums.Reduce, double) makes the scalar deterministic. Thread t takes rows/terms
// t, t + Group.DimX, ...; each writes the gradient of its own rows/terms (the selection's indices
// are distinct and the launcher zero-fills the gradient first), so no atomics.
// The per-element arithmetic is the CPU backend's (Cpu/LossCpu.cs): float32 differences rounded
// before the double exponential, double sums, one rounding of each gradient to float32.
// The sum of squares is two launches: SquaresPartial (up to 256 groups per tensor, each a strided
// share of the tensor summed in double, one partial per group at Offset + group) and SumPartials
// (one group adding the partials in order).
// LossBackward is one thread per element: gradX[e] = gradLoss[0]·grad[e].
// HarmonicWeights is ONE group too: thread t takes foreground RoIs t, t + Group.DimX, ...: decodes
// its class's box (RpnProposalsKernels.DecodeBox), its IoU with the ground truth and its class
// probability, writes 1 + IoU and 1 + p; the group sums IoU^γ (GroupSums.Reduce) and each thread
// scales its box weights by IoU^γ / mean.
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

/// <summary>
/// Scalars of a loss launch: rows and columns (cross-entropy) or terms (Count), whether weights
/// are given (0/1), terms per weight, β, the normalizer; for the sum of squares the tensor's first
/// partial slot (Offset).
/// </summary>
internal readonly record struct LossParams(int Rows, int K, int Count, int HasWeights, int GroupSize, float Beta, double Normalizer, int Offset);

/// <summary>Scalars of the Harmonic weights: RoIs R, classes K, foreground RoIs, γ and the head's box coding.</summary>
internal readonly record struct HarmonicParams(int Rows, int K, int Foreground, float Gamma, float Wx, float Wy, float Ww, float Wh, float Clamp);

internal static class LossKernels
{
    /// <summary>
    /// classWeights = 1 + IoU on foreground rows (1 elsewhere), boxWeights[j] = (1 + p)·IoU^γ / mean(IoU^γ);
    /// rows and classes hold each foreground RoI's row and class, gt its box, ious scratch (one double per foreground RoI).
    /// </summary>
    [Kernel]
    public static void HarmonicWeights(HarmonicParams q, ArrayView<float> logits, ArrayView<float> deltas, ArrayView<float> rois, ArrayView<long> rows,
        ArrayView<long> classes, ArrayView<float> gt, ArrayView<double> ious, ArrayView<float> classWeights, ArrayView<float> boxWeights)
    {
        var shared = SharedMemory.Allocate<double>(GroupSums.Warps);
        for (int r = Group.IdxX; r < q.Rows; r += Group.DimX) classWeights[r] = 1f;
        Group.Barrier();
        double sumH = 0;
        for (int j = Group.IdxX; j < q.Foreground; j += Group.DimX)
        {
            int row = (int)rows[j], c = (int)classes[j];
            long d = ((long)row * q.K + c) * 4;
            RpnProposalsKernels.DecodeBox(rois[5L * row + 1], rois[5L * row + 2], rois[5L * row + 3], rois[5L * row + 4],
                deltas[d], deltas[d + 1], deltas[d + 2], deltas[d + 3], q.Wx, q.Wy, q.Ww, q.Wh, q.Clamp,
                out float x1, out float y1, out float x2, out float y2);
            double iou = RpnProposalsKernels.Iou(x1, y1, x2, y2, gt[4L * j], gt[4L * j + 1], gt[4L * j + 2], gt[4L * j + 3]);
            long at = (long)row * q.K;
            float max = float.NegativeInfinity;
            for (int i = 0; i < q.K; i++) max = XMath.Max(max, logits[at + i]);
            double sum = 0;
            for (int i = 0; i < q.K; i++) sum += XMath.Exp((double)(logits[at + i] - max));
            double p = XMath.Exp((double)(logits[at + c] - max)) / sum;
            classWeights[row] = (float)(1 + iou);
            boxWeights[j] = (float)(1 + p);
            ious[j] = iou;
            sumH += XMath.Pow(iou, (double)q.Gamma);
        }
        sumH = GroupSums.Reduce(shared, sumH);
        double meanH = q.Foreground > 0 ? sumH / q.Foreground : 1;
        for (int j = Group.IdxX; j < q.Foreground; j += Group.DimX)
            boxWeights[j] = boxWeights[j] * (meanH > 1e-12 ? (float)(XMath.Pow(ious[j], (double)q.Gamma) / meanH) : 1f);
    }

    /// <summary>Softmax cross-entropy of every row, its gradient, and loss[0] = Σ wᵣ·ℓᵣ / normalizer.</summary>
    [Kernel]
    public static void SoftmaxCrossEntropy(LossParams q, ArrayView<float> logits, ArrayView<long> labels, ArrayView<float> weights,
        ArrayView<float> loss, ArrayView<float> grad)
    {
        var shared = SharedMemory.Allocate<double>(GroupSums.Warps);
        double total = 0;
        for (int r = Group.IdxX; r < q.Rows; r += Group.DimX)
        {
            long at = (long)r * q.K;
            float max = float.NegativeInfinity;
            for (int j = 0; j < q.K; j++) max = XMath.Max(max, logits[at + j]);
            double sum = 0;
            for (int j = 0; j < q.K; j++) sum += XMath.Exp((double)(logits[at + j] - max));
            double logSum = XMath.Log(sum) + max;
            double w = q.HasWeights != 0 ? weights[r] : 1.0;
            int label = (int)labels[r];
            total += w * (logSum - logits[at + label]);
            for (int j = 0; j < q.K; j++)
                grad[at + j] = (float)(w * (XMath.Exp(logits[at + j] - logSum) - (j == label ? 1.0 : 0.0)) / q.Normalizer);
        }
        total = GroupSums.Reduce(shared, total);
        if (Group.IdxX == 0) loss[0] = (float)(total / q.Normalizer);
    }

    /// <summary>Smooth-L1 of every selected term, its gradient at the term's index, and loss[0] = Σ w·ℓ / normalizer.</summary>
    [Kernel]
    public static void SmoothL1(LossParams q, ArrayView<float> x, ArrayView<long> indices, ArrayView<float> targets, ArrayView<float> weights,
        ArrayView<float> loss, ArrayView<float> grad)
    {
        var shared = SharedMemory.Allocate<double>(GroupSums.Warps);
        double total = 0;
        for (int j = Group.IdxX; j < q.Count; j += Group.DimX)
        {
            long i = indices[j];
            double w = q.HasWeights != 0 ? weights[j / q.GroupSize] : 1.0;
            // the float32 difference, as the CPU backend
            double d = x[i] - targets[j];
            double ad = XMath.Abs(d), l, dl;
            if (ad < q.Beta)
            {
                l = 0.5 * d * d / q.Beta;
                dl = d / q.Beta;
            }
            else
            {
                l = ad - 0.5 * q.Beta;
                dl = d > 0 ? 1.0 : d < 0 ? -1.0 : 0.0;
            }
            total += w * l;
            // 0 + g as the CPU's +=: a −0 gradient becomes +0 on both
            grad[i] = grad[i] + (float)(w * dl / q.Normalizer);
        }
        total = GroupSums.Reduce(shared, total);
        if (Group.IdxX == 0) loss[0] = (float)(total / q.Normalizer);
    }

    /// <summary>Binary cross-entropy with logits of every selected term, its gradient, and loss[0] = Σ ℓ / normalizer.</summary>
    [Kernel]
    public static void BinaryCrossEntropyWithLogits(LossParams q, ArrayView<float> x, ArrayView<long> indices, ArrayView<float> targets,
        ArrayView<float> loss, ArrayView<float> grad)
    {
        var shared = SharedMemory.Allocate<double>(GroupSums.Warps);
        double total = 0;
        for (int j = Group.IdxX; j < q.Count; j += Group.DimX)
        {
            long i = indices[j];
            double z = x[i], t = targets[j];
            // max(z, 0) − z·t + log(1 + e^−|z|)
            total += XMath.Max(z, 0.0) - z * t + XMath.Log(1 + XMath.Exp(-XMath.Abs(z)));
            double sig = 1 / (1 + XMath.Exp(-z));
            grad[i] = grad[i] + (float)((sig - t) / q.Normalizer);
        }
        total = GroupSums.Reduce(shared, total);
        if (Group.IdxX == 0) loss[0] = (float)(total / q.Normalizer);
    }

    /// <summary>gradX[e] = gradLoss[0]·grad[e] for element e = start + i.</summary>
    [Kernel]
    public static void Backward(Index1D i, long start, ArrayView<float> grad, ArrayView<float> gradLoss, ArrayView<float> gradX)
    {
        long e = start + i;
        if (e >= gradX.Length) return;
        gradX[e] = gradLoss[0] * grad[e];
    }

    /// <summary>partials[Offset + group] = Σ x² over the group's strided share of x (element e = (group·DimX + t) + k·GridDim·DimX).</summary>
    [Kernel]
    public static void SquaresPartial(LossParams q, ArrayView<float> x, ArrayView<double> partials)
    {
        var shared = SharedMemory.Allocate<double>(GroupSums.Warps);
        long stride = (long)Grid.DimX * Group.DimX;
        double total = 0;
        for (long e = (long)Grid.IdxX * Group.DimX + Group.IdxX; e < x.Length; e += stride)
        {
            double v = x[e];
            total += v * v;
        }
        total = GroupSums.Reduce(shared, total);
        if (Group.IdxX == 0) partials[q.Offset + Grid.IdxX] = total;
    }

    /// <summary>result[0] = Σ partials[0 .. Count) (one group, fixed order).</summary>
    [Kernel]
    public static void SumPartials(LossParams q, ArrayView<double> partials, ArrayView<double> result)
    {
        var shared = SharedMemory.Allocate<double>(GroupSums.Warps);
        double total = 0;
        for (int j = Group.IdxX; j < q.Count; j += Group.DimX) total += partials[j];
        total = GroupSums.Reduce(shared, total);
        if (Group.IdxX == 0) result[0] = total;
    }
}
