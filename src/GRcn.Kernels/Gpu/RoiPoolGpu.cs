// roi_pool on a GPU device: the kernels of kernels/RoiPool.cs behind IRoiPoolBackend. Forward and
// the atomic backward launch one thread per (RoI, channel, bin); the deterministic backward
// (GpuDevice.DeterministicBackward, the default) one thread per input cell (image, channel, h, w).
// Launches of more than int.MaxValue items are split.
using ILGPU;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

internal sealed partial class GpuBackend : IRoiPoolBackend
{
    private Action<Index1D, RoiPoolParams, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<long>>? _roiPoolForward;
    private Action<Index1D, RoiPoolParams, ArrayView<float>, ArrayView<float>, ArrayView<long>, ArrayView<float>>? _roiPoolBackwardAtomic;
    private Action<Index1D, RoiPoolParams, ArrayView<float>, ArrayView<float>, ArrayView<long>, ArrayView<float>>? _roiPoolBackwardGather;

    public void RoiPoolForward(Tensor x, Tensor rois, Tensor y, Tensor argmax, in RoiGeometry g)
    {
        long items = (long)g.K * g.C * g.PH * g.PW;
        if (items == 0) return;
        var p = Params(g);
        var kernel = Kernel(ref _roiPoolForward, "roi_pool_forward",
            acc => acc.LoadAutoGroupedStreamKernel<Index1D, RoiPoolParams, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<long>>(RoiPoolKernels.Forward));
        foreach (var (start, count) in Chunks(items)) kernel(count, p with { Base = start }, x.Floats(), rois.Floats(), y.Floats(), argmax.Longs());
    }

    public void RoiPoolBackward(Tensor gradY, Tensor rois, Tensor argmax, Tensor gradX, in RoiGeometry g)
    {
        long cells = (long)g.N * g.C * g.H * g.W;
        if (cells == 0) return;
        var p = Params(g);
        if (Device.DeterministicBackward)
        {
            var gather = Kernel(ref _roiPoolBackwardGather, "roi_pool_backward_gather",
                acc => acc.LoadAutoGroupedStreamKernel<Index1D, RoiPoolParams, ArrayView<float>, ArrayView<float>, ArrayView<long>, ArrayView<float>>(RoiPoolKernels.BackwardGather));
            foreach (var (start, count) in Chunks(cells)) gather(count, p with { Base = start }, gradY.Floats(), rois.Floats(), argmax.Longs(), gradX.Floats());
            return;
        }
        gradX.Clear();
        long items = (long)g.K * g.C * g.PH * g.PW;
        if (items == 0) return;
        var atomic = Kernel(ref _roiPoolBackwardAtomic, "roi_pool_backward_atomic",
            acc => acc.LoadAutoGroupedStreamKernel<Index1D, RoiPoolParams, ArrayView<float>, ArrayView<float>, ArrayView<long>, ArrayView<float>>(RoiPoolKernels.BackwardAtomic));
        foreach (var (start, count) in Chunks(items)) atomic(count, p with { Base = start }, gradY.Floats(), rois.Floats(), argmax.Longs(), gradX.Floats());
    }

    private static RoiPoolParams Params(in RoiGeometry g) => new(g.N, g.C, g.H, g.W, g.K, g.PH, g.PW, (float)g.SpatialScale, Base: 0);
}
