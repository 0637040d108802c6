// Elementwise and per-channel ops the detection engine's layers need on every device:
// ReLU (forward/backward), add, scaled add, scale, multiply, per-channel affine (frozen batch
// norm, bias add), per-channel sums (bias gradients), global average pooling, copies of
// element ranges (slicing and concatenation along the outermost dimension), and the fused
// AdamW parameter update.
// "Channel" tensors are viewed as (N, C, S): N = Dim(0), C = Dim(1), S = the product of the rest.
namespace GRcn.Kernels;

/// <summary>Device kernels of <see cref="Elementwise"/>.</summary>
internal interface IElementwiseBackend
{
    void Relu(Tensor x, Tensor y);
    void ReluBackward(Tensor gradY, Tensor y, Tensor gradX);
    void Add(Tensor a, Tensor b, Tensor y);
    void AddScaled(Tensor y, Tensor x, float alpha);
    void Scale(Tensor x, float alpha, Tensor y);
    void Multiply(Tensor a, Tensor b, Tensor y);
    void ChannelAffine(Tensor x, Tensor? scale, Tensor? shift, Tensor y, int n, int c, long s);
    void ChannelSum(Tensor x, Tensor sum, int n, int c, long s, bool accumulate);
    void GlobalAveragePool(Tensor x, Tensor y, int n, int c, long s);
    void GlobalAveragePoolBackward(Tensor gradY, Tensor gradX, int n, int c, long s);
    void AdamWUpdate(Tensor weight, Tensor grad, Tensor expAvg, Tensor expAvgSq, in AdamWStep step);
    void DropoutMask(Tensor mask, ulong state, float p);
}

/// <summary>Scalars of one AdamW step (see <see cref="Elementwise.AdamWUpdate"/>).</summary>
/// <param name="LearningRate">lr.</param>
/// <param name="Beta1">β₁, the decay of the first moment.</param>
/// <param name="Beta2">β₂, the decay of the second moment.</param>
/// <param name="Epsilon">ε added to √v̂.</param>
/// <param name="WeightDecay">λ, decoupled weight decay.</param>
/// <param name="Step">1-based step count t (bias corrections 1 − βᵗ).</param>
public readonly record struct AdamWStep(float LearningRate, float Beta1, float Beta2, float Epsilon, float WeightDecay, int Step);

/// <summary>Elementwise and per-channel float32 ops, forward and backward, on any device.</summary>
/// <remarks>
/// Outputs are caller-allocated and may alias the first input where noted (in-place use).
/// Shapes are checked: every argument names itself in the exception.
/// </remarks>
public static class Elementwise
{
    private static IElementwiseBackend K(Tensor t, string op) => t.Device.Kernels<IElementwiseBackend>(op);

    /// <summary>y = max(x, 0); y may be x.</summary>
    public static void Relu(Tensor x, Tensor y)
    {
        Same(x, nameof(x), y, nameof(y));
        K(x, "relu").Relu(x, y);
    }

    /// <summary>gradX = gradY where y &gt; 0, else 0 (y is the ReLU output); gradX may be gradY.</summary>
    public static void ReluBackward(Tensor gradY, Tensor y, Tensor gradX)
    {
        Same(y, nameof(y), gradY, nameof(gradY));
        Same(y, nameof(y), gradX, nameof(gradX));
        K(y, "relu").ReluBackward(gradY, y, gradX);
    }

    /// <summary>y = a + b (same lengths); y may be a or b.</summary>
    public static void Add(Tensor a, Tensor b, Tensor y)
    {
        Same(a, nameof(a), b, nameof(b));
        Same(a, nameof(a), y, nameof(y));
        K(a, "add").Add(a, b, y);
    }

    /// <summary>y += alpha · x (same lengths).</summary>
    public static void AddScaled(Tensor y, Tensor x, float alpha = 1f)
    {
        Same(y, nameof(y), x, nameof(x));
        K(y, "add_scaled").AddScaled(y, x, alpha);
    }

    /// <summary>y = alpha · x; y may be x.</summary>
    public static void Scale(Tensor x, float alpha, Tensor y)
    {
        Same(x, nameof(x), y, nameof(y));
        K(x, "scale").Scale(x, alpha, y);
    }

    /// <summary>y = a ⊙ b; y may be a or b.</summary>
    public static void Multiply(Tensor a, Tensor b, Tensor y)
    {
        Same(a, nameof(a), b, nameof(b));
        Same(a, nameof(a), y, nameof(y));
        K(a, "multiply").Multiply(a, b, y);
    }

    /// <summary>
    /// Inverted-dropout mask from the SplitMix64 stream at <paramref name="state"/>: element e draws
    /// u = (z >> 40)·2⁻²⁴ from z = mix(state + (e + 1)·0x9E3779B97F4A7C15) (SplitMix64's (e + 1)-th output),
    /// and is 1 / (1 − p) where u ≥ p, else 0. The same stream on every device, so masks agree bit for bit;
    /// the caller advances its generator by mask.Length outputs.
    /// </summary>
    public static void DropoutMask(Tensor mask, ulong state, float p)
    {
        Same(mask, nameof(mask), mask, nameof(mask));
        if (!(p is >= 0f and < 1f)) throw new ArgumentOutOfRangeException(nameof(p), p, "dropout probability must be in [0, 1)");
        if (mask.Length > 0) K(mask, "dropout_mask").DropoutMask(mask, state, p);
    }

    /// <summary>
    /// y[n, c, s] = x[n, c, s] · scale[c] + shift[c] with x viewed as (N, C, S); a null scale is 1,
    /// a null shift 0. Frozen batch norm forward (both), its backward (scale only), bias add (shift only).
    /// y may be x.
    /// </summary>
    public static void ChannelAffine(Tensor x, Tensor? scale, Tensor? shift, Tensor y)
    {
        var (n, c, s) = Channels(x, nameof(x));
        Same(x, nameof(x), y, nameof(y));
        Vector(scale, nameof(scale), c, x);
        Vector(shift, nameof(shift), c, x);
        if (x.Length > 0) K(x, "channel_affine").ChannelAffine(x, scale, shift, y, n, c, s);
    }

    /// <summary>sum[c] (+)= Σ over n, s of x[n, c, s] (x viewed as (N, C, S)): bias gradients.</summary>
    public static void ChannelSum(Tensor x, Tensor sum, bool accumulate = false)
    {
        var (n, c, s) = Channels(x, nameof(x));
        Vector(sum, nameof(sum), c, x);
        K(x, "channel_sum").ChannelSum(x, sum, n, c, s, accumulate);
    }

    /// <summary>y[n, c] = mean over s of x[n, c, s]; y has shape (N, C).</summary>
    public static void GlobalAveragePool(Tensor x, Tensor y)
    {
        var (n, c, s) = Channels(x, nameof(x));
        Check.Tensor(y, nameof(y), 2, "(N, C)");
        Check.SameDevice(x, nameof(x), y, nameof(y));
        Check.Shape(y, nameof(y), "(N, C)", n, c);
        if (s == 0) throw new ArgumentException($"x must have a non-empty spatial extent; got {x.ShapeString}", nameof(x));
        K(x, "global_average_pool").GlobalAveragePool(x, y, n, c, s);
    }

    /// <summary>gradX[n, c, s] = gradY[n, c] / S.</summary>
    public static void GlobalAveragePoolBackward(Tensor gradY, Tensor gradX)
    {
        var (n, c, s) = Channels(gradX, nameof(gradX));
        Check.Tensor(gradY, nameof(gradY), 2, "(N, C)");
        Check.SameDevice(gradX, nameof(gradX), gradY, nameof(gradY));
        Check.Shape(gradY, nameof(gradY), "(N, C)", n, c);
        K(gradX, "global_average_pool").GlobalAveragePoolBackward(gradY, gradX, n, c, s);
    }

    /// <summary>
    /// One AdamW step in place (torch.optim.AdamW): w ← w·(1 − lr·λ); m ← β₁·m + (1 − β₁)·g;
    /// v ← β₂·v + (1 − β₂)·g²; w ← w − lr / (1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε). All four tensors have one length.
    /// </summary>
    public static void AdamWUpdate(Tensor weight, Tensor grad, Tensor expAvg, Tensor expAvgSq, AdamWStep step)
    {
        Same(weight, nameof(weight), grad, nameof(grad));
        Same(weight, nameof(weight), expAvg, nameof(expAvg));
        Same(weight, nameof(weight), expAvgSq, nameof(expAvgSq));
        if (step.Step < 1) throw new ArgumentOutOfRangeException(nameof(step), step.Step, "the step count t must be ≥ 1");
        if (!(step.Beta1 is >= 0 and < 1) || !(step.Beta2 is >= 0 and < 1))
            throw new ArgumentOutOfRangeException(nameof(step), $"β₁ ({step.Beta1}) and β₂ ({step.Beta2}) must be in [0, 1)");
        if (!(step.Epsilon > 0) || !float.IsFinite(step.LearningRate) || !float.IsFinite(step.WeightDecay))
            throw new ArgumentOutOfRangeException(nameof(step), "ε must be positive and lr, λ finite");
        K(weight, "adamw_update").AdamWUpdate(weight, grad, expAvg, expAvgSq, step);
    }

    private static void Same(Tensor reference, string referenceName, Tensor? other, string otherName)
    {
        Check.NotNull(reference, referenceName);
        Check.NotNull(other, otherName);
        if (reference.DataType != DataType.Float32)
            throw new ArgumentException($"{referenceName} must be Float32; got {reference.DataType}", referenceName);
        Check.SameDevice(reference, referenceName, other, otherName);
        if (other!.DataType != DataType.Float32 || other.Length != reference.Length)
            throw new ArgumentException($"{otherName} must be Float32 with {reference.Length} elements like {referenceName} {reference.ShapeString}; got {other.DataType} {other.ShapeString}", otherName);
    }

    private static (int N, int C, long S) Channels(Tensor x, string name)
    {
        Check.NotNull(x, name);
        if (x.Rank < 2 || x.DataType != DataType.Float32)
            throw new ArgumentException($"{name} must be Float32 with shape (N, C, ...); got {x.DataType} {x.ShapeString}", name);
        long s = 1;
        for (int i = 2; i < x.Rank; i++) s *= x.Dim(i);
        return (x.Dim(0), x.Dim(1), s);
    }

    private static void Vector(Tensor? v, string name, int c, Tensor x)
    {
        if (v is null) return;
        Check.Tensor(v, name, 1, "(C,)");
        Check.SameDevice(x, "x", v, name);
        Check.Shape(v, name, "(C,)", c);
    }
}
