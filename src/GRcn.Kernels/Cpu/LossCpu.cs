// The losses of GRcn.Kernels.Loss on the CPU: one pass over the rows or selected elements in
// order, sums in double (the reference order the GPU kernels are checked against), the
// per-element gradient rounded to float32 once. Single-threaded: a step's losses cover a few
// thousand terms. The sum of squares runs sequentially over every element of every tensor.
namespace GRcn.Kernels.Cpu;

internal sealed unsafe partial class CpuBackend : ILossBackend
{
    public void SoftmaxCrossEntropy(Tensor logits, ReadOnlySpan<int> labels, Tensor? weightTensor, double normalizer, Tensor loss, Tensor grad)
    {
        int rows = logits.Dim(0), k = logits.Dim(1);
        ReadOnlySpan<float> weights = weightTensor is null ? default : weightTensor.AsSpan<float>();
        ReadOnlySpan<float> x = logits.AsSpan<float>();
        Span<float> g = grad.AsSpan<float>();
        double total = 0;
        for (int r = 0; r < rows; r++)
        {
            var row = x.Slice(r * k, k);
            var gr = g.Slice(r * k, k);
            float max = float.NegativeInfinity;
            foreach (var v in row) max = MathF.Max(max, v);
            double sum = 0;
            // the difference rounds to float32 before the exponential (as the GPU kernel)
            for (int j = 0; j < k; j++) sum += Math.Exp(row[j] - max);
            double logSum = Math.Log(sum) + max;
            double w = weights.IsEmpty ? 1.0 : weights[r];
            total += w * (logSum - row[labels[r]]);
            for (int j = 0; j < k; j++)
                gr[j] = (float)(w * (Math.Exp(row[j] - logSum) - (j == labels[r] ? 1 : 0)) / normalizer);
        }
        loss.AsSpan<float>()[0] = (float)(total / normalizer);
    }

    public void SmoothL1(Tensor x, ReadOnlySpan<int> indices, ReadOnlySpan<float> targets, Tensor? weightTensor, int groupSize,
        float beta, double normalizer, Tensor loss, Tensor grad)
    {
        ReadOnlySpan<float> weights = weightTensor is null ? default : weightTensor.AsSpan<float>();
        ReadOnlySpan<float> v = x.AsSpan<float>();
        Span<float> g = grad.AsSpan<float>();
        g.Clear();
        double total = 0;
        for (int j = 0; j < indices.Length; j++)
        {
            double w = weights.IsEmpty ? 1.0 : weights[j / groupSize];
            // the difference rounds to float32 (as torch subtracts float32 tensors)
            var (l, dl) = SmoothL1Term(v[indices[j]] - targets[j], beta);
            total += w * l;
            g[indices[j]] += (float)(w * dl / normalizer);
        }
        loss.AsSpan<float>()[0] = (float)(total / normalizer);
    }

    /// <summary>smoothL1_β(d) and its derivative in double (the GPU kernel's Loss.SmoothL1Term).</summary>
    private static (double Loss, double Derivative) SmoothL1Term(double d, float beta)
    {
        double ad = Math.Abs(d);
        if (ad < beta) return (0.5 * d * d / beta, d / beta);
        return (ad - 0.5 * beta, d > 0 ? 1 : d < 0 ? -1 : 0);
    }

    public void BinaryCrossEntropyWithLogits(Tensor x, ReadOnlySpan<int> indices, ReadOnlySpan<float> targets, double normalizer, Tensor loss, Tensor grad)
    {
        ReadOnlySpan<float> v = x.AsSpan<float>();
        Span<float> g = grad.AsSpan<float>();
        g.Clear();
        double total = 0;
        for (int i = 0; i < indices.Length; i++)
        {
            double z = v[indices[i]], t = targets[i];
            // max(z, 0) − z·t + log(1 + e^−|z|)
            total += Math.Max(z, 0) - z * t + Math.Log(1 + Math.Exp(-Math.Abs(z)));
            double sig = 1 / (1 + Math.Exp(-z));
            g[indices[i]] += (float)((sig - t) / normalizer);
        }
        loss.AsSpan<float>()[0] = (float)(total / normalizer);
    }

    public void HarmonicWeights(Tensor logits, Tensor deltas, Tensor rois, ReadOnlySpan<int> rows, ReadOnlySpan<int> classes, ReadOnlySpan<float> gtBoxes,
        float gamma, in BoxCoding coding, Tensor classWeights, Tensor boxWeights)
    {
        int k = logits.Dim(1);
        ReadOnlySpan<float> lg = logits.AsSpan<float>(), dl = deltas.AsSpan<float>(), ro = rois.AsSpan<float>();
        Span<float> cw = classWeights.AsSpan<float>(), bw = boxWeights.AsSpan<float>();
        cw.Fill(1f);
        Span<float> box = stackalloc float[4];
        double sumH = 0;
        for (int j = 0; j < rows.Length; j++)
        {
            int row = rows[j], c = classes[j];
            var d = dl.Slice((row * k + c) * 4, 4);
            coding.Decode(ro.Slice(5 * row + 1, 4), d[0], d[1], d[2], d[3], box);
            double iou = Kernels.BoxIou.Pair(box, gtBoxes.Slice(4 * j, 4));
            var lrow = lg.Slice(row * k, k);
            float max = float.NegativeInfinity;
            foreach (var v in lrow) max = MathF.Max(max, v);
            double sum = 0;
            foreach (var v in lrow) sum += Math.Exp(v - max);
            double p = Math.Exp(lrow[c] - max) / sum;
            cw[row] = (float)(1 + iou);
            bw[j] = (float)(1 + p);
            sumH += Math.Pow(iou, gamma);
        }
        double meanH = rows.Length > 0 ? sumH / rows.Length : 1;
        for (int j = 0; j < rows.Length; j++)
        {
            // the IoU again, bit for bit: recomputing is cheaper than keeping R⁺ doubles
            int row = rows[j];
            var d = dl.Slice((row * k + classes[j]) * 4, 4);
            coding.Decode(ro.Slice(5 * row + 1, 4), d[0], d[1], d[2], d[3], box);
            double iou = Kernels.BoxIou.Pair(box, gtBoxes.Slice(4 * j, 4));
            bw[j] *= meanH > 1e-12 ? (float)(Math.Pow(iou, gamma) / meanH) : 1f;
        }
    }

    public void Backward(Tensor grad, Tensor gradLoss, Tensor gradX)
    {
        float up = gradLoss.AsSpan<float>()[0];
        if (up == 1f)
        {
            // the common case (a loss summed with weight 1): the gradient unchanged, bit for bit
            if (!ReferenceEquals(grad, gradX)) grad.AsSpan<float>().CopyTo(gradX.AsSpan<float>());
            return;
        }
        Scale(grad, up, gradX);
    }

    public double SumOfSquares(IReadOnlyList<Tensor> tensors)
    {
        double sum = 0;
        foreach (var t in tensors)
            foreach (var v in t.AsSpan<float>()) sum += (double)v * v;
        return sum;
    }
}
