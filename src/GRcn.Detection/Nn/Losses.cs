// Detection losses, computed on the host from the logits/deltas (small: at most a few
// thousand rows) with their exact gradients, recorded as one graph node each:
// softmax cross-entropy (RoI classification), smooth-L1 with β (box regression) and
// binary cross-entropy with logits (RPN objectness). Sums run in double.
using GRcn.Detection.Autograd;

namespace GRcn.Detection.Nn;

/// <summary>The losses of Faster R-CNN, as differentiable graph ops.</summary>
public static class Losses
{
    /// <summary>
    /// Σᵢ wᵢ·(−log softmax(logitsᵢ)[labelsᵢ]) / <paramref name="normalizer"/> over logits (R, K).
    /// Null weights are 1; the normalizer defaults to R (the mean).
    /// </summary>
    public static Variable SoftmaxCrossEntropy(Graph g, Variable logits, int[] labels, float[]? weights = null, double? normalizer = null)
    {
        if (logits.Value.Rank != 2 || logits.Dim(0) != labels.Length)
            throw new ArgumentException($"logits must have shape (R, K) with R = {labels.Length} labels; got {logits.Value.ShapeString}", nameof(logits));
        if (weights is not null && weights.Length != labels.Length)
            throw new ArgumentException($"weights must have {labels.Length} entries; got {weights.Length}", nameof(weights));
        int rows = labels.Length, k = logits.Dim(1);
        foreach (var l in labels)
            if ((uint)l >= (uint)k) throw new ArgumentException($"labels must be in [0, {k}); got {l}", nameof(labels));
        double norm = normalizer ?? Math.Max(rows, 1);
        return g.HostLoss(logits, (x, grad) =>
        {
            double total = 0;
            for (int r = 0; r < rows; r++)
            {
                var row = x.Slice(r * k, k);
                var gr = grad.Slice(r * k, k);
                float max = float.NegativeInfinity;
                foreach (var v in row) max = MathF.Max(max, v);
                double sum = 0;
                for (int j = 0; j < k; j++) sum += Math.Exp(row[j] - max);
                double logSum = Math.Log(sum) + max;
                double w = weights?[r] ?? 1.0;
                total += w * (logSum - row[labels[r]]);
                for (int j = 0; j < k; j++)
                    gr[j] = (float)(w * (Math.Exp(row[j] - logSum) - (j == labels[r] ? 1 : 0)) / norm);
            }
            return total / norm;
        });
    }

    /// <summary>
    /// Smooth-L1 (Huber with β): Σ over the selected rows and their 4 columns of
    /// wᵢ·smoothL1(pred[rowᵢ, 4·classᵢ + j] − targetᵢⱼ) / <paramref name="normalizer"/>.
    /// pred is (R, 4·C); rows, classes (per-row box column group, 0 for class-agnostic) and
    /// targets (4 per selected row) pick the terms. β = 0 gives L1.
    /// </summary>
    public static Variable SmoothL1(Graph g, Variable pred, int[] rows, int[] classes, float[] targets, float beta, double normalizer, float[]? weights = null)
    {
        if (pred.Value.Rank != 2 || pred.Dim(1) % 4 != 0)
            throw new ArgumentException($"pred must have shape (R, 4·C); got {pred.Value.ShapeString}", nameof(pred));
        if (classes.Length != rows.Length || targets.Length != 4 * rows.Length)
            throw new ArgumentException($"rows ({rows.Length}), classes ({classes.Length}) and targets ({targets.Length} = 4 per row) disagree", nameof(targets));
        int cols = pred.Dim(1);
        var indices = new int[4 * rows.Length];
        for (int i = 0; i < rows.Length; i++)
        {
            if ((uint)rows[i] >= (uint)pred.Dim(0) || (uint)(4 * classes[i] + 3) >= (uint)cols)
                throw new ArgumentException($"selection {i} (row {rows[i]}, class {classes[i]}) is outside pred {pred.Value.ShapeString}", nameof(rows));
            for (int j = 0; j < 4; j++) indices[4 * i + j] = rows[i] * cols + 4 * classes[i] + j;
        }
        return SmoothL1(g, pred, indices, targets, beta, normalizer, weights, 4);
    }

    /// <summary>
    /// Smooth-L1 over arbitrary elements: Σⱼ w[j / groupSize]·smoothL1(x[indicesⱼ] − targetsⱼ) / <paramref name="normalizer"/>;
    /// weights (optional) apply per group of <paramref name="groupSize"/> consecutive terms (one box).
    /// </summary>
    public static Variable SmoothL1(Graph g, Variable x, int[] indices, float[] targets, float beta, double normalizer, float[]? weights, int groupSize)
    {
        CheckSelection(x, indices, targets);
        if (beta < 0) throw new ArgumentOutOfRangeException(nameof(beta), beta, "beta must be non-negative");
        if (weights is not null && weights.Length * groupSize != indices.Length)
            throw new ArgumentException($"weights must have one entry per {groupSize} terms ({indices.Length / Math.Max(groupSize, 1)}); got {weights.Length}", nameof(weights));
        double norm = Math.Max(normalizer, 1e-12);
        return g.HostLoss(x, (v, grad) =>
        {
            grad.Clear();
            double total = 0;
            for (int j = 0; j < indices.Length; j++)
            {
                double w = weights?[j / groupSize] ?? 1.0;
                double d = v[indices[j]] - targets[j];
                double ad = Math.Abs(d);
                double loss, dl;
                if (ad < beta)
                {
                    loss = 0.5 * d * d / beta;
                    dl = d / beta;
                }
                else
                {
                    loss = ad - 0.5 * beta;
                    dl = d > 0 ? 1 : d < 0 ? -1 : 0;
                }
                total += w * loss;
                grad[indices[j]] += (float)(w * dl / norm);
            }
            return total / norm;
        });
    }

    /// <summary>
    /// Binary cross-entropy with logits over the selected elements of x (flat index),
    /// Σ BCE(x[indexᵢ], targetᵢ) / <paramref name="normalizer"/> (numerically stable form).
    /// </summary>
    public static Variable BinaryCrossEntropyWithLogits(Graph g, Variable x, int[] indices, float[] targets, double normalizer)
    {
        CheckSelection(x, indices, targets);
        double norm = Math.Max(normalizer, 1e-12);
        return g.HostLoss(x, (v, grad) =>
        {
            grad.Clear();
            double total = 0;
            for (int i = 0; i < indices.Length; i++)
            {
                double z = v[indices[i]], t = targets[i];
                // max(z, 0) − z·t + log(1 + e^−|z|)
                total += Math.Max(z, 0) - z * t + Math.Log(1 + Math.Exp(-Math.Abs(z)));
                double sig = 1 / (1 + Math.Exp(-z));
                grad[indices[i]] += (float)((sig - t) / norm);
            }
            return total / norm;
        });
    }

    /// <summary>indices and targets pair up, and every index lies inside x.</summary>
    private static void CheckSelection(Variable x, int[] indices, float[] targets)
    {
        if (indices.Length != targets.Length)
            throw new ArgumentException($"indices ({indices.Length}) and targets ({targets.Length}) must have the same length", nameof(targets));
        foreach (var i in indices)
            if ((uint)i >= (ulong)x.Value.Length) throw new ArgumentException($"index {i} is outside x {x.Value.ShapeString}", nameof(indices));
    }
}
