// context_attention on a GPU device (G-RCN eq. (1), W_V dropped), forward and backward: the
// products are (batched, strided) GEMMs (Gemm in GemmGpu.cs), the rest the kernels of
// kernels/ContextAttention.cs. For RoI k of image n, P = p[k] as (Q, C), V = g[n] as (M, C), per head h:
//   Qh = P·Wq_hᵀ, Kh = V·Wk_hᵀ, Ah = softmax_rows(Qh·Khᵀ/√dk), Oh = Ah·V_h, y[k] = P + concat_h(Oh).
//
// batch_index is copied to the host once per call (K int64s; the copy synchronises the stream) and
// the RoIs grouped by image there (stable: ascending RoI index within an image), so that every
// product is a GEMM over fixed strides: the sorted order is uploaded, and the stored (C, Q) blocks
// are gathered side by side into Pᵀ (C × R), R = K·Q, the RoIs of image n in the contiguous columns
// [start[n]·Q, start[n+1]·Q). Then
//   Kᵀ[n] = w_k·g[n] (D × M) for all N images      one GEMM batched over images
//   Qᵀ = w_q·Pᵀ (D × R)                             one GEMM
//   S_h = Q_h·K_hᵀ/√dk (R × M, per head)             per image, batched over heads
//   A_h = softmax_rows(S_h)                          one launch over all H·R rows
//   O_hᵀ = V_hᵀ·A_hᵀ (cv × R), into Pᵀ's buffer       per image, batched over heads (V_hᵀ = rows of g[n])
//   y[k] = p[k] + its columns of Oᵀ                 scatter
// The backward, with dOᵀ the gathered dY:
//   dA_h = dO_h·V_hᵀ (R × M), dg_n,h (cv × M) = dO_hᵀ·A_h        per image, batched over heads
//   dS_h = A_h ∘ (dA_h − rowsum(dA_h ∘ A_h))                    one launch
//   dQ_hᵀ = K_hᵀ·dS_hᵀ/√dk (dk × R), dK_hᵀ[n] = Q_hᵀ·dS_h/√dk   per image, batched over heads
//   dw_k = Σ_n dKᵀ[n]·g[n]ᵀ (images in ascending order, beta = 1), dg_n += w_kᵀ·dKᵀ[n]
//   dw_q = dQᵀ·P, dPᵀ = w_qᵀ·dQᵀ, dp[k] = dY[k] + its columns of dPᵀ
// Every sum over RoIs is the inner dimension of one GEMM or a chain of GEMMs in a fixed order, so
// the backward uses no atomics and is bit-identical run to run (DeterministicBackward has nothing to
// select here). The saved block holds Qᵀ (D × R) then A (H × R × M), K·Q·(D + H·M) floats, in the
// sorted column order, which the backward derives again from the same batch_index.
using ILGPU;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

internal sealed partial class GpuBackend : IContextAttentionBackend
{
    private Action<Index1D, AttentionColumns, ArrayView<float>, ArrayView<long>, ArrayView<float>>? _attentionGather;
    private Action<Index1D, AttentionColumns, ArrayView<float>, ArrayView<float>, ArrayView<long>, ArrayView<float>>? _attentionScatter;
    private Action<KernelConfig, AttentionRows, ArrayView<float>>? _attentionSoftmax;
    private Action<KernelConfig, AttentionRows, ArrayView<float>, ArrayView<float>>? _attentionSoftmaxBackward;

    public long ContextAttentionSavedFloats(in ContextAttentionGeometry geo) => (long)geo.K * geo.Q * (geo.D + (long)geo.Heads * geo.M);

    public void ContextAttentionForward(Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk, Tensor y, Tensor? save, in ContextAttentionGeometry geo)
    {
        if (geo.K == 0) return;
        int C = geo.C, Q = geo.Q, M = geo.M, H = geo.Heads, cv = geo.Cv, R = checked(geo.K * geo.Q);
        var (order, start) = GroupByImage(batchIndex, geo);
        using var orderT = Tensor.FromSpan<long>(Device, order, geo.K);
        using var pT = Tensor.Empty(Device, DataType.Float32, C, R);
        using var keys = Tensor.Empty(Device, DataType.Float32, geo.N, geo.D, M);
        using var qScratch = save is null ? Tensor.Empty(Device, DataType.Float32, geo.D, R) : null;
        using var aScratch = save is null ? Tensor.Empty(Device, DataType.Float32, H, R, M) : null;
        var (qT, attn) = save is null ? (qScratch!.Floats(), aScratch!.Floats()) : Saved(save.Floats(), geo);
        var columns = new AttentionColumns(C, Q, R);
        GatherColumns(columns, p.Floats(), orderT.Longs(), pT.Floats());
        Attention(g.Floats(), wq.Floats(), wk.Floats(), pT.Floats(), start, geo, keys.Floats(), qT, attn, computeQueries: true);
        // Pᵀ is no longer needed: its buffer collects Oᵀ (C × R), head h in rows h·cv ..
        var oT = pT.Floats();
        for (int n = 0; n < geo.N; n++)
        {
            var (j0, rn) = (start[n] * Q, (start[n + 1] - start[n]) * Q);
            if (rn == 0) continue;
            // O_hᵀ (cv × rn) = V_hᵀ (cv × M, rows h·cv.. of g[n]) · A_hᵀ (A_h: rn × M)
            Gemm(new GemmShape(cv, rn, M, 0, 1, 1f, 0f, Lda: M, Ldb: M, Ldc: R, StrideA: (long)cv * M, StrideB: (long)R * M, StrideC: (long)cv * R),
                At(g.Floats(), (long)n * C * M), At(attn, (long)j0 * M), At(oT, j0), H);
        }
        ScatterAddColumns(columns, p.Floats(), oT, orderT.Longs(), y.Floats());
    }

    public void ContextAttentionBackward(Tensor gradY, Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk, Tensor? saved,
        Tensor gradP, Tensor gradG, Tensor gradWq, Tensor gradWk, in ContextAttentionGeometry geo)
    {
        if (geo.K == 0)
        {
            gradP.Clear();
            gradG.Clear();
            gradWq.Clear();
            gradWk.Clear();
            return;
        }
        int C = geo.C, Q = geo.Q, N = geo.N, M = geo.M, D = geo.D, H = geo.Heads, dk = geo.Dk, cv = geo.Cv, R = checked(geo.K * geo.Q);
        float scale = 1f / MathF.Sqrt(dk);
        var (order, start) = GroupByImage(batchIndex, geo);
        using var orderT = Tensor.FromSpan<long>(Device, order, geo.K);
        using var pT = Tensor.Empty(Device, DataType.Float32, C, R);
        using var dOT = Tensor.Empty(Device, DataType.Float32, C, R);
        using var keys = Tensor.Empty(Device, DataType.Float32, N, D, M);
        using var dKeys = Tensor.Empty(Device, DataType.Float32, N, D, M);
        using var dQT = Tensor.Empty(Device, DataType.Float32, D, R);
        using var dS = Tensor.Empty(Device, DataType.Float32, H, R, M);
        using var qScratch = saved is null ? Tensor.Empty(Device, DataType.Float32, D, R) : null;
        using var aScratch = saved is null ? Tensor.Empty(Device, DataType.Float32, H, R, M) : null;
        var (qT, attn) = saved is null ? (qScratch!.Floats(), aScratch!.Floats()) : Saved(saved.Floats(), geo);
        var columns = new AttentionColumns(C, Q, R);
        var orderV = orderT.Longs();
        GatherColumns(columns, p.Floats(), orderV, pT.Floats());
        GatherColumns(columns, gradY.Floats(), orderV, dOT.Floats());
        // the keys always (they are not saved); Qᵀ and A only without a saved block
        Attention(g.Floats(), wq.Floats(), wk.Floats(), pT.Floats(), start, geo, keys.Floats(), qT, attn, computeQueries: saved is null);

        // dg is overwritten image by image below; an image without RoIs gets no gradient
        gradG.Clear();
        var gg = gradG.Floats();
        for (int n = 0; n < N; n++)
        {
            var (j0, rn) = (start[n] * Q, (start[n + 1] - start[n]) * Q);
            if (rn == 0) continue;
            long gn = (long)n * C * M;
            // dA_h (rn × M) = dO_h (dO_hᵀ: cv × rn) · V_hᵀ (cv × M), into dS
            Gemm(new GemmShape(rn, M, cv, 1, 0, 1f, 0f, Lda: R, Ldb: M, Ldc: M, StrideA: (long)cv * R, StrideB: (long)cv * M, StrideC: (long)R * M),
                At(dOT.Floats(), j0), At(g.Floats(), gn), At(dS.Floats(), (long)j0 * M), H);
            // dV_hᵀ (cv × M) = dO_hᵀ (cv × rn) · A_h (rn × M): rows h·cv.. of dg_n, summed over the image's RoIs
            Gemm(new GemmShape(cv, M, rn, 0, 0, 1f, 0f, Lda: R, Ldb: M, Ldc: M, StrideA: (long)cv * R, StrideB: (long)R * M, StrideC: (long)cv * M),
                At(dOT.Floats(), j0), At(attn, (long)j0 * M), At(gg, gn), H);
        }
        SoftmaxBackwardRows(new AttentionRows(checked(H * R), M), attn, dS.Floats());

        bool first = true;
        for (int n = 0; n < N; n++)
        {
            var (j0, rn) = (start[n] * Q, (start[n + 1] - start[n]) * Q);
            if (rn == 0) continue;
            long gn = (long)n * C * M, kn = (long)n * D * M;
            // dQ_hᵀ (dk × rn) = K_hᵀ (dk × M) · dS_hᵀ / √dk
            Gemm(new GemmShape(dk, rn, M, 0, 1, scale, 0f, Lda: M, Ldb: M, Ldc: R, StrideA: (long)dk * M, StrideB: (long)R * M, StrideC: (long)dk * R),
                At(keys.Floats(), kn), At(dS.Floats(), (long)j0 * M), At(dQT.Floats(), j0), H);
            // dK_hᵀ[n] (dk × M) = Q_hᵀ (dk × rn) · dS_h (rn × M) / √dk, summed over the image's RoIs
            Gemm(new GemmShape(dk, M, rn, 0, 0, scale, 0f, Lda: R, Ldb: M, Ldc: M, StrideA: (long)dk * R, StrideB: (long)R * M, StrideC: (long)dk * M),
                At(qT, j0), At(dS.Floats(), (long)j0 * M), At(dKeys.Floats(), kn), H);
            // dw_k (D × C) += dKᵀ[n] (D × M) · g[n]ᵀ (images in ascending order; the first one overwrites)
            Gemm(new GemmShape(D, C, M, 0, 1, 1f, first ? 0f : 1f, Lda: M, Ldb: M, Ldc: C, 0, 0, 0),
                At(dKeys.Floats(), kn), At(g.Floats(), gn), gradWk.Floats(), 1);
            // dg_n (C × M) += w_kᵀ (C × D) · dKᵀ[n] (D × M)
            Gemm(new GemmShape(C, M, D, 1, 0, 1f, 1f, Lda: C, Ldb: M, Ldc: M, 0, 0, 0),
                wk.Floats(), At(dKeys.Floats(), kn), At(gg, gn), 1);
            first = false;
        }
        // dw_q (D × C) = dQᵀ (D × R) · P (Pᵀ: C × R)
        Gemm(new GemmShape(D, C, R, 0, 1, 1f, 0f, Lda: R, Ldb: R, Ldc: C, 0, 0, 0), dQT.Floats(), pT.Floats(), gradWq.Floats(), 1);
        // dPᵀ (C × R) = w_qᵀ · dQᵀ, into Pᵀ's buffer (read by the product above, queued before)
        Gemm(new GemmShape(C, R, D, 1, 0, 1f, 0f, Lda: C, Ldb: R, Ldc: R, 0, 0, 0), wq.Floats(), dQT.Floats(), pT.Floats(), 1);
        ScatterAddColumns(columns, gradY.Floats(), pT.Floats(), orderV, gradP.Floats());
    }

    /// <summary>
    /// Kᵀ[n] = w_k·g[n] for every image; with <paramref name="computeQueries"/> also Qᵀ = w_q·Pᵀ and
    /// A_h = softmax_rows(Q_h·K_hᵀ/√dk) (H × R × M) of every image's columns.
    /// </summary>
    private void Attention(ArrayView<float> g, ArrayView<float> wq, ArrayView<float> wk, ArrayView<float> pT, int[] start,
        in ContextAttentionGeometry geo, ArrayView<float> keys, ArrayView<float> qT, ArrayView<float> attn, bool computeQueries)
    {
        int C = geo.C, Q = geo.Q, M = geo.M, D = geo.D, H = geo.Heads, dk = geo.Dk, R = geo.K * geo.Q;
        // Kᵀ[n] (D × M) = w_k (D × C) · g[n] (C × M), all images in one launch
        Gemm(new GemmShape(D, M, C, 0, 0, 1f, 0f, Lda: C, Ldb: M, Ldc: M, StrideA: 0, StrideB: (long)C * M, StrideC: (long)D * M), wk, g, keys, geo.N);
        if (!computeQueries) return;
        // Qᵀ (D × R) = w_q (D × C) · Pᵀ (C × R)
        Gemm(new GemmShape(D, R, C, 0, 0, 1f, 0f, Lda: C, Ldb: R, Ldc: R, 0, 0, 0), wq, pT, qT, 1);
        float scale = 1f / MathF.Sqrt(dk);
        for (int n = 0; n < geo.N; n++)
        {
            var (j0, rn) = (start[n] * Q, (start[n + 1] - start[n]) * Q);
            if (rn == 0) continue;
            // S_h (rn × M) = Q_h (Q_hᵀ: dk × rn) · K_hᵀ[n] (dk × M) / √dk
            Gemm(new GemmShape(rn, M, dk, 1, 0, scale, 0f, Lda: R, Ldb: M, Ldc: M, StrideA: (long)dk * R, StrideB: (long)dk * M, StrideC: (long)R * M),
                At(qT, j0), At(keys, (long)n * D * M), At(attn, (long)j0 * M), H);
        }
        SoftmaxRows(new AttentionRows(checked(H * R), M), attn);
    }

    /// <summary>Qᵀ (D × R) and A (H × R × M) in a saved block of <see cref="ContextAttentionSavedFloats"/> floats.</summary>
    private static (ArrayView<float> Queries, ArrayView<float> Attention) Saved(ArrayView<float> block, in ContextAttentionGeometry geo)
    {
        long qFloats = (long)geo.D * geo.K * geo.Q;
        return (block.SubView(0, qFloats), block.SubView(qFloats, (long)geo.Heads * geo.K * geo.Q * geo.M));
    }

    /// <summary>
    /// The RoIs sorted by image (stable) and where each image's run starts: order[start[n] .. start[n + 1])
    /// are the RoIs of image n, ascending. Reads batch_index on the host (a synchronising copy of K int64s).
    /// </summary>
    private static (long[] Order, int[] Start) GroupByImage(Tensor batchIndex, in ContextAttentionGeometry geo)
    {
        var bi = batchIndex.ToArray<long>();
        var start = new int[geo.N + 1];
        foreach (long n in bi) start[n + 1]++;
        for (int n = 0; n < geo.N; n++) start[n + 1] += start[n];
        var next = start[..geo.N];
        var order = new long[geo.K];
        for (int k = 0; k < geo.K; k++) order[next[bi[k]]++] = k;
        return (order, start);
    }

    /// <summary>The view from <paramref name="offset"/> to its end.</summary>
    private static ArrayView<float> At(ArrayView<float> view, long offset) => view.SubView(offset, view.Length - offset);

    private void GatherColumns(AttentionColumns s, ArrayView<float> src, ArrayView<long> order, ArrayView<float> dst)
    {
        var k = Kernel(ref _attentionGather, "context_attention_gather",
            acc => acc.LoadAutoGroupedStreamKernel<Index1D, AttentionColumns, ArrayView<float>, ArrayView<long>, ArrayView<float>>(ContextAttentionKernels.GatherColumns));
        k(checked(s.C * s.R), s, src, order, dst);
    }

    private void ScatterAddColumns(AttentionColumns s, ArrayView<float> src, ArrayView<float> add, ArrayView<long> order, ArrayView<float> dst)
    {
        var k = Kernel(ref _attentionScatter, "context_attention_scatter_add",
            acc => acc.LoadAutoGroupedStreamKernel<Index1D, AttentionColumns, ArrayView<float>, ArrayView<float>, ArrayView<long>, ArrayView<float>>(
                ContextAttentionKernels.ScatterAddColumns));
        k(checked(s.C * s.R), s, src, add, order, dst);
    }

    private void SoftmaxRows(AttentionRows s, ArrayView<float> x)
    {
        var k = Kernel(ref _attentionSoftmax, "context_attention_softmax",
            acc => acc.LoadStreamKernel<AttentionRows, ArrayView<float>>(ContextAttentionKernels.SoftmaxRows));
        k(Cover((long)s.Rows * Accelerator.WarpSize, ContextAttentionKernels.SoftmaxThreads), s, x);
    }

    private void SoftmaxBackwardRows(AttentionRows s, ArrayView<float> a, ArrayView<float> d)
    {
        var k = Kernel(ref _attentionSoftmaxBackward, "context_attention_softmax_backward",
            acc => acc.LoadStreamKernel<AttentionRows, ArrayView<float>, ArrayView<float>>(ContextAttentionKernels.SoftmaxBackwardRows));
        k(Cover((long)s.Rows * Accelerator.WarpSize, ContextAttentionKernels.SoftmaxThreads), s, a, d);
    }
}
