// group_norm on a GPU device: the kernels of kernels/GroupNorm.cs behind IGroupNormBackend. The
// backward keeps its per-plane double sums and per-plane dx coefficients in temporary tensors
// (released as soon as the work is queued: the device's single stream runs it in order).
using ILGPU;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

internal sealed partial class GpuBackend : IGroupNormBackend
{
    private Action<KernelConfig, GroupNormParams, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>? _groupNormForward;
    private Action<KernelConfig, GroupNormParams, ArrayView<float>, ArrayView<float>, ArrayView<double>>? _groupNormPlaneSums;
    private Action<Index1D, GroupNormParams, ArrayView<double>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>? _groupNormDxCoefficients;
    private Action<Index1D, GroupNormParams, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>? _groupNormDx;
    private Action<Index1D, GroupNormParams, ArrayView<double>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>? _groupNormWeightBiasGrad;

    public void GroupNormForward(Tensor x, Tensor? weight, Tensor? bias, float epsilon, Tensor y, Tensor mean, Tensor rstd, in GroupNormGeometry g)
    {
        var k = Kernel(ref _groupNormForward, "group_norm_forward",
            a => a.LoadStreamKernel<GroupNormParams, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(GroupNormKernels.Forward));
        var q = Params(g, epsilon, weight is not null, bias is not null, false, false);
        k(new KernelConfig(g.N * g.Groups, GroupSums.For(Device)), q, x.Floats(), weight.FloatsOrEmpty(), bias.FloatsOrEmpty(),
            y.Floats(), mean.Floats(), rstd.Floats());
    }

    public void GroupNormBackward(Tensor gradY, Tensor x, Tensor mean, Tensor rstd, Tensor? weight,
        Tensor? gradX, Tensor? gradWeight, Tensor? gradBias, in GroupNormGeometry g)
    {
        int planes = g.N * g.C;
        var q = Params(g, 0f, weight is not null, false, gradWeight is not null, gradBias is not null);
        // two doubles (Σ dy·x, Σ dy) per plane, held as four floats
        using var sumTensor = Tensor.Empty(x.Device, DataType.Float32, 4 * planes);
        var sums = sumTensor.Floats().Cast<double>();
        var planeSums = Kernel(ref _groupNormPlaneSums, "group_norm_plane_sums",
            a => a.LoadStreamKernel<GroupNormParams, ArrayView<float>, ArrayView<float>, ArrayView<double>>(GroupNormKernels.PlaneSums));
        planeSums(new KernelConfig(planes, GroupSums.For(Device)), q, gradY.Floats(), x.Floats(), sums);

        if (gradX is not null)
        {
            using var coefficientTensor = Tensor.Empty(x.Device, DataType.Float32, 3 * planes);
            var coefficients = coefficientTensor.Floats();
            var kc = Kernel(ref _groupNormDxCoefficients, "group_norm_dx_coefficients",
                a => a.LoadAutoGroupedStreamKernel<Index1D, GroupNormParams, ArrayView<double>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(GroupNormKernels.DxCoefficients));
            kc(planes, q, sums, mean.Floats(), rstd.Floats(), weight.FloatsOrEmpty(), coefficients);
            var kd = Kernel(ref _groupNormDx, "group_norm_dx",
                a => a.LoadAutoGroupedStreamKernel<Index1D, GroupNormParams, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(GroupNormKernels.Dx));
            ArrayView<float> dy = gradY.Floats(), xv = x.Floats(), dx = gradX.Floats();
            foreach (var (start, count) in Chunks(dx.Length)) kd(count, q with { Start = start }, dy, xv, coefficients, dx);
        }

        if (gradWeight is not null || gradBias is not null)
        {
            var kw = Kernel(ref _groupNormWeightBiasGrad, "group_norm_weight_bias_grad",
                a => a.LoadAutoGroupedStreamKernel<Index1D, GroupNormParams, ArrayView<double>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(GroupNormKernels.WeightBiasGrad));
            kw(g.C, q, sums, mean.Floats(), rstd.Floats(), gradWeight.FloatsOrEmpty(), gradBias.FloatsOrEmpty());
        }
    }

    private static GroupNormParams Params(in GroupNormGeometry g, float epsilon, bool weight, bool bias, bool gradWeight, bool gradBias) =>
        new(g.N, g.C, g.Groups, g.ChannelsPerGroup, g.S, epsilon, weight ? 1 : 0, bias ? 1 : 0, gradWeight ? 1 : 0, gradBias ? 1 : 0, 0);
}
