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
        var geometry = g;
        LaunchInChunks(yv.Length, (start, count) => k(count, Params(geometry, start), xv, yv, iv));
    }

    public void MaxPool2dBackward(Tensor gradY, Tensor indices, Tensor gradX, in MaxPool2dGeometry g)
    {
        var dy = gradY.Floats();
        var iv = indices.Longs();
        var dx = gradX.Floats();
        var geometry = g;
        if (Device.DeterministicBackward)
        {
            var k = Kernel(ref _maxPoolGather, "max_pool2d_backward_gather",
                a => a.LoadAutoGroupedStreamKernel<Index1D, MaxPool2dParams, ArrayView<float>, ArrayView<long>, ArrayView<float>>(MaxPool2dKernels.BackwardGather));
            LaunchInChunks(dx.Length, (start, count) => k(count, Params(geometry, start), dy, iv, dx));
        }
        else
        {
            if (dx.Length > 0) Fill(dx, 0f);
            var k = Kernel(ref _maxPoolScatter, "max_pool2d_backward_scatter",
                a => a.LoadAutoGroupedStreamKernel<Index1D, MaxPool2dParams, ArrayView<float>, ArrayView<long>, ArrayView<float>>(MaxPool2dKernels.BackwardScatter));
            LaunchInChunks(dy.Length, (start, count) => k(count, Params(geometry, start), dy, iv, dx));
        }
    }

    private static MaxPool2dParams Params(in MaxPool2dGeometry g, long start) =>
        new(g.H, g.W, g.OH, g.OW, g.KH, g.KW, g.StrideH, g.StrideW, g.PadH, g.PadW, start);

    /// <summary>Calls launch(start, count) for consecutive chunks of at most int.MaxValue of [0, total); nothing when total is 0.</summary>
    private static void LaunchInChunks(long total, Action<long, int> launch)
    {
        for (long start = 0; start < total; start += int.MaxValue)
            launch(start, (int)Math.Min(int.MaxValue, total - start));
    }
}
