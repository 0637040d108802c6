// The detection losses with their gradients, on any device: softmax cross-entropy over rows of
// logits (RoI classification), smooth-L1 with β over selected elements (box regression) and
// binary cross-entropy with logits over selected elements (RPN objectness); the loss backward
// (the saved gradient times the upstream scalar); and the sum of squares over a list of tensors
// (the global gradient norm of clipping).
// The selection (labels, element indices, targets, weights) is the samplers' host bookkeeping and
// arrives as spans; the values, the gradient and the scalar loss stay on the tensors' device.
// Every sum runs in double in a fixed order (deterministic): sequential on the CPU, a group tree
// on a GPU, so the two agree to the last bits of a double before the float32 result is rounded.
namespace GRcn.Kernels;

/// <summary>Device kernels of <see cref="Loss"/>. Selections arrive validated (distinct indices inside x).</summary>
internal interface ILossBackend
{
    void SoftmaxCrossEntropy(Tensor logits, ReadOnlySpan<int> labels, Tensor? weights, double normalizer, Tensor loss, Tensor grad);
    void SmoothL1(Tensor x, ReadOnlySpan<int> indices, ReadOnlySpan<float> targets, Tensor? weights, int groupSize,
        float beta, double normalizer, Tensor loss, Tensor grad);
    void HarmonicWeights(Tensor logits, Tensor deltas, Tensor rois, ReadOnlySpan<int> rows, ReadOnlySpan<int> classes, ReadOnlySpan<float> gtBoxes,
        float gamma, in BoxCoding coding, Tensor classWeights, Tensor boxWeights);
    void BinaryCrossEntropyWithLogits(Tensor x, ReadOnlySpan<int> indices, ReadOnlySpan<float> targets, double normalizer, Tensor loss, Tensor grad);
    void Backward(Tensor grad, Tensor gradLoss, Tensor gradX);
    double SumOfSquares(IReadOnlyList<Tensor> tensors);
}

/// <summary>
/// torchvision's BoxCoder settings in float32: delta weights and the upper clamp of dw and dh before
/// exp. Decoding is (cx + dx/wx·w, cy + dy/wy·h, w·exp(min(dw/ww, clamp)), h·exp(min(dh/wh, clamp))) in
/// torchvision's operation order.
/// </summary>
/// <param name="Wx">Weight of dx.</param>
/// <param name="Wy">Weight of dy.</param>
/// <param name="Ww">Weight of dw.</param>
/// <param name="Wh">Weight of dh.</param>
/// <param name="Clamp">Upper clamp of dw/ww and dh/wh (torchvision: log(1000/16)).</param>
public readonly record struct BoxCoding(float Wx, float Wy, float Ww, float Wh, float Clamp)
{
    /// <summary>
    /// Decodes one box [x1, y1, x2, y2] from deltas (dx, dy, dw, dh) relative to <paramref name="reference"/> in
    /// torchvision's float32 operation order (the GPU kernels do the same with unfused multiplies). A NaN delta
    /// stays NaN (clamp keeps it, as torch.clamp).
    /// </summary>
    public void Decode(ReadOnlySpan<float> reference, float ddx, float ddy, float ddw, float ddh, Span<float> box)
    {
        float w = reference[2] - reference[0];
        float h = reference[3] - reference[1];
        float cx = reference[0] + 0.5f * w;
        float cy = reference[1] + 0.5f * h;
        float dx = ddx / Wx;
        float dy = ddy / Wy;
        float dw = MathF.Min(ddw / Ww, Clamp);
        float dh = MathF.Min(ddh / Wh, Clamp);
        float pcx = dx * w + cx;
        float pcy = dy * h + cy;
        float halfW = 0.5f * (MathF.Exp(dw) * w);
        float halfH = 0.5f * (MathF.Exp(dh) * h);
        box[0] = pcx - halfW;
        box[1] = pcy - halfH;
        box[2] = pcx + halfW;
        box[3] = pcy + halfH;
    }

    internal void Validate(string name)
    {
        foreach (var (v, field) in new[] { (Wx, "Wx"), (Wy, "Wy"), (Ww, "Ww"), (Wh, "Wh") })
            if (!(v > 0) || float.IsInfinity(v)) throw new ArgumentOutOfRangeException(name, $"{name}.{field} must be positive and finite; got {v}");
        if (float.IsNaN(Clamp)) throw new ArgumentOutOfRangeException(name, $"{name}.Clamp must be a number");
    }
}

/// <summary>Losses of Faster R-CNN with their gradients, float32 tensors on any device.</summary>
/// <remarks>
/// Each loss writes its scalar value into <c>loss</c> (shape (1,)) and dLoss/dx into <c>grad</c>
/// (x's shape, every element written: 0 outside the selection); <see cref="Backward"/> then scales
/// that gradient by the upstream one. Sums over terms run in double; the per-element formulas are
/// torch's numerically stable ones.
/// </remarks>
public static class Loss
{
    private static ILossBackend K(Tensor t, string op) => t.Device.Kernels<ILossBackend>(op);

    /// <summary>
    /// loss = Σᵣ wᵣ·(logsumexp(logitsᵣ) − logitsᵣ[labelsᵣ]) / <paramref name="normalizer"/> over logits (R, K);
    /// grad[r, j] = wᵣ·(softmax(logitsᵣ)ⱼ − [j = labelsᵣ]) / normalizer.
    /// </summary>
    /// <param name="logits">Logits (R, K).</param>
    /// <param name="labels">R labels in [0, K).</param>
    /// <param name="weights">R row weights, or empty for 1.</param>
    /// <param name="normalizer">Positive divisor (the mean: R).</param>
    /// <param name="loss">Output (1,).</param>
    /// <param name="grad">Output dLoss/dlogits (R, K).</param>
    public static void SoftmaxCrossEntropy(Tensor logits, ReadOnlySpan<int> labels, ReadOnlySpan<float> weights, double normalizer, Tensor loss, Tensor grad)
    {
        Check.Tensor(logits, nameof(logits), 2, "(R, K)");
        if (!weights.IsEmpty && weights.Length != logits.Dim(0))
            throw new ArgumentException($"weights must be empty or have one entry per row ({logits.Dim(0)}); got {weights.Length}", nameof(weights));
        using var w = weights.IsEmpty ? null : Tensor.FromSpan(logits.Device, weights, weights.Length);
        SoftmaxCrossEntropy(logits, labels, w, normalizer, loss, grad);
    }

    /// <summary>As the overload with host weights, the R row weights on logits' device (null: 1).</summary>
    public static void SoftmaxCrossEntropy(Tensor logits, ReadOnlySpan<int> labels, Tensor? weights, double normalizer, Tensor loss, Tensor grad)
    {
        Check.Tensor(logits, nameof(logits), 2, "(R, K)");
        int rows = logits.Dim(0), k = logits.Dim(1);
        if (labels.Length != rows)
            throw new ArgumentException($"labels must have one entry per row of logits {logits.ShapeString}; got {labels.Length}", nameof(labels));
        for (int r = 0; r < rows; r++)
            if ((uint)labels[r] >= (uint)k) throw new ArgumentException($"labels[{r}] = {labels[r]} is outside [0, {k})", nameof(labels));
        DeviceWeights(logits, nameof(logits), weights, rows);
        Outputs(logits, nameof(logits), normalizer, loss, grad);
        K(logits, "softmax_cross_entropy").SoftmaxCrossEntropy(logits, labels, weights, normalizer, loss, grad);
    }

    /// <summary>
    /// loss = Σⱼ w[j / groupSize]·smoothL1_β(x[indicesⱼ] − targetsⱼ) / <paramref name="normalizer"/>, with
    /// smoothL1_β(d) = ½d²/β where |d| &lt; β, else |d| − ½β (β = 0: L1); grad at indicesⱼ its derivative
    /// times the weight over the normalizer, 0 elsewhere.
    /// </summary>
    /// <param name="x">Predictions, any shape; indices are flat.</param>
    /// <param name="indices">Distinct flat indices into x.</param>
    /// <param name="targets">One target per index.</param>
    /// <param name="weights">One weight per group of <paramref name="groupSize"/> consecutive terms, or empty for 1.</param>
    /// <param name="groupSize">Terms per weight (4: one box).</param>
    /// <param name="beta">β ≥ 0, compared as float32 (as torch's smooth_l1_loss).</param>
    /// <param name="normalizer">Positive divisor.</param>
    /// <param name="loss">Output (1,).</param>
    /// <param name="grad">Output dLoss/dx, x's shape.</param>
    public static void SmoothL1(Tensor x, ReadOnlySpan<int> indices, ReadOnlySpan<float> targets, ReadOnlySpan<float> weights, int groupSize,
        float beta, double normalizer, Tensor loss, Tensor grad)
    {
        Check.NotNull(x, nameof(x));
        Check.Positive(groupSize, nameof(groupSize));
        if (!weights.IsEmpty && (long)weights.Length * groupSize != indices.Length)
            throw new ArgumentException($"weights must be empty or have one entry per {groupSize} terms ({indices.Length / groupSize}); got {weights.Length}", nameof(weights));
        using var w = weights.IsEmpty ? null : Tensor.FromSpan(x.Device, weights, weights.Length);
        SmoothL1(x, indices, targets, w, groupSize, beta, normalizer, loss, grad);
    }

    /// <summary>As the overload with host weights, one weight per group on x's device (null: 1).</summary>
    public static void SmoothL1(Tensor x, ReadOnlySpan<int> indices, ReadOnlySpan<float> targets, Tensor? weights, int groupSize,
        float beta, double normalizer, Tensor loss, Tensor grad)
    {
        Check.NotNull(x, nameof(x));
        Check.Positive(groupSize, nameof(groupSize));
        if (!(beta >= 0)) throw new ArgumentOutOfRangeException(nameof(beta), beta, "beta must be non-negative");
        Selection(x, indices, targets);
        if (indices.Length % groupSize != 0)
            throw new ArgumentException($"indices ({indices.Length}) must form whole groups of {groupSize}", nameof(indices));
        DeviceWeights(x, nameof(x), weights, indices.Length / groupSize);
        Outputs(x, nameof(x), normalizer, loss, grad);
        K(x, "smooth_l1").SmoothL1(x, indices, targets, weights, groupSize, beta, normalizer, loss, grad);
    }

    /// <summary>
    /// The Harmonic loss weights (docs/variants.md) of R sampled RoIs: each foreground RoI's box for its class is
    /// decoded from its deltas, its IoU u with its ground truth and its class probability p = softmax(logits)[class]
    /// are taken; classWeights[row] = 1 + u (1 for background rows) and boxWeights[j] = (1 + p)·h/mean(h) with
    /// h = u^γ over the foreground rows (the mean 1 when it is ≤ 1e-12). Weights are constants of the loss.
    /// </summary>
    /// <param name="logits">Class logits (R, K).</param>
    /// <param name="deltas">Class-specific deltas (R, 4K).</param>
    /// <param name="rois">The RoIs (R, 5) [image, x1, y1, x2, y2] the deltas are relative to.</param>
    /// <param name="rows">The foreground rows (R⁺), distinct, in [0, R).</param>
    /// <param name="classes">Each foreground row's class in [0, K).</param>
    /// <param name="gtBoxes">Each foreground row's ground-truth box, 4 floats per row.</param>
    /// <param name="gamma">γ of h = IoU^γ.</param>
    /// <param name="coding">The head's box coding.</param>
    /// <param name="classWeights">Output (R).</param>
    /// <param name="boxWeights">Output (R⁺).</param>
    public static void HarmonicWeights(Tensor logits, Tensor deltas, Tensor rois, ReadOnlySpan<int> rows, ReadOnlySpan<int> classes,
        ReadOnlySpan<float> gtBoxes, float gamma, BoxCoding coding, Tensor classWeights, Tensor boxWeights)
    {
        Check.Tensor(logits, nameof(logits), 2, "(R, K)");
        int r = logits.Dim(0), k = logits.Dim(1);
        Check.Tensor(deltas, nameof(deltas), 2, $"(R, 4K) = ({r}, {4 * k})");
        Check.Shape(deltas, nameof(deltas), "(R, 4K)", r, 4 * k);
        Check.Tensor(rois, nameof(rois), 2, $"(R, 5) = ({r}, 5)");
        Check.Shape(rois, nameof(rois), "(R, 5)", r, 5);
        Check.SameDevice(logits, nameof(logits), deltas, nameof(deltas));
        Check.SameDevice(logits, nameof(logits), rois, nameof(rois));
        if (classes.Length != rows.Length || gtBoxes.Length != 4 * rows.Length)
            throw new ArgumentException($"rows ({rows.Length}), classes ({classes.Length}) and gtBoxes ({gtBoxes.Length} = 4 per row) disagree", nameof(gtBoxes));
        Distinct(rows, r, nameof(rows), $"the {r} rows of logits");
        for (int j = 0; j < rows.Length; j++)
            if ((uint)classes[j] >= (uint)k) throw new ArgumentException($"classes[{j}] = {classes[j]} is outside [0, {k})", nameof(classes));
        if (!float.IsFinite(gamma)) throw new ArgumentOutOfRangeException(nameof(gamma), gamma, "gamma must be finite");
        coding.Validate(nameof(coding));
        Check.NotNull(classWeights, nameof(classWeights));
        Check.NotNull(boxWeights, nameof(boxWeights));
        DeviceWeights(logits, nameof(logits), classWeights, r, nameof(classWeights));
        DeviceWeights(logits, nameof(logits), boxWeights, rows.Length, nameof(boxWeights));
        K(logits, "harmonic_weights").HarmonicWeights(logits, deltas, rois, rows, classes, gtBoxes, gamma, coding, classWeights, boxWeights);
    }

    /// <summary>
    /// loss = Σᵢ (max(zᵢ, 0) − zᵢ·tᵢ + log(1 + e^−|zᵢ|)) / <paramref name="normalizer"/> with zᵢ = x[indicesᵢ],
    /// tᵢ = targetsᵢ; grad at indicesᵢ (σ(zᵢ) − tᵢ) / normalizer, 0 elsewhere.
    /// </summary>
    /// <param name="x">Logits, any shape; indices are flat.</param>
    /// <param name="indices">Distinct flat indices into x.</param>
    /// <param name="targets">One target in [0, 1] per index.</param>
    /// <param name="normalizer">Positive divisor.</param>
    /// <param name="loss">Output (1,).</param>
    /// <param name="grad">Output dLoss/dx, x's shape.</param>
    public static void BinaryCrossEntropyWithLogits(Tensor x, ReadOnlySpan<int> indices, ReadOnlySpan<float> targets, double normalizer, Tensor loss, Tensor grad)
    {
        Check.NotNull(x, nameof(x));
        Selection(x, indices, targets);
        Outputs(x, nameof(x), normalizer, loss, grad);
        K(x, "binary_cross_entropy_with_logits").BinaryCrossEntropyWithLogits(x, indices, targets, normalizer, loss, grad);
    }

    /// <summary>gradX = gradLoss[0]·grad: a loss's backward, the upstream gradient staying on the device. gradX may be grad.</summary>
    /// <param name="grad">The gradient a loss saved.</param>
    /// <param name="gradLoss">Upstream gradient of the scalar loss, (1,).</param>
    /// <param name="gradX">Output, grad's length.</param>
    public static void Backward(Tensor grad, Tensor gradLoss, Tensor gradX)
    {
        Check.NotNull(grad, nameof(grad));
        if (grad.DataType != DataType.Float32) throw new ArgumentException($"grad must be Float32; got {grad.DataType}", nameof(grad));
        Scalar(grad, nameof(grad), gradLoss, nameof(gradLoss));
        Check.NotNull(gradX, nameof(gradX));
        Check.SameDevice(grad, nameof(grad), gradX, nameof(gradX));
        if (gradX.DataType != DataType.Float32 || gradX.Length != grad.Length)
            throw new ArgumentException($"gradX must be Float32 with {grad.Length} elements like grad {grad.ShapeString}; got {gradX.DataType} {gradX.ShapeString}", nameof(gradX));
        K(grad, "loss_backward").Backward(grad, gradLoss, gradX);
    }

    /// <summary>Σ over every element of every tensor of x², in double (one scalar comes back to the host).</summary>
    /// <param name="tensors">Float32 tensors, all on one device (none: 0).</param>
    public static double SumOfSquares(IReadOnlyList<Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (tensors.Count == 0) return 0;
        for (int i = 0; i < tensors.Count; i++)
        {
            Check.NotNull(tensors[i], $"{nameof(tensors)}[{i}]");
            if (tensors[i].DataType != DataType.Float32)
                throw new ArgumentException($"tensors[{i}] must be Float32; got {tensors[i].DataType}", nameof(tensors));
            Check.SameDevice(tensors[0], $"{nameof(tensors)}[0]", tensors[i], $"{nameof(tensors)}[{i}]");
        }
        return K(tensors[0], "sum_of_squares").SumOfSquares(tensors);
    }

    /// <summary>Null, or a Float32 vector of <paramref name="count"/> elements on x's device.</summary>
    private static void DeviceWeights(Tensor x, string xName, Tensor? weights, int count, string name = "weights")
    {
        if (weights is null) return;
        Check.NotNull(weights, name);
        Check.SameDevice(x, xName, weights, name);
        if (weights.DataType != DataType.Float32 || weights.Length != count)
            throw new ArgumentException($"{name} must be Float32 with {count} elements; got {weights.DataType} {weights.ShapeString}", name);
    }

    private static void Outputs(Tensor x, string xName, double normalizer, Tensor loss, Tensor grad)
    {
        if (x.DataType != DataType.Float32) throw new ArgumentException($"{xName} must be Float32; got {x.DataType}", xName);
        if (!(normalizer > 0) || double.IsInfinity(normalizer))
            throw new ArgumentOutOfRangeException(nameof(normalizer), normalizer, "normalizer must be positive and finite");
        Scalar(x, xName, loss, nameof(loss));
        Check.NotNull(grad, nameof(grad));
        Check.SameDevice(x, xName, grad, nameof(grad));
        if (grad.DataType != DataType.Float32 || !grad.Shape.SequenceEqual(x.Shape))
            throw new ArgumentException($"grad must be Float32 with {xName}'s shape {x.ShapeString}; got {grad.DataType} {grad.ShapeString}", nameof(grad));
        if (ReferenceEquals(grad, x)) throw new ArgumentException($"grad must not be {xName}", nameof(grad));
    }

    private static void Scalar(Tensor x, string xName, Tensor s, string name)
    {
        Check.NotNull(s, name);
        Check.SameDevice(x, xName, s, name);
        if (s.DataType != DataType.Float32 || s.Length != 1)
            throw new ArgumentException($"{name} must be Float32 with one element (1,); got {s.DataType} {s.ShapeString}", name);
    }

    /// <summary>indices and targets pair up, every index lies inside x, and no index repeats.</summary>
    private static void Selection(Tensor x, ReadOnlySpan<int> indices, ReadOnlySpan<float> targets)
    {
        if (indices.Length != targets.Length)
            throw new ArgumentException($"indices ({indices.Length}) and targets ({targets.Length}) must have the same length", nameof(targets));
        Distinct(indices, x.Length, nameof(indices), $"x {x.ShapeString}");
    }

    /// <summary>Every index lies in [0, <paramref name="bound"/>) and none repeats (each term owns its output element, so the kernels write without atomics).</summary>
    private static void Distinct(ReadOnlySpan<int> indices, long bound, string name, string what)
    {
        if (indices.IsEmpty) return;
        var seen = System.Buffers.ArrayPool<ulong>.Shared.Rent((int)((bound + 63) / 64));
        try
        {
            Array.Clear(seen);
            for (int j = 0; j < indices.Length; j++)
            {
                int i = indices[j];
                if (i < 0 || i >= bound) throw new ArgumentException($"{name}[{j}] = {i} is outside {what}", name);
                ulong bit = 1UL << (i & 63);
                if ((seen[i >> 6] & bit) != 0) throw new ArgumentException($"{name}[{j}] = {i} repeats an earlier index; {name} must be distinct", name);
                seen[i >> 6] |= bit;
            }
        }
        finally
        {
            System.Buffers.ArrayPool<ulong>.Shared.Return(seen);
        }
    }
}
