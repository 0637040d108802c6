// roi_pool: for RoI k = [b, x1, y1, x2, y2], the box scaled by spatial_scale and rounded to whole
// cells is cut into ph×pw bins (bin edges floor/ceil of fractional cuts, clipped to the map);
// y[k, c, i, j] is the maximum of x[b, c] over bin (i, j), 0 for an empty bin, as
// torchvision.ops.roi_pool. Backward adds dy to the winning cell (argmax, −1 for empty bins).
// Shapes: x (N, C, H, W), rois (K, 5), y and argmax (K, C, ph, pw). Coordinates and bin edges
// are computed in float32 as torchvision's float kernel computes them (spatial_scale as a float).
namespace GRcn.Kernels;

/// <summary>Output size and coordinate scale of RoI pooling.</summary>
/// <param name="OutputH">Bins per RoI vertically (≥ 1).</param>
/// <param name="OutputW">Bins per RoI horizontally (≥ 1).</param>
/// <param name="SpatialScale">Feature-map cells per input pixel (1 / stride), &gt; 0; the kernels use it rounded to float, as torchvision's float32 kernels do.</param>
public readonly record struct RoiPoolOptions(int OutputH, int OutputW, double SpatialScale)
{
    internal void Validate()
    {
        Check.Positive(OutputH, nameof(OutputH));
        Check.Positive(OutputW, nameof(OutputW));
        if (!(SpatialScale > 0) || !double.IsFinite(SpatialScale))
            throw new ArgumentOutOfRangeException(nameof(SpatialScale), SpatialScale, "spatial scale must be a positive finite number (1 / feature stride)");
    }
}

/// <summary>Every size of one RoI pooling or RoI Align call, resolved and validated.</summary>
internal readonly record struct RoiGeometry(int N, int C, int H, int W, int K, int PH, int PW, double SpatialScale);

/// <summary>Device kernels of <see cref="RoiPool"/>.</summary>
internal interface IRoiPoolBackend
{
    /// <summary>Fills y (K, C, ph, pw) and argmax (same shape, int64 h·W + w, −1 for an empty bin).</summary>
    void RoiPoolForward(Tensor x, Tensor rois, Tensor y, Tensor argmax, in RoiGeometry g);

    /// <summary>Overwrites gradX (N, C, H, W): zero, plus gradY added at each bin's argmax.</summary>
    void RoiPoolBackward(Tensor gradY, Tensor rois, Tensor argmax, Tensor gradX, in RoiGeometry g);
}

/// <summary>Output of <see cref="RoiPool.Forward(Tensor, Tensor, RoiPoolOptions)"/>; dispose to release both tensors.</summary>
/// <param name="Output">Pooled features (K, C, ph, pw).</param>
/// <param name="Argmax">Int64 flat index (h·W + w) of each bin's maximum in its input plane, −1 for an empty bin.</param>
public sealed record RoiPoolResult(Tensor Output, Tensor Argmax) : IDisposable
{
    /// <inheritdoc/>
    public void Dispose()
    {
        Output.Dispose();
        Argmax.Dispose();
    }
}

/// <summary>RoI max pooling (Fast R-CNN), forward and backward, as <c>torchvision.ops.roi_pool</c>.</summary>
public static class RoiPool
{
    /// <summary>Pools every RoI of <paramref name="rois"/> (K, 5) from <paramref name="x"/> (N, C, H, W).</summary>
    /// <remarks>Zero RoIs give an empty (0, C, ph, pw) output.</remarks>
    public static RoiPoolResult Forward(Tensor x, Tensor rois, RoiPoolOptions options)
    {
        var g = Resolve(x, rois, options);
        var y = Tensor.Empty(x.Device, DataType.Float32, g.K, g.C, g.PH, g.PW);
        var argmax = Tensor.Empty(x.Device, DataType.Int64, g.K, g.C, g.PH, g.PW);
        var result = new RoiPoolResult(y, argmax);
        try
        {
            if (g.K > 0) x.Device.Kernels<IRoiPoolBackend>("roi_pool").RoiPoolForward(x, rois, y, argmax, g);
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>Gradient with respect to the input, a new (N, C, H, W) tensor of the given <paramref name="inputShape"/>.</summary>
    /// <param name="gradY">dL/dy (K, C, ph, pw).</param>
    /// <param name="rois">The forward RoIs (K, 5).</param>
    /// <param name="argmax">The forward argmax (K, C, ph, pw), int64.</param>
    /// <param name="inputShape">(N, C, H, W) of the forward input.</param>
    /// <param name="options">The forward options.</param>
    public static Tensor Backward(Tensor gradY, Tensor rois, Tensor argmax, ReadOnlySpan<int> inputShape, RoiPoolOptions options)
    {
        Check.NotNull(gradY, nameof(gradY));
        if (inputShape.Length != 4)
            throw new ArgumentException($"inputShape must be (N, C, H, W); got {Tensor.FormatShape(inputShape)}", nameof(inputShape));
        var gradX = Tensor.Empty(gradY.Device, DataType.Float32, inputShape);
        try
        {
            Backward(gradY, rois, argmax, gradX, options);
            return gradX;
        }
        catch
        {
            gradX.Dispose();
            throw;
        }
    }

    /// <summary>Overwrites <paramref name="gradX"/> (N, C, H, W) with the input gradient.</summary>
    public static void Backward(Tensor gradY, Tensor rois, Tensor argmax, Tensor gradX, RoiPoolOptions options)
    {
        var g = Resolve(gradX, rois, options, nameof(gradX));
        Check.Tensor(gradY, nameof(gradY), 4, "(K, C, ph, pw)");
        Check.SameDevice(gradX, nameof(gradX), gradY, nameof(gradY));
        Check.Shape(gradY, nameof(gradY), "(K, C, ph, pw)", g.K, g.C, g.PH, g.PW);
        Check.Tensor(argmax, nameof(argmax), 4, "(K, C, ph, pw) int64", DataType.Int64);
        Check.SameDevice(gradX, nameof(gradX), argmax, nameof(argmax));
        Check.Shape(argmax, nameof(argmax), "(K, C, ph, pw)", g.K, g.C, g.PH, g.PW);
        if (g.K == 0)
        {
            gradX.Clear();
            return;
        }
        gradX.Device.Kernels<IRoiPoolBackend>("roi_pool").RoiPoolBackward(gradY, rois, argmax, gradX, g);
    }

    internal static RoiGeometry Resolve(Tensor x, Tensor rois, RoiPoolOptions o, string xName = "x")
    {
        o.Validate();
        Check.Tensor(x, xName, 4, "(N, C, H, W)");
        Check.Rois(rois, nameof(rois), x.Dim(0), x, xName);
        return new RoiGeometry(x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3), rois.Dim(0), o.OutputH, o.OutputW, o.SpatialScale);
    }
}
