// max_pool2d on a GPU device: the kernels of kernels/MaxPool2d.cs behind IMaxPool2dBackend. The
// backward is the deterministic gather when GpuDevice.DeterministicBackward is set (the default),
// else the atomic scatter over a zeroed gradX.
using ILGPU;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

internal sealed partial class GpuBackend : IMaxPool2dBackend
{
    private Action<Index1D, MaxPool2dParams, ArrayView<float>, ArrayView<float>, ArrayView<long>>? _maxPoolForward;
    private Action<Index1D, MaxPool2dParams, ArrayView<float>, ArrayView<long>, ArrayView<float>>? _maxPoolGather;
    private Action<Index1D, MaxPool2dParams, ArrayView<float>, ArrayView<long>, ArrayView<float>>? _maxPoolScatter;

    public void MaxPool2dForward(Tensor x, Tensor y, Tensor indices, in MaxPool2dGeometry g)
    {
        var k = Kernel(ref _maxPoolForward, "max_pool2d_forward",
            a => a.LoadAutoGroupedStreamKernel<Index1D, MaxPool2dParams, ArrayView<float>, ArrayView<float>, ArrayView<long>>(MaxPool2dKernels.Forward));
        var xv = x.Floats();
        var yv = y.Floats();
        var iv = indices.Longs();
        foreach (var (start, count) in Chunks(yv.Length)) k(count, Params(g, start), xv, yv, iv);
    }

    public void MaxPool2dBackward(Tensor gradY, Tensor indices, Tensor gradX, in MaxPool2dGeometry g)
    {
        var dy = gradY.Floats();
        var iv = indices.Longs();
        var dx = gradX.Floats();
        if (Device.DeterministicBackward)
        {
            var k = Kernel(ref _maxPoolGather, "max_pool2d_backward_gather",
                a => a.LoadAutoGroupedStreamKernel<Index1D, MaxPool2dParams, ArrayView<float>, ArrayView<long>, ArrayView<float>>(MaxPool2dKernels.BackwardGather));
            foreach (var (start, count) in Chunks(dx.Length)) k(count, Params(g, start), dy, iv, dx);
        }
        else
        {
            if (dx.Length > 0) Fill(dx, 0f);
            var k = Kernel(ref _maxPoolScatter, "max_pool2d_backward_scatter",
                a => a.LoadAutoGroupedStreamKernel<Index1D, MaxPool2dParams, ArrayView<float>, ArrayView<long>, ArrayView<float>>(MaxPool2dKernels.BackwardScatter));
            foreach (var (start, count) in Chunks(dy.Length)) k(count, Params(g, start), dy, iv, dx);
        }
    }

    private static MaxPool2dParams Params(in MaxPool2dGeometry g, long start) =>
        new(g.H, g.W, g.OH, g.OW, g.KH, g.KW, g.StrideH, g.StrideW, g.PadH, g.PadW, start);
}
