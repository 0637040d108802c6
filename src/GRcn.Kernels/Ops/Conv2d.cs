// conv2d: y[n, o, i, j] = bias[o] + Σ_{c, u, v} x[n, c, i·sh − ph + u·dh, j·sw − pw + v·dw] · w[o, c, u, v]
// (zero outside the input), as torch.nn.functional.conv2d with groups = 1; backward gives
// dx, dw and db. Shapes: x (N, C, H, W), weight (O, C, kh, kw), bias (O), y (N, O, OH, OW).
namespace GRcn.Kernels;

/// <summary>Stride, padding and dilation of a 2-D convolution.</summary>
/// <param name="StrideH">Vertical stride (≥ 1).</param>
/// <param name="StrideW">Horizontal stride (≥ 1).</param>
/// <param name="PadH">Zero padding above and below (≥ 0).</param>
/// <param name="PadW">Zero padding left and right (≥ 0).</param>
/// <param name="DilationH">Vertical dilation (≥ 1).</param>
/// <param name="DilationW">Horizontal dilation (≥ 1).</param>
public readonly record struct Conv2dOptions(int StrideH, int StrideW, int PadH, int PadW, int DilationH, int DilationW)
{
    /// <summary>Square stride, padding and dilation.</summary>
    public static Conv2dOptions Create(int stride = 1, int padding = 0, int dilation = 1) =>
        new(stride, stride, padding, padding, dilation, dilation);

    internal void Validate()
    {
        Check.Positive(StrideH, nameof(StrideH));
        Check.Positive(StrideW, nameof(StrideW));
        Check.NonNegative(PadH, nameof(PadH));
        Check.NonNegative(PadW, nameof(PadW));
        Check.Positive(DilationH, nameof(DilationH));
        Check.Positive(DilationW, nameof(DilationW));
    }
}

/// <summary>Every size of one convolution, resolved and validated.</summary>
internal readonly record struct Conv2dGeometry(
    int N, int C, int H, int W, int O, int KH, int KW, int OH, int OW,
    int StrideH, int StrideW, int PadH, int PadW, int DilationH, int DilationW);

/// <summary>Device kernels of <see cref="Conv2d"/>.</summary>
internal interface IConv2dBackend
{
    /// <summary>y = conv(x, weight) + bias; y is pre-allocated (N, O, OH, OW) and fully overwritten.</summary>
    void Conv2dForward(Tensor x, Tensor weight, Tensor? bias, Tensor y, in Conv2dGeometry g);

    /// <summary>Overwrites each non-null gradient: gradX (N, C, H, W), gradWeight (O, C, kh, kw), gradBias (O).</summary>
    void Conv2dBackward(Tensor gradY, Tensor x, Tensor weight, Tensor? gradX, Tensor? gradWeight, Tensor? gradBias, in Conv2dGeometry g);
}

/// <summary>Gradients of <see cref="Conv2d"/>; dispose to release them.</summary>
/// <param name="Input">dL/dx (N, C, H, W), or null when not asked for.</param>
/// <param name="Weight">dL/dweight (O, C, kh, kw).</param>
/// <param name="Bias">dL/dbias (O), or null when the convolution has no bias.</param>
public sealed record Conv2dGradients(Tensor? Input, Tensor Weight, Tensor? Bias) : IDisposable
{
    /// <inheritdoc/>
    public void Dispose()
    {
        Input?.Dispose();
        Weight.Dispose();
        Bias?.Dispose();
    }
}

/// <summary>2-D convolution (cross-correlation), forward and backward, as <c>torch.nn.functional.conv2d</c> with groups = 1.</summary>
public static class Conv2d
{
    /// <summary>Output height and width: <c>⌊(H + 2p − d·(k − 1) − 1) / s⌋ + 1</c> per axis.</summary>
    public static (int Height, int Width) OutputSize(int height, int width, int kernelH, int kernelW, Conv2dOptions options) =>
        ((height + 2 * options.PadH - options.DilationH * (kernelH - 1) - 1) / options.StrideH + 1,
         (width + 2 * options.PadW - options.DilationW * (kernelW - 1) - 1) / options.StrideW + 1);

    /// <summary>Computes the convolution into a new tensor (N, O, OH, OW).</summary>
    /// <param name="x">Input (N, C, H, W).</param>
    /// <param name="weight">Filters (O, C, kh, kw).</param>
    /// <param name="bias">Optional bias (O).</param>
    /// <param name="options">Stride, padding, dilation.</param>
    public static Tensor Forward(Tensor x, Tensor weight, Tensor? bias, Conv2dOptions options)
    {
        var g = Resolve(x, weight, bias, options);
        var y = Tensor.Empty(x.Device, DataType.Float32, g.N, g.O, g.OH, g.OW);
        try
        {
            x.Device.Kernels<IConv2dBackend>("conv2d").Conv2dForward(x, weight, bias, y, g);
            return y;
        }
        catch
        {
            y.Dispose();
            throw;
        }
    }

    /// <summary>Computes the convolution into <paramref name="y"/> (N, O, OH, OW), overwriting it.</summary>
    public static void Forward(Tensor x, Tensor weight, Tensor? bias, Tensor y, Conv2dOptions options)
    {
        var g = Resolve(x, weight, bias, options);
        Check.Tensor(y, nameof(y), 4, "(N, O, OH, OW)");
        Check.SameDevice(x, nameof(x), y, nameof(y));
        Check.Shape(y, nameof(y), "(N, O, OH, OW)", g.N, g.O, g.OH, g.OW);
        x.Device.Kernels<IConv2dBackend>("conv2d").Conv2dForward(x, weight, bias, y, g);
    }

    /// <summary>Gradients with respect to the input, the weight and (when <paramref name="withBias"/>) the bias.</summary>
    /// <param name="gradY">dL/dy (N, O, OH, OW).</param>
    /// <param name="x">The forward input (N, C, H, W).</param>
    /// <param name="weight">The forward filters (O, C, kh, kw).</param>
    /// <param name="withBias">Whether to compute dL/dbias.</param>
    /// <param name="options">The forward options.</param>
    /// <param name="inputGradient">Whether to compute dL/dx (a first layer does not need it).</param>
    public static Conv2dGradients Backward(Tensor gradY, Tensor x, Tensor weight, bool withBias, Conv2dOptions options, bool inputGradient = true)
    {
        var g = Resolve(x, weight, null, options);
        CheckGradY(gradY, x, g);
        Tensor? dx = inputGradient ? Tensor.Empty(x.Device, DataType.Float32, g.N, g.C, g.H, g.W) : null;
        var dw = Tensor.Empty(x.Device, DataType.Float32, g.O, g.C, g.KH, g.KW);
        Tensor? db = withBias ? Tensor.Empty(x.Device, DataType.Float32, g.O) : null;
        var grads = new Conv2dGradients(dx, dw, db);
        try
        {
            x.Device.Kernels<IConv2dBackend>("conv2d").Conv2dBackward(gradY, x, weight, dx, dw, db, g);
            return grads;
        }
        catch
        {
            grads.Dispose();
            throw;
        }
    }

    /// <summary>Writes the gradients into caller-owned tensors (each optional; each overwritten).</summary>
    public static void Backward(Tensor gradY, Tensor x, Tensor weight, Tensor? gradX, Tensor? gradWeight, Tensor? gradBias, Conv2dOptions options)
    {
        var g = Resolve(x, weight, null, options);
        CheckGradY(gradY, x, g);
        if (gradX is not null)
        {
            Check.Tensor(gradX, nameof(gradX), 4, "(N, C, H, W)");
            Check.SameDevice(x, nameof(x), gradX, nameof(gradX));
            Check.Shape(gradX, nameof(gradX), "(N, C, H, W)", g.N, g.C, g.H, g.W);
        }
        if (gradWeight is not null)
        {
            Check.Tensor(gradWeight, nameof(gradWeight), 4, "(O, C, kh, kw)");
            Check.SameDevice(x, nameof(x), gradWeight, nameof(gradWeight));
            Check.Shape(gradWeight, nameof(gradWeight), "(O, C, kh, kw)", g.O, g.C, g.KH, g.KW);
        }
        if (gradBias is not null)
        {
            Check.Tensor(gradBias, nameof(gradBias), 1, "(O,)");
            Check.SameDevice(x, nameof(x), gradBias, nameof(gradBias));
            Check.Shape(gradBias, nameof(gradBias), "(O,)", g.O);
        }
        x.Device.Kernels<IConv2dBackend>("conv2d").Conv2dBackward(gradY, x, weight, gradX, gradWeight, gradBias, g);
    }

    private static void CheckGradY(Tensor gradY, Tensor x, in Conv2dGeometry g)
    {
        Check.Tensor(gradY, nameof(gradY), 4, "(N, O, OH, OW)");
        Check.SameDevice(x, nameof(x), gradY, nameof(gradY));
        Check.Shape(gradY, nameof(gradY), "(N, O, OH, OW)", g.N, g.O, g.OH, g.OW);
    }

    internal static Conv2dGeometry Resolve(Tensor x, Tensor weight, Tensor? bias, Conv2dOptions o)
    {
        o.Validate();
        Check.Tensor(x, nameof(x), 4, "(N, C, H, W)");
        Check.Tensor(weight, nameof(weight), 4, "(O, C, kh, kw)");
        Check.SameDevice(x, nameof(x), weight, nameof(weight));
        int c = x.Dim(1);
        if (weight.Dim(1) != c)
            throw new ArgumentException($"weight must have shape (O, {c}, kh, kw) to match x {x.ShapeString}; got {weight.ShapeString}", nameof(weight));
        int o2 = weight.Dim(0), kh = weight.Dim(2), kw = weight.Dim(3);
        if (bias is not null)
        {
            Check.Tensor(bias, nameof(bias), 1, "(O,) with O as in weight");
            Check.SameDevice(x, nameof(x), bias, nameof(bias));
            Check.Shape(bias, nameof(bias), "(O,)", o2);
        }
        if (kh < 1 || kw < 1 || o2 < 1 || c < 1)
            throw new ArgumentException($"weight must have shape (O, C, kh, kw) with every size at least 1; got {weight.ShapeString}", nameof(weight));
        var (oh, ow) = OutputSize(x.Dim(2), x.Dim(3), kh, kw, o);
        if (oh < 1 || ow < 1)
            throw new ArgumentException(
                $"x {x.ShapeString} is too small for a {kh}×{kw} kernel with padding ({o.PadH}, {o.PadW}) and dilation ({o.DilationH}, {o.DilationW}): output would be {oh}×{ow}", nameof(x));
        return new Conv2dGeometry(x.Dim(0), c, x.Dim(2), x.Dim(3), o2, kh, kw, oh, ow,
            o.StrideH, o.StrideW, o.PadH, o.PadW, o.DilationH, o.DilationW);
    }
}
