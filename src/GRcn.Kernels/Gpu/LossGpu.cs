// The losses of GRcn.Kernels.Loss on a GPU device: the kernels of kernels/Loss.cs behind
// ILossBackend. The host selection (labels, indices, targets, weights: a few thousand numbers) is
// copied to the device per call; the gradient is zero-filled on the device and written by the
// kernels; the scalar loss stays on the device. The sum of squares brings one double back.
using System.Buffers;
using ILGPU;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

internal sealed partial class GpuBackend : ILossBackend
{
    private Action<KernelConfig, LossParams, ArrayView<float>, ArrayView<long>, ArrayView<float>, ArrayView<float>, ArrayView<float>>? _softmaxCrossEntropy;
    private Action<KernelConfig, LossParams, ArrayView<float>, ArrayView<long>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>? _smoothL1;
    private Action<KernelConfig, LossParams, ArrayView<float>, ArrayView<long>, ArrayView<float>, ArrayView<float>, ArrayView<float>>? _bceWithLogits;
    private Action<Index1D, long, ArrayView<float>, ArrayView<float>, ArrayView<float>>? _lossBackward;
    private Action<KernelConfig, LossParams, ArrayView<float>, ArrayView<double>>? _squaresPartial;
    private Action<KernelConfig, LossParams, ArrayView<double>, ArrayView<double>>? _sumPartials;
    private Action<KernelConfig, HarmonicParams, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<long>, ArrayView<long>, ArrayView<float>,
        ArrayView<double>, ArrayView<float>, ArrayView<float>>? _harmonicWeights;

    /// <summary>Most groups of the sum of squares per tensor (each thread then adds a strided share).</summary>
    private const int SquaresGroups = 256;

    public void SoftmaxCrossEntropy(Tensor logits, ReadOnlySpan<int> labels, Tensor? w, double normalizer, Tensor loss, Tensor grad)
    {
        int rows = logits.Dim(0);
        using var l = Upload(labels);
        var k = Kernel(ref _softmaxCrossEntropy, "softmax_cross_entropy",
            a => a.LoadStreamKernel<LossParams, ArrayView<float>, ArrayView<long>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(LossKernels.SoftmaxCrossEntropy));
        var q = new LossParams(rows, logits.Dim(1), 0, w is null ? 0 : 1, 1, 0f, normalizer, 0);
        k(new KernelConfig(1, GroupSums.For(Device)), q, logits.Floats(), l.LongsOrEmpty(), w.FloatsOrEmpty(), loss.Floats(), grad.Floats());
    }

    public void SmoothL1(Tensor x, ReadOnlySpan<int> indices, ReadOnlySpan<float> targets, Tensor? w, int groupSize,
        float beta, double normalizer, Tensor loss, Tensor grad)
    {
        Fill(grad.Floats(), 0f);
        using var i = Upload(indices);
        using var t = targets.IsEmpty ? null : Tensor.FromSpan(Device, targets, targets.Length);
        var k = Kernel(ref _smoothL1, "smooth_l1",
            a => a.LoadStreamKernel<LossParams, ArrayView<float>, ArrayView<long>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(LossKernels.SmoothL1));
        var q = new LossParams(0, 0, indices.Length, w is null ? 0 : 1, groupSize, beta, normalizer, 0);
        k(new KernelConfig(1, GroupSums.For(Device)), q, x.Floats(), i.LongsOrEmpty(), t.FloatsOrEmpty(), w.FloatsOrEmpty(), loss.Floats(), grad.Floats());
    }

    public void BinaryCrossEntropyWithLogits(Tensor x, ReadOnlySpan<int> indices, ReadOnlySpan<float> targets, double normalizer, Tensor loss, Tensor grad)
    {
        Fill(grad.Floats(), 0f);
        using var i = Upload(indices);
        using var t = targets.IsEmpty ? null : Tensor.FromSpan(Device, targets, targets.Length);
        var k = Kernel(ref _bceWithLogits, "binary_cross_entropy_with_logits",
            a => a.LoadStreamKernel<LossParams, ArrayView<float>, ArrayView<long>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(LossKernels.BinaryCrossEntropyWithLogits));
        var q = new LossParams(0, 0, indices.Length, 0, 1, 0f, normalizer, 0);
        k(new KernelConfig(1, GroupSums.For(Device)), q, x.Floats(), i.LongsOrEmpty(), t.FloatsOrEmpty(), loss.Floats(), grad.Floats());
    }

    public void HarmonicWeights(Tensor logits, Tensor deltas, Tensor rois, ReadOnlySpan<int> rows, ReadOnlySpan<int> classes, ReadOnlySpan<float> gtBoxes,
        float gamma, in BoxCoding coding, Tensor classWeights, Tensor boxWeights)
    {
        int fg = rows.Length;
        using var rowTensor = Upload(rows);
        using var classTensor = Upload(classes);
        using var gt = gtBoxes.IsEmpty ? null : Tensor.FromSpan(Device, gtBoxes, gtBoxes.Length);
        using var ious = Tensor.Empty(Device, DataType.Int64, Math.Max(fg, 1));
        var k = Kernel(ref _harmonicWeights, "harmonic_weights",
            a => a.LoadStreamKernel<HarmonicParams, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<long>, ArrayView<long>, ArrayView<float>,
                ArrayView<double>, ArrayView<float>, ArrayView<float>>(LossKernels.HarmonicWeights));
        var q = new HarmonicParams(logits.Dim(0), logits.Dim(1), fg, gamma, coding.Wx, coding.Wy, coding.Ww, coding.Wh, coding.Clamp);
        k(new KernelConfig(1, GroupSums.For(Device)), q, logits.Floats(), deltas.Floats(), rois.Floats(), rowTensor.LongsOrEmpty(), classTensor.LongsOrEmpty(), gt.FloatsOrEmpty(),
            ious.Longs().Cast<double>(), classWeights.Floats(), boxWeights.FloatsOrEmpty());
    }

    public void Backward(Tensor grad, Tensor gradLoss, Tensor gradX)
    {
        var k = Kernel(ref _lossBackward, "loss_backward",
            a => a.LoadAutoGroupedStreamKernel<Index1D, long, ArrayView<float>, ArrayView<float>, ArrayView<float>>(LossKernels.Backward));
        ArrayView<float> g = grad.Floats(), up = gradLoss.Floats(), gx = gradX.Floats();
        foreach (var (start, count) in Chunks(gx.Length)) k(count, start, g, up, gx);
    }

    public double SumOfSquares(IReadOnlyList<Tensor> tensors)
    {
        int threads = GroupSums.For(Device), slots = 0;
        foreach (var t in tensors) slots += Groups(t.Length, threads);
        // doubles in an Int64 tensor (the pool's element types): the partials, then the result
        using var scratch = Tensor.Empty(Device, DataType.Int64, slots + 1);
        var doubles = scratch.Longs().Cast<double>();
        var partial = Kernel(ref _squaresPartial, "sum_of_squares_partial",
            a => a.LoadStreamKernel<LossParams, ArrayView<float>, ArrayView<double>>(LossKernels.SquaresPartial));
        int offset = 0;
        foreach (var t in tensors)
        {
            int groups = Groups(t.Length, threads);
            if (groups == 0) continue;
            partial(new KernelConfig(groups, threads), new LossParams(0, 0, 0, 0, 1, 0f, 1, offset), t.Floats(), doubles);
            offset += groups;
        }
        var sum = Kernel(ref _sumPartials, "sum_of_squares",
            a => a.LoadStreamKernel<LossParams, ArrayView<double>, ArrayView<double>>(LossKernels.SumPartials));
        sum(new KernelConfig(1, threads), new LossParams(0, 0, offset, 0, 1, 0f, 1, 0), doubles.SubView(0, slots), doubles.SubView(slots, 1));
        // the one device → host transfer: the sum
        return BitConverter.Int64BitsToDouble(scratch.ToArray<long>()[slots]);
    }

    private static int Groups(long length, int threads) => (int)Math.Min(SquaresGroups, (length + threads - 1) / threads);

    /// <summary>Host ints as a device Int64 tensor (null when empty).</summary>
    private Tensor? Upload(ReadOnlySpan<int> values)
    {
        if (values.IsEmpty) return null;
        var longs = ArrayPool<long>.Shared.Rent(values.Length);
        try
        {
            for (int j = 0; j < values.Length; j++) longs[j] = values[j];
            return Tensor.FromSpan<long>(Device, longs.AsSpan(0, values.Length), values.Length);
        }
        finally
        {
            ArrayPool<long>.Shared.Return(longs);
        }
    }
}
