// Detection losses as graph ops over the kernel library's device losses (GRcn.Kernels.Loss):
// softmax cross-entropy (RoI classification), smooth-L1 with β (box regression) and binary
// cross-entropy with logits (RPN objectness). The selection (labels, rows, indices, targets,
// weights) is host bookkeeping from the samplers; values, gradients and the scalar loss stay on
// the device. Sums run in double.
using GRcn.Detection.Autograd;
using GRcn.Kernels;

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
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(labels);
        if (logits.Value.Rank != 2 || logits.Dim(0) != labels.Length)
            throw new ArgumentException($"logits must have shape (R, K) with R = {labels.Length} labels; got {logits.Value.ShapeString}", nameof(logits));
        if (weights is not null && weights.Length != labels.Length)
            throw new ArgumentException($"weights must have {labels.Length} entries; got {weights.Length}", nameof(weights));
        using var w = weights is null ? null : Tensor.FromSpan<float>(g.Device, weights, weights.Length);
        return SoftmaxCrossEntropy(g, logits, labels, w, normalizer);
    }

    /// <summary>As the overload with host weights, the R row weights on the device (null: 1).</summary>
    public static Variable SoftmaxCrossEntropy(Graph g, Variable logits, int[] labels, Tensor? weights, double? normalizer = null)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(labels);
        double norm = normalizer ?? Math.Max(labels.Length, 1);
        using var o = new Outputs(g, logits);
        Loss.SoftmaxCrossEntropy(logits.Value, labels, weights, norm, o.Loss, o.Grad);
        return o.Result(g, logits);
    }

    /// <summary>
    /// Smooth-L1 (Huber with β): Σ over the selected rows and their 4 columns of
    /// wᵢ·smoothL1(pred[rowᵢ, 4·classᵢ + j] − targetᵢⱼ) / <paramref name="normalizer"/>.
    /// pred is (R, 4·C); rows, classes (per-row box column group, 0 for class-agnostic) and
    /// targets (4 per selected row) pick the terms. β = 0 gives L1.
    /// </summary>
    public static Variable SmoothL1(Graph g, Variable pred, int[] rows, int[] classes, float[] targets, float beta, double normalizer, float[]? weights = null)
    {
        using var w = weights is null ? null : Tensor.FromSpan<float>(pred.Value.Device, weights, weights.Length);
        return SmoothL1(g, pred, rows, classes, targets, beta, normalizer, w);
    }

    /// <summary>As the overload with host weights, one weight per selected row on the device (null: 1).</summary>
    public static Variable SmoothL1(Graph g, Variable pred, int[] rows, int[] classes, float[] targets, float beta, double normalizer, Tensor? weights)
    {
        ArgumentNullException.ThrowIfNull(pred);
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
        ArgumentNullException.ThrowIfNull(g);
        using var o = new Outputs(g, pred);
        Loss.SmoothL1(pred.Value, indices, targets, weights, 4, beta, Math.Max(normalizer, 1e-12), o.Loss, o.Grad);
        return o.Result(g, pred);
    }

    /// <summary>
    /// Smooth-L1 over distinct elements: Σⱼ w[j / groupSize]·smoothL1(x[indicesⱼ] − targetsⱼ) / <paramref name="normalizer"/>;
    /// weights (optional) apply per group of <paramref name="groupSize"/> consecutive terms (one box).
    /// </summary>
    public static Variable SmoothL1(Graph g, Variable x, int[] indices, float[] targets, float beta, double normalizer, float[]? weights, int groupSize)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(x);
        using var o = new Outputs(g, x);
        Loss.SmoothL1(x.Value, indices, targets, weights, groupSize, beta, Math.Max(normalizer, 1e-12), o.Loss, o.Grad);
        return o.Result(g, x);
    }

    /// <summary>
    /// Binary cross-entropy with logits over distinct selected elements of x (flat index),
    /// Σ BCE(x[indexᵢ], targetᵢ) / <paramref name="normalizer"/> (numerically stable form).
    /// </summary>
    public static Variable BinaryCrossEntropyWithLogits(Graph g, Variable x, int[] indices, float[] targets, double normalizer)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(x);
        using var o = new Outputs(g, x);
        Loss.BinaryCrossEntropyWithLogits(x.Value, indices, targets, Math.Max(normalizer, 1e-12), o.Loss, o.Grad);
        return o.Result(g, x);
    }

    /// <summary>A loss's (1,) value and x-shaped gradient on x's device; freed on dispose unless handed to the graph (the op rejected its arguments).</summary>
    private sealed class Outputs(Graph g, Variable x) : IDisposable
    {
        private bool _taken;

        public Tensor Loss { get; } = Tensor.Empty(g.Device, DataType.Float32, 1);

        public Tensor Grad { get; } = Tensor.Empty(g.Device, DataType.Float32, x.Shape);

        public Variable Result(Graph graph, Variable input)
        {
            _taken = true;
            return graph.LossResult(input, Loss, Grad);
        }

        public void Dispose()
        {
            if (_taken) return;
            Loss.Dispose();
            Grad.Dispose();
        }
    }
}
