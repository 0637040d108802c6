// roi_align on a GPU device: the kernels of kernels/RoiAlign.cs behind IRoiAlignBackend. Forward
// and the atomic backward launch one thread per (RoI, channel group of 4, bin); the deterministic
// backward (GpuDevice.DeterministicBackward, the default) one thread per (image, channel group of
// 4, input cell). Launches of more than int.MaxValue items are split.
using ILGPU;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

internal sealed partial class GpuBackend : IRoiAlignBackend
{
    private Action<Index1D, RoiAlignParams, ArrayView<float>, ArrayView<float>, ArrayView<float>>? _roiAlignForward;
    private Action<Index1D, RoiAlignParams, ArrayView<float>, ArrayView<float>, ArrayView<float>>? _roiAlignBackwardAtomic;
    private Action<Index1D, RoiAlignParams, ArrayView<float>, ArrayView<float>, ArrayView<float>>? _roiAlignBackwardGather;

    public void RoiAlignForward(Tensor x, Tensor rois, Tensor y, in RoiGeometry g, int samplingRatio, bool aligned)
    {
        if (g.K == 0 || g.C == 0) return;
        if ((long)g.H * g.W == 0)
        {
            // No cells: every sample is outside the map (the CPU backend's zeros).
            Fill(y.Floats(), 0f);
            return;
        }
        CheckGrids(rois, g, samplingRatio, aligned);
        var p = Params(g, samplingRatio, aligned);
        var kernel = Kernel(ref _roiAlignForward, "roi_align_forward",
            acc => acc.LoadAutoGroupedStreamKernel<Index1D, RoiAlignParams, ArrayView<float>, ArrayView<float>, ArrayView<float>>(RoiAlignKernels.Forward));
        Launch((long)g.K * p.ChannelGroups * g.PH * g.PW, p, kernel, x.Floats(), rois.Floats(), y.Floats());
    }

    public void RoiAlignBackward(Tensor gradY, Tensor rois, Tensor gradX, in RoiGeometry g, int samplingRatio, bool aligned)
    {
        if ((long)g.N * g.C * g.H * g.W == 0) return;
        CheckGrids(rois, g, samplingRatio, aligned);
        var p = Params(g, samplingRatio, aligned);
        if (Device.DeterministicBackward)
        {
            var gather = Kernel(ref _roiAlignBackwardGather, "roi_align_backward_gather",
                acc => acc.LoadAutoGroupedStreamKernel<Index1D, RoiAlignParams, ArrayView<float>, ArrayView<float>, ArrayView<float>>(RoiAlignKernels.BackwardGather));
            Launch((long)g.N * p.ChannelGroups * g.H * g.W, p, gather, gradY.Floats(), rois.Floats(), gradX.Floats());
            return;
        }
        gradX.Clear();
        var atomic = Kernel(ref _roiAlignBackwardAtomic, "roi_align_backward_atomic",
            acc => acc.LoadAutoGroupedStreamKernel<Index1D, RoiAlignParams, ArrayView<float>, ArrayView<float>, ArrayView<float>>(RoiAlignKernels.BackwardAtomic));
        Launch((long)g.K * p.ChannelGroups * g.PH * g.PW, p, atomic, gradY.Floats(), rois.Floats(), gradX.Floats());
    }

    private static RoiAlignParams Params(in RoiGeometry g, int samplingRatio, bool aligned) =>
        new(g.N, g.C, g.H, g.W, g.K, g.PH, g.PW, (float)g.SpatialScale, samplingRatio, aligned ? 1 : 0,
            (g.C + RoiMath.Channels - 1) / RoiMath.Channels, Base: 0);

    /// <summary>Launches <paramref name="kernel"/> over <paramref name="items"/> flat items in pieces of at most int.MaxValue.</summary>
    private static void Launch(long items, RoiAlignParams p, Action<Index1D, RoiAlignParams, ArrayView<float>, ArrayView<float>, ArrayView<float>> kernel,
        ArrayView<float> a, ArrayView<float> b, ArrayView<float> c)
    {
        foreach (var (start, count) in Chunks(items)) kernel(count, p with { Base = start }, a, b, c);
    }

    /// <summary>
    /// Adaptive sampling: a RoI whose bins need more than 2^31 sample points cannot be computed (as
    /// the CPU backend, which throws the same error); a GPU thread would loop for hours. Checked on
    /// the host with the kernels' float arithmetic (one copy of the RoIs, adaptive mode only).
    /// </summary>
    private static void CheckGrids(Tensor rois, in RoiGeometry g, int samplingRatio, bool aligned)
    {
        if (samplingRatio > 0 || g.K == 0) return;
        float[] r = rois.ToArray<float>();
        float scale = (float)g.SpatialScale;
        int flag = aligned ? 1 : 0;
        for (int k = 0; k < g.K; k++)
        {
            RoiMath.AlignAxis(r[k * 5 + 1], r[k * 5 + 3], scale, flag, g.PW, samplingRatio, out _, out _, out int gridW);
            RoiMath.AlignAxis(r[k * 5 + 2], r[k * 5 + 4], scale, flag, g.PH, samplingRatio, out _, out _, out int gridH);
            if (gridH > 0 && gridW > 0 && (long)gridH * gridW > int.MaxValue)
                throw new ArgumentException(
                    $"rois row {k} needs {gridH} × {gridW} sample points per bin with sampling ratio {samplingRatio}; " +
                    "that many (over 2^31) cannot be computed: use a positive sampling ratio", "rois");
        }
    }
}
