// RPN proposal selection (GRcn.Kernels.RpnProposals) on a GPU device: the kernels of
// kernels/RpnProposals.cs around the NMS sort and NMS of NmsGpu.cs. Two counts come to the host
// (the candidates that survive the filters, and NMS's kept count: 8 bytes each) to size the
// tensors; the boxes and scores stay on the device.
using ILGPU;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

internal sealed partial class GpuBackend : IRpnProposalsBackend
{
    private Action<Index1D, ProposalParams, ArrayView<float>, ArrayView<ulong>>? _proposalKeys;
    private Action<Index1D, ProposalParams, ArrayView<ulong>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>>? _proposalDecode;
    private Action<KernelConfig, ProposalParams, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<long>>? _proposalCompact;
    private Action<Index1D, ArrayView<long>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>? _proposalGather;

    public (Tensor Boxes, Tensor Scores) Select(Tensor objectness, Tensor deltas, Tensor anchors, int image, int imageHeight, int imageWidth,
        in RpnProposalOptions o)
    {
        int a = objectness.Dim(1), hw = objectness.Dim(2) * objectness.Dim(3), p = hw * a, k = Math.Min(o.PreNmsTopN, p);
        var dev = Device;
        if (k == 0) return (Tensor.Empty(dev, DataType.Float32, 0, 4), Tensor.Empty(dev, DataType.Float32, 0));
        var q = new ProposalParams(a, hw, (long)image * p, k, imageHeight, imageWidth, o.Coding.Wx, o.Coding.Wy, o.Coding.Ww, o.Coding.Wh, o.Coding.Clamp, o.MinSize, o.ScoreThreshold);

        using var keyBuffer = Tensor.Empty(dev, DataType.Int64, PowerOfTwo(p) + p);
        var buffer = keyBuffer.Longs().Cast<ulong>();
        var keys = Kernel(ref _proposalKeys, "rpn_proposal_keys",
            acc => acc.LoadAutoGroupedStreamKernel<Index1D, ProposalParams, ArrayView<float>, ArrayView<ulong>>(RpnProposalsKernels.Keys));
        keys((int)(buffer.Length - p), q, objectness.Floats(), buffer);
        var sorted = SortKeys(p, buffer);

        using var candidates = Tensor.Empty(dev, DataType.Float32, k, 4);
        using var candidateScores = Tensor.Empty(dev, DataType.Float32, k);
        using var flags = Tensor.Empty(dev, DataType.Float32, k);
        var decode = Kernel(ref _proposalDecode, "rpn_proposal_decode",
            acc => acc.LoadAutoGroupedStreamKernel<Index1D, ProposalParams, ArrayView<ulong>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<int>>(RpnProposalsKernels.Decode));
        decode(k, q, sorted, objectness.Floats(), deltas.Floats(), anchors.Floats(), candidates.Floats(), candidateScores.Floats(), flags.Floats().Cast<int>());

        using var filtered = Tensor.Empty(dev, DataType.Float32, k, 4);
        using var filteredScores = Tensor.Empty(dev, DataType.Float32, k);
        using var count = Tensor.Empty(dev, DataType.Int64, 1);
        var compact = Kernel(ref _proposalCompact, "rpn_proposal_compact",
            acc => acc.LoadStreamKernel<ProposalParams, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<long>>(
                RpnProposalsKernels.Compact));
        compact(new KernelConfig(1, GroupSums.For(Device)), q, candidates.Floats(), candidateScores.Floats(), flags.Floats().Cast<int>(),
            filtered.Floats(), filteredScores.Floats(), count.Longs());
        // device → host: the number of candidates NMS sees
        int m = (int)count.ToArray<long>()[0];
        if (m == 0) return (Tensor.Empty(dev, DataType.Float32, 0, 4), Tensor.Empty(dev, DataType.Float32, 0));

        using var nmsBoxes = Tensor.Empty(dev, DataType.Float32, m, 4);
        using var nmsScores = Tensor.Empty(dev, DataType.Float32, m);
        nmsBoxes.CopyFrom(filtered, 0, 0, 4L * m);
        nmsScores.CopyFrom(filteredScores, 0, 0, m);
        using var keep = Tensor.Empty(dev, DataType.Int64, m);
        // the filters dropped every NaN box, so NMS's finiteness check (a host copy) is not needed
        int kept = Math.Min(Nms(nmsBoxes, nmsScores, o.NmsThreshold, keep), o.PostNmsTopN);

        var boxes = Tensor.Empty(dev, DataType.Float32, kept, 4);
        var scores = Tensor.Empty(dev, DataType.Float32, kept);
        if (kept > 0)
        {
            var gather = Kernel(ref _proposalGather, "rpn_proposal_gather",
                acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<long>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(
                    RpnProposalsKernels.Gather));
            gather(kept, keep.Longs(), nmsBoxes.Floats(), nmsScores.Floats(), boxes.Floats(), scores.Floats());
        }
        return (boxes, scores);
    }
}
