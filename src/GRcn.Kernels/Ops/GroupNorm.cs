// group_norm: x (N, C, *) viewed as (N, G, C/G · S) with S the product of the trailing dims;
// per (n, g): μ = mean, σ² = biased variance over the group's C/G · S elements, rstd = 1/√(σ² + ε);
// y[n, c, s] = (x[n, c, s] − μ[n, g]) · rstd[n, g] · weight[c] + bias[c], g = c / (C/G),
// as torch.nn.functional.group_norm. Forward also returns μ and rstd (N, G) for the backward.
// Backward: with γ = weight (1 when absent), M = C/G · S, x̂ = (x − μ)·rstd,
//   dx = rstd·(γ·dy − mean_g(γ·dy) − x̂·mean_g(γ·dy·x̂)),
//   dweight[c] = Σ_{n,s} dy·x̂,   dbias[c] = Σ_{n,s} dy.
namespace GRcn.Kernels;

/// <summary>Shape of one group-norm call: x viewed as (N, C, S) with G groups of C/G channels.</summary>
internal readonly record struct GroupNormGeometry(int N, int C, long S, int Groups)
{
    public int ChannelsPerGroup => C / Groups;
}

internal interface IGroupNormBackend
{
    void GroupNormForward(Tensor x, Tensor? weight, Tensor? bias, float epsilon, Tensor y, Tensor mean, Tensor rstd, in GroupNormGeometry g);

    void GroupNormBackward(Tensor gradY, Tensor x, Tensor mean, Tensor rstd, Tensor? weight,
        Tensor? gradX, Tensor? gradWeight, Tensor? gradBias, in GroupNormGeometry g);
}

/// <summary>The output of <see cref="GroupNorm.Forward"/>: y (N, C, *) and the statistics the backward needs.</summary>
/// <param name="Output">y, the shape of x.</param>
/// <param name="Mean">μ per (sample, group), (N, G).</param>
/// <param name="Rstd">1/√(σ² + ε) per (sample, group), (N, G).</param>
public sealed record GroupNormResult(Tensor Output, Tensor Mean, Tensor Rstd) : IDisposable
{
    /// <summary>Frees the three tensors.</summary>
    public void Dispose()
    {
        Output.Dispose();
        Mean.Dispose();
        Rstd.Dispose();
    }
}

/// <summary>Group normalisation (Wu &amp; He, 2018), forward and backward, on any device.</summary>
/// <remarks>
/// Computes <c>torch.nn.functional.group_norm(x, groups, weight, bias, eps)</c>: statistics per sample
/// and group of C/G consecutive channels, biased variance, then a per-channel affine. Independent of the
/// batch size, so training and inference compute the same function (detectors trained from scratch
/// with small batches use it in place of batch norm).
/// </remarks>
public static class GroupNorm
{
    /// <summary>y = group_norm(x) for x (N, C, *) with C divisible by <paramref name="groups"/>; weight and bias (C) or null.</summary>
    public static GroupNormResult Forward(Tensor x, int groups, Tensor? weight, Tensor? bias, float epsilon = 1e-5f)
    {
        var g = Resolve(x, nameof(x), groups, epsilon);
        CheckVector(weight, nameof(weight), x, g.C);
        CheckVector(bias, nameof(bias), x, g.C);
        var y = Tensor.Empty(x.Device, DataType.Float32, x.Shape);
        var mean = Tensor.Empty(x.Device, DataType.Float32, g.N, groups);
        var rstd = Tensor.Empty(x.Device, DataType.Float32, g.N, groups);
        var result = new GroupNormResult(y, mean, rstd);
        try
        {
            if (x.Length > 0)
                x.Device.Kernels<IGroupNormBackend>("group_norm").GroupNormForward(x, weight, bias, epsilon, y, mean, rstd, g);
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Gradients of <see cref="Forward"/> given dy (the shape of x), x, and the forward's μ and rstd (N, G).
    /// Each of <paramref name="gradX"/> (the shape of x), <paramref name="gradWeight"/> and
    /// <paramref name="gradBias"/> (C) is computed when not null and overwritten.
    /// </summary>
    public static void Backward(Tensor gradY, Tensor x, Tensor mean, Tensor rstd, int groups, Tensor? weight,
        Tensor? gradX, Tensor? gradWeight, Tensor? gradBias)
    {
        var g = Resolve(x, nameof(x), groups, 0f);
        Check.Tensor(gradY, nameof(gradY), x.Rank, "the shape of x");
        Check.SameDevice(x, nameof(x), gradY, nameof(gradY));
        Check.Shape(gradY, nameof(gradY), "the shape of x", [.. x.Shape]);
        CheckStatistics(mean, nameof(mean), x, g);
        CheckStatistics(rstd, nameof(rstd), x, g);
        CheckVector(weight, nameof(weight), x, g.C);
        if (gradX is not null)
        {
            Check.Tensor(gradX, nameof(gradX), x.Rank, "the shape of x");
            Check.SameDevice(x, nameof(x), gradX, nameof(gradX));
            Check.Shape(gradX, nameof(gradX), "the shape of x", [.. x.Shape]);
        }
        CheckVector(gradWeight, nameof(gradWeight), x, g.C);
        CheckVector(gradBias, nameof(gradBias), x, g.C);
        if (gradX is null && gradWeight is null && gradBias is null) return;
        if (x.Length == 0)
        {
            gradWeight?.Fill(0f);
            gradBias?.Fill(0f);
            return;
        }
        x.Device.Kernels<IGroupNormBackend>("group_norm").GroupNormBackward(gradY, x, mean, rstd, weight, gradX, gradWeight, gradBias, g);
    }

    private static GroupNormGeometry Resolve(Tensor x, string name, int groups, float epsilon)
    {
        Check.NotNull(x, name);
        if (x.Rank < 2 || x.DataType != DataType.Float32)
            throw new ArgumentException($"{name} must be Float32 with shape (N, C, ...); got {x.DataType} {x.ShapeString}", name);
        int c = x.Dim(1);
        if (groups < 1 || c % groups != 0)
            throw new ArgumentOutOfRangeException(nameof(groups), groups, $"groups must be a positive divisor of the {c} channels of {name} {x.ShapeString}");
        if (!(epsilon >= 0) || float.IsInfinity(epsilon))
            throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "epsilon must be finite and ≥ 0");
        long s = 1;
        for (int i = 2; i < x.Rank; i++) s *= x.Dim(i);
        return new GroupNormGeometry(x.Dim(0), c, s, groups);
    }

    private static void CheckStatistics(Tensor t, string name, Tensor x, in GroupNormGeometry g)
    {
        Check.Tensor(t, name, 2, "(N, G)");
        Check.SameDevice(x, "x", t, name);
        Check.Shape(t, name, "(N, G)", g.N, g.Groups);
    }

    private static void CheckVector(Tensor? v, string name, Tensor x, int c)
    {
        if (v is null) return;
        Check.Tensor(v, name, 1, "(C,)");
        Check.SameDevice(x, "x", v, name);
        Check.Shape(v, name, "(C,)", c);
    }
}
