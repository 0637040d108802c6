// Elementwise and per-channel ops on a GPU device: the kernels of kernels/Elementwise.cs behind
// IElementwiseBackend. Flat ops launch one thread per element in chunks of at most int.MaxValue;
// the AdamW constants are computed here exactly as the CPU backend computes them.
using ILGPU;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

internal sealed partial class GpuBackend : IElementwiseBackend
{
    private Action<Index1D, EltwiseParams, ArrayView<float>, ArrayView<float>>? _relu, _addScaled, _scale, _globalAveragePoolBackward;
    private Action<Index1D, EltwiseParams, ArrayView<float>, ArrayView<float>, ArrayView<float>>? _reluBackward, _add, _multiply;
    private Action<Index1D, EltwiseParams, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>? _channelAffine;
    private Action<Index1D, AdamWParams, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>? _adamW;
    private Action<KernelConfig, EltwiseParams, ArrayView<float>, ArrayView<float>>? _channelSum, _globalAveragePool;
    private Action<Index1D, DropoutParams, ArrayView<float>>? _dropoutMask;

    public void Relu(Tensor x, Tensor y) =>
        Flat2(ref _relu, "relu", EltwiseKernels.Relu, default, x.Floats(), y.Floats());

    public void ReluBackward(Tensor gradY, Tensor y, Tensor gradX) =>
        Flat3(ref _reluBackward, "relu_backward", EltwiseKernels.ReluBackward, default, gradY.Floats(), y.Floats(), gradX.Floats());

    public void Add(Tensor a, Tensor b, Tensor y) =>
        Flat3(ref _add, "add", EltwiseKernels.Add, default, a.Floats(), b.Floats(), y.Floats());

    public void AddScaled(Tensor y, Tensor x, float alpha) =>
        Flat2(ref _addScaled, "add_scaled", EltwiseKernels.AddScaled, new EltwiseParams { Alpha = alpha }, x.Floats(), y.Floats());

    public void Scale(Tensor x, float alpha, Tensor y) =>
        Flat2(ref _scale, "scale", EltwiseKernels.Scale, new EltwiseParams { Alpha = alpha }, x.Floats(), y.Floats());

    public void Multiply(Tensor a, Tensor b, Tensor y) =>
        Flat3(ref _multiply, "multiply", EltwiseKernels.Multiply, default, a.Floats(), b.Floats(), y.Floats());

    public void ChannelAffine(Tensor x, Tensor? scale, Tensor? shift, Tensor y, int n, int c, long s)
    {
        var k = Kernel(ref _channelAffine, "channel_affine",
            a => a.LoadAutoGroupedStreamKernel<Index1D, EltwiseParams, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(EltwiseKernels.ChannelAffine));
        var q = new EltwiseParams { C = c, S = s, HasScale = scale is null ? 0 : 1, HasShift = shift is null ? 0 : 1 };
        ArrayView<float> xv = x.Floats(), sc = scale.FloatsOrEmpty(), sh = shift.FloatsOrEmpty(), yv = y.Floats();
        foreach (var (start, count) in Chunks(yv.Length)) k(count, q with { Start = start }, xv, sc, sh, yv);
    }

    public void ChannelSum(Tensor x, Tensor sum, int n, int c, long s, bool accumulate)
    {
        if (c == 0) return;
        if ((long)n * s == 0)
        {
            // an empty sum is 0
            if (!accumulate) Fill(sum.Floats(), 0f);
            return;
        }
        var k = Kernel(ref _channelSum, "channel_sum",
            a => a.LoadStreamKernel<EltwiseParams, ArrayView<float>, ArrayView<float>>(EltwiseKernels.ChannelSum));
        k(new KernelConfig(c, GroupSums.For(Device)), new EltwiseParams { C = c, S = s, Accumulate = accumulate ? 1 : 0 }, x.Floats(), sum.Floats());
    }

    public void GlobalAveragePool(Tensor x, Tensor y, int n, int c, long s)
    {
        if ((long)n * c == 0) return;
        var k = Kernel(ref _globalAveragePool, "global_average_pool",
            a => a.LoadStreamKernel<EltwiseParams, ArrayView<float>, ArrayView<float>>(EltwiseKernels.GlobalAveragePool));
        k(new KernelConfig(n * c, GroupSums.For(Device)), new EltwiseParams { Alpha = 1f / s, C = c, S = s }, x.Floats(), y.Floats());
    }

    public void GlobalAveragePoolBackward(Tensor gradY, Tensor gradX, int n, int c, long s) =>
        Flat2(ref _globalAveragePoolBackward, "global_average_pool_backward", EltwiseKernels.GlobalAveragePoolBackward,
            new EltwiseParams { Alpha = 1f / s, C = c, S = s }, gradY.Floats(), gradX.Floats());

    public void AdamWUpdate(Tensor weight, Tensor grad, Tensor expAvg, Tensor expAvgSq, in AdamWStep step)
    {
        var k = Kernel(ref _adamW, "adamw_update",
            a => a.LoadAutoGroupedStreamKernel<Index1D, AdamWParams, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(EltwiseKernels.AdamW));
        // the CPU backend's constants, bit for bit: decay first, w −= (lr / bc1) · m / (√v / √bc2 + ε)
        var q = new AdamWParams(step.Beta1, step.Beta2, step.Epsilon, 1f - step.LearningRate * step.WeightDecay,
            (float)(step.LearningRate / (1 - Math.Pow(step.Beta1, step.Step))), (float)(1 / Math.Sqrt(1 - Math.Pow(step.Beta2, step.Step))), 0);
        ArrayView<float> w = weight.Floats(), g = grad.Floats(), m = expAvg.Floats(), v = expAvgSq.Floats();
        foreach (var (start, count) in Chunks(w.Length)) k(count, q with { Start = start }, w, g, m, v);
    }

    public void DropoutMask(Tensor mask, ulong state, float p)
    {
        var k = Kernel(ref _dropoutMask, "dropout_mask",
            a => a.LoadAutoGroupedStreamKernel<Index1D, DropoutParams, ArrayView<float>>(EltwiseKernels.DropoutMask));
        var q = new DropoutParams(state, p, 1f / (1f - p), 0);
        var m = mask.Floats();
        foreach (var (start, count) in Chunks(m.Length)) k(count, q with { Start = start }, m);
    }

    /// <summary>A flat kernel over the elements of its last view (the output), with one input view.</summary>
    private void Flat2(ref Action<Index1D, EltwiseParams, ArrayView<float>, ArrayView<float>>? slot, string name,
        Action<Index1D, EltwiseParams, ArrayView<float>, ArrayView<float>> method, EltwiseParams q, ArrayView<float> a, ArrayView<float> y)
    {
        var k = Kernel(ref slot, name, acc => acc.LoadAutoGroupedStreamKernel(method));
        foreach (var (start, count) in Chunks(y.Length)) k(count, q with { Start = start }, a, y);
    }

    /// <summary>A flat kernel over the elements of its last view (the output), with two input views.</summary>
    private void Flat3(ref Action<Index1D, EltwiseParams, ArrayView<float>, ArrayView<float>, ArrayView<float>>? slot, string name,
        Action<Index1D, EltwiseParams, ArrayView<float>, ArrayView<float>, ArrayView<float>> method, EltwiseParams q,
        ArrayView<float> a, ArrayView<float> b, ArrayView<float> y)
    {
        var k = Kernel(ref slot, name, acc => acc.LoadAutoGroupedStreamKernel(method));
        foreach (var (start, count) in Chunks(y.Length)) k(count, q with { Start = start }, a, b, y);
    }
}
