// The losses of GRcn.Kernels.Loss on the CPU: one pass over the rows or selected elements in
// order, sums in double (the reference order the GPU kernels are checked against), the
// per-element gradient rounded to float32 once. Single-threaded: a step's losses cover a few
// thousand terms. The sum of squares runs sequentially over every element of every tensor.
namespace GRcn.Kernels.Cpu;

internal sealed unsafe partial class CpuBackend : ILossBackend
{
    public void SoftmaxCrossEntropy(Tensor logits, ReadOnlySpan<int> labels, ReadOnlySpan<float> weights, double normalizer, Tensor loss, Tensor grad)
    {
        int rows = logits.Dim(0), k = logits.Dim(1);
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

    public void SmoothL1(Tensor x, ReadOnlySpan<int> indices, ReadOnlySpan<float> targets, ReadOnlySpan<float> weights, int groupSize,
        float beta, double normalizer, Tensor loss, Tensor grad)
    {
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
