// max_pool2d: y[n, c, i, j] = max over the window rows i·sh − ph + [0, kh), cols j·sw − pw + [0, kw)
// (padding counts as −inf), with the flat index (h·W + w) of the winner in the input plane,
// as torch.nn.functional.max_pool2d(return_indices=True). Backward scatters dy to those indices.
// Shapes: x (N, C, H, W), y and indices (N, C, OH, OW).
namespace GRcn.Kernels;

/// <summary>Window, stride, padding and rounding of a 2-D max pooling.</summary>
/// <param name="KernelH">Window height (≥ 1).</param>
/// <param name="KernelW">Window width (≥ 1).</param>
/// <param name="StrideH">Vertical stride (≥ 1; 1 gives the paper's 2×2/s1 pooling).</param>
/// <param name="StrideW">Horizontal stride (≥ 1).</param>
/// <param name="PadH">Implicit −inf padding above and below (at most half the window).</param>
/// <param name="PadW">Implicit −inf padding left and right (at most half the window).</param>
/// <param name="CeilMode">Round the output size up, as PyTorch's <c>ceil_mode</c>.</param>
public readonly record struct MaxPool2dOptions(int KernelH, int KernelW, int StrideH, int StrideW, int PadH = 0, int PadW = 0, bool CeilMode = false)
{
    /// <summary>Square window; stride defaults to the window size, as in PyTorch.</summary>
    public static MaxPool2dOptions Create(int kernel, int? stride = null, int padding = 0, bool ceilMode = false) =>
        new(kernel, kernel, stride ?? kernel, stride ?? kernel, padding, padding, ceilMode);

    internal void Validate()
    {
        Check.Positive(KernelH, nameof(KernelH));
        Check.Positive(KernelW, nameof(KernelW));
        Check.Positive(StrideH, nameof(StrideH));
        Check.Positive(StrideW, nameof(StrideW));
        Check.NonNegative(PadH, nameof(PadH));
        Check.NonNegative(PadW, nameof(PadW));
        if (PadH > KernelH / 2 || PadW > KernelW / 2)
            throw new ArgumentOutOfRangeException(nameof(PadH), $"padding ({PadH}, {PadW}) must be at most half the kernel ({KernelH}, {KernelW})");
    }
}

/// <summary>Every size of one pooling, resolved and validated.</summary>
internal readonly record struct MaxPool2dGeometry(
    int N, int C, int H, int W, int OH, int OW, int KH, int KW, int StrideH, int StrideW, int PadH, int PadW);

/// <summary>Device kernels of <see cref="MaxPool2d"/>.</summary>
internal interface IMaxPool2dBackend
{
    /// <summary>Fills y (N, C, OH, OW) and indices (same shape, int64 flat h·W + w in the input plane).</summary>
    void MaxPool2dForward(Tensor x, Tensor y, Tensor indices, in MaxPool2dGeometry g);

    /// <summary>Overwrites gradX (N, C, H, W) with the sum of gradY at each winner.</summary>
    void MaxPool2dBackward(Tensor gradY, Tensor indices, Tensor gradX, in MaxPool2dGeometry g);
}

/// <summary>Output of <see cref="MaxPool2d.Forward(Tensor, MaxPool2dOptions)"/>; dispose to release both tensors.</summary>
/// <param name="Output">Pooled maxima (N, C, OH, OW).</param>
/// <param name="Indices">Int64 flat index (h·W + w) of each maximum in its input plane (N, C, OH, OW).</param>
public sealed record MaxPool2dResult(Tensor Output, Tensor Indices) : IDisposable
{
    /// <inheritdoc/>
    public void Dispose()
    {
        Output.Dispose();
        Indices.Dispose();
    }
}

/// <summary>2-D max pooling with any window and stride, forward and backward, as <c>torch.nn.functional.max_pool2d</c>.</summary>
/// <remarks>
/// NaN propagates (a NaN in the window wins); among equal maxima the first in row-major order wins.
/// In ceil mode the last window must start inside the input or the left padding, as PyTorch defines it.
/// </remarks>
public static class MaxPool2d
{
    /// <summary>Output size on one axis, PyTorch's rule (ceil mode drops a last window that starts in the right padding).</summary>
    public static int OutputSize(int input, int kernel, int stride, int padding, bool ceilMode)
    {
        int numerator = input + 2 * padding - (kernel - 1) - 1 + (ceilMode ? stride - 1 : 0);
        int size = FloorDiv(numerator, stride) + 1;
        if (ceilMode && (size - 1) * stride >= input + padding) size--;
        return size;
    }

    /// <summary>Pools <paramref name="x"/> (N, C, H, W); returns the maxima and their indices.</summary>
    public static MaxPool2dResult Forward(Tensor x, MaxPool2dOptions options)
    {
        var g = Resolve(x, options);
        var y = Tensor.Empty(x.Device, DataType.Float32, g.N, g.C, g.OH, g.OW);
        var indices = Tensor.Empty(x.Device, DataType.Int64, g.N, g.C, g.OH, g.OW);
        var result = new MaxPool2dResult(y, indices);
        try
        {
            x.Device.Kernels<IMaxPool2dBackend>("max_pool2d").MaxPool2dForward(x, y, indices, g);
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>Gradient with respect to the input (N, C, <paramref name="inputHeight"/>, <paramref name="inputWidth"/>).</summary>
    /// <param name="gradY">dL/dy (N, C, OH, OW).</param>
    /// <param name="indices">The forward indices (N, C, OH, OW), int64.</param>
    /// <param name="inputHeight">H of the forward input.</param>
    /// <param name="inputWidth">W of the forward input.</param>
    /// <param name="options">The forward options.</param>
    public static Tensor Backward(Tensor gradY, Tensor indices, int inputHeight, int inputWidth, MaxPool2dOptions options)
    {
        Check.Tensor(gradY, nameof(gradY), 4, "(N, C, OH, OW)");
        var gradX = Tensor.Empty(gradY.Device, DataType.Float32, gradY.Dim(0), gradY.Dim(1), inputHeight, inputWidth);
        try
        {
            Backward(gradY, indices, gradX, options);
            return gradX;
        }
        catch
        {
            gradX.Dispose();
            throw;
        }
    }

    /// <summary>Overwrites <paramref name="gradX"/> (N, C, H, W) with the input gradient.</summary>
    public static void Backward(Tensor gradY, Tensor indices, Tensor gradX, MaxPool2dOptions options)
    {
        Check.Tensor(gradX, nameof(gradX), 4, "(N, C, H, W)");
        var g = Resolve(gradX, options, nameof(gradX));
        Check.Tensor(gradY, nameof(gradY), 4, "(N, C, OH, OW)");
        Check.SameDevice(gradX, nameof(gradX), gradY, nameof(gradY));
        Check.Shape(gradY, nameof(gradY), "(N, C, OH, OW)", g.N, g.C, g.OH, g.OW);
        Check.Tensor(indices, nameof(indices), 4, "(N, C, OH, OW) int64", DataType.Int64);
        Check.SameDevice(gradX, nameof(gradX), indices, nameof(indices));
        Check.Shape(indices, nameof(indices), "(N, C, OH, OW)", g.N, g.C, g.OH, g.OW);
        gradX.Device.Kernels<IMaxPool2dBackend>("max_pool2d").MaxPool2dBackward(gradY, indices, gradX, g);
    }

    private static MaxPool2dGeometry Resolve(Tensor x, MaxPool2dOptions o, string name = "x")
    {
        o.Validate();
        Check.Tensor(x, name, 4, "(N, C, H, W)");
        int h = x.Dim(2), w = x.Dim(3);
        if (h == 0 || w == 0)
            throw new ArgumentException($"{name} must have non-empty height and width (as PyTorch requires); got {x.ShapeString}", name);
        int oh = OutputSize(h, o.KernelH, o.StrideH, o.PadH, o.CeilMode);
        int ow = OutputSize(w, o.KernelW, o.StrideW, o.PadW, o.CeilMode);
        if (oh < 1 || ow < 1)
            throw new ArgumentException($"{name} {x.ShapeString} is too small for a {o.KernelH}×{o.KernelW} window with padding ({o.PadH}, {o.PadW}): output would be {oh}×{ow}", name);
        return new MaxPool2dGeometry(x.Dim(0), x.Dim(1), h, w, oh, ow, o.KernelH, o.KernelW, o.StrideH, o.StrideW, o.PadH, o.PadW);
    }

    private static int FloorDiv(int a, int b) => a >= 0 ? a / b : -((-a + b - 1) / b);
}
