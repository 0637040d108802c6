// roi_align: for RoI k = [b, x1, y1, x2, y2] scaled by spatial_scale (and shifted by −0.5 when
// aligned), each of the ph×pw bins averages x[b, c] bilinearly sampled on a grid of
// sampling_ratio² points (adaptive: ceil(roi_size / output_size) per axis), as
// torchvision.ops.roi_align. Backward distributes dy over the same sample points' four
// neighbours. Shapes: x (N, C, H, W), rois (K, 5), y (K, C, ph, pw). RoI geometry, the adaptive
// grid, sample positions and weights are float32 as in torchvision's float kernel (spatial_scale
// as a float).
namespace GRcn.Kernels;

/// <summary>Output size, scale and sampling of RoI Align.</summary>
/// <param name="OutputH">Bins per RoI vertically (≥ 1).</param>
/// <param name="OutputW">Bins per RoI horizontally (≥ 1).</param>
/// <param name="SpatialScale">Feature-map cells per input pixel (1 / stride), &gt; 0; the kernels use it rounded to float, as torchvision's float32 kernels do.</param>
/// <param name="SamplingRatio">Sample points per bin and axis; ≤ 0 means adaptive, <c>ceil(roi_size / output_size)</c>.</param>
/// <param name="Aligned">Shift the box by −0.5 cell so pixel centres line up (Detectron2's fix); false is the original RoIAlign.</param>
public readonly record struct RoiAlignOptions(int OutputH, int OutputW, double SpatialScale, int SamplingRatio = 0, bool Aligned = true)
{
    internal void Validate()
    {
        Check.Positive(OutputH, nameof(OutputH));
        Check.Positive(OutputW, nameof(OutputW));
        if (!(SpatialScale > 0) || !double.IsFinite(SpatialScale))
            throw new ArgumentOutOfRangeException(nameof(SpatialScale), SpatialScale, "spatial scale must be a positive finite number (1 / feature stride)");
    }
}

/// <summary>Device kernels of <see cref="RoiAlign"/>.</summary>
internal interface IRoiAlignBackend
{
    /// <summary>Fills y (K, C, ph, pw).</summary>
    void RoiAlignForward(Tensor x, Tensor rois, Tensor y, in RoiGeometry g, int samplingRatio, bool aligned);

    /// <summary>Overwrites gradX (N, C, H, W) with the input gradient.</summary>
    void RoiAlignBackward(Tensor gradY, Tensor rois, Tensor gradX, in RoiGeometry g, int samplingRatio, bool aligned);
}

/// <summary>RoI Align (Mask R-CNN), forward and backward, as <c>torchvision.ops.roi_align</c>.</summary>
public static class RoiAlign
{
    /// <summary>Aligns every RoI of <paramref name="rois"/> (K, 5) from <paramref name="x"/> (N, C, H, W) into (K, C, ph, pw).</summary>
    /// <remarks>Zero RoIs give an empty (0, C, ph, pw) output.</remarks>
    public static Tensor Forward(Tensor x, Tensor rois, RoiAlignOptions options)
    {
        var g = Resolve(x, rois, options);
        var y = Tensor.Empty(x.Device, DataType.Float32, g.K, g.C, g.PH, g.PW);
        if (g.K == 0) return y;
        try
        {
            x.Device.Kernels<IRoiAlignBackend>("roi_align").RoiAlignForward(x, rois, y, g, options.SamplingRatio, options.Aligned);
            return y;
        }
        catch
        {
            y.Dispose();
            throw;
        }
    }

    /// <summary>Gradient with respect to the input, a new tensor of <paramref name="inputShape"/> (N, C, H, W).</summary>
    public static Tensor Backward(Tensor gradY, Tensor rois, ReadOnlySpan<int> inputShape, RoiAlignOptions options)
    {
        Check.NotNull(gradY, nameof(gradY));
        if (inputShape.Length != 4)
            throw new ArgumentException($"inputShape must be (N, C, H, W); got {Tensor.FormatShape(inputShape)}", nameof(inputShape));
        var gradX = Tensor.Empty(gradY.Device, DataType.Float32, inputShape);
        try
        {
            Backward(gradY, rois, gradX, options);
            return gradX;
        }
        catch
        {
            gradX.Dispose();
            throw;
        }
    }

    /// <summary>Overwrites <paramref name="gradX"/> (N, C, H, W) with the input gradient.</summary>
    public static void Backward(Tensor gradY, Tensor rois, Tensor gradX, RoiAlignOptions options)
    {
        var g = Resolve(gradX, rois, options, nameof(gradX));
        Check.Tensor(gradY, nameof(gradY), 4, "(K, C, ph, pw)");
        Check.SameDevice(gradX, nameof(gradX), gradY, nameof(gradY));
        Check.Shape(gradY, nameof(gradY), "(K, C, ph, pw)", g.K, g.C, g.PH, g.PW);
        if (g.K == 0)
        {
            gradX.Clear();
            return;
        }
        gradX.Device.Kernels<IRoiAlignBackend>("roi_align").RoiAlignBackward(gradY, rois, gradX, g, options.SamplingRatio, options.Aligned);
    }

    private static RoiGeometry Resolve(Tensor x, Tensor rois, RoiAlignOptions o, string xName = "x")
    {
        o.Validate();
        Check.Tensor(x, xName, 4, "(N, C, H, W)");
        Check.Rois(rois, nameof(rois), x.Dim(0), x, xName);
        return new RoiGeometry(x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3), rois.Dim(0), o.OutputH, o.OutputW, o.SpatialScale);
    }
}
