// context_attention on the CPU (G-RCN eq. (1), W_V dropped), forward and backward, built on
// GemmCpu. For RoI k of image n, P = p[k] as (Q, C), V = g[n] as (M, C), per head h:
//   Qh = P·Wq_hᵀ, Kh = V·Wk_hᵀ, Ah = softmax_rows(Qh·Khᵀ/√dk), Oh = Ah·V_h, y[k] = P + concat_h(Oh).
// The stored layouts (C, Qh·Qw) and (C, Mh·Mw) are the transposes of P and V, so every product
// reads them through the GEMM's transpose flags; nothing is transposed by copying.
using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace GRcn.Kernels.Cpu;

internal sealed unsafe partial class CpuBackend : IContextAttentionBackend
{
    public void ContextAttentionForward(Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk, Tensor y, in ContextAttentionGeometry geo)
    {
        using var scratch = ContextAttentionCpu.RentScratch(geo, backward: false);
        ContextAttentionCpu.Forward(p.Ptr<float>(), g.Ptr<float>(), batchIndex.Ptr<long>(), wq.Ptr<float>(), wk.Ptr<float>(),
            y.Ptr<float>(), scratch.Ptr<float>(), geo);
    }

    public void ContextAttentionBackward(Tensor gradY, Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk,
        Tensor gradP, Tensor gradG, Tensor gradWq, Tensor gradWk, in ContextAttentionGeometry geo)
    {
        using var scratch = ContextAttentionCpu.RentScratch(geo, backward: true);
        ContextAttentionCpu.Backward(gradY.Ptr<float>(), p.Ptr<float>(), g.Ptr<float>(), batchIndex.Ptr<long>(), wq.Ptr<float>(),
            wk.Ptr<float>(), gradP.Ptr<float>(), gradG.Ptr<float>(), gradWq.Ptr<float>(), gradWk.Ptr<float>(), scratch.Ptr<float>(), geo);
    }
}

/// <summary>Context-attention kernels on raw float32 pointers.</summary>
/// <remarks>
/// <para>
/// Shapes: p and y (K, C, Q), g (N, C, M), batch_index (K), w_q and w_k (D, C), heads H,
/// dk = D/H, cv = C/H. RoIs are grouped by image (stable counting sort of batch_index) and
/// each used image is handled once: its keys are projected once as K_nᵀ = w_k·V_nᵀ (D × M),
/// V_nᵀ being the stored (C, M) map, then its RoIs are processed in chunks of at most
/// <see cref="ChunkRois"/> RoIs. The queries of a chunk are kept transposed, Qᵀ (D × rows) with
/// RoI r in columns r·Q .. (r+1)·Q − 1 (one GEMM w_q·P_rᵀ per RoI on the stored (C, Q) block), so
/// the scores of a whole chunk and head are one GEMM (rows × M) followed by a row softmax (max
/// subtracted); the head output is added straight into y[k] as Ohᵀ = V_hᵀ·A_hᵀ (cv × Q) on top
/// of the copied p[k]. Working on the transposed matrices means the stored layouts are read in
/// place through the GEMM's transpose flags and no operand is ever transposed by copying.
/// </para>
/// <para>
/// Backward recomputes the attention per chunk and head and forms, with S = Qh·Khᵀ/√dk:
/// dA = dOh·V_hᵀ, dS = A ⊙ (dA − rowsum(dA ⊙ A)), dQhᵀ = Khᵀ·dSᵀ/√dk, dKhᵀ += Qhᵀ·dS/√dk (summed
/// over the image's RoIs), dV_hᵀ += dOhᵀ·A; then per RoI dw_q += dQᵀ·P and dP = dY + dQ·w_q; per
/// image dw_k += dKᵀ·V and dV += dK·w_k. All gradients are cleared or overwritten first.
/// </para>
/// <para>
/// Parallelism comes from the GEMMs (row-split across workers) and from the row-wise softmax
/// passes (<see cref="Parallelism.For"/> over rows); images, chunks and RoIs run in sequence, so
/// accumulation order is deterministic. Scratch (keys, queries, scores, their gradients) is one
/// block from the CPU device's caching allocator, so repeated calls reuse the same memory.
/// </para>
/// </remarks>
internal static unsafe class ContextAttentionCpu
{
    /// <summary>Upper bound on query rows (RoIs × Q) of one chunk.</summary>
    private const int RowBudget = 4096;

    /// <summary>Upper bound on score elements (rows × M) of one chunk.</summary>
    private const long ScoreBudget = 1L << 22;

    /// <summary>RoIs per chunk: at least one, at most what fits the row and score budgets.</summary>
    public static int ChunkRois(in ContextAttentionGeometry geo)
    {
        long q = Math.Max(1, geo.Q);
        long byRows = RowBudget / q;
        long byScores = ScoreBudget / (q * Math.Max(1, geo.M));
        long r = Math.Min(Math.Min(byRows, byScores), geo.K);
        return (int)Math.Max(1, r);
    }

    private static long Align(long floats) => (floats + 15) & ~15L;

    /// <summary>Scratch layout (in floats): Kᵀ (D × M), Qᵀ (D × rows), scores (rows × M) [, dS, dQᵀ, dKᵀ].</summary>
    private readonly struct Layout
    {
        public readonly long Keys, Queries, Scores, DScores, DQueries, DKeys, Total;

        public Layout(in ContextAttentionGeometry geo, bool backward)
        {
            long rows = (long)ChunkRois(geo) * geo.Q;
            long md = Align((long)geo.M * geo.D), rd = Align(rows * geo.D), rm = Align(rows * geo.M);
            Keys = 0;
            Queries = Keys + md;
            Scores = Queries + rd;
            long end = Scores + rm;
            if (backward)
            {
                DScores = end;
                DQueries = DScores + rm;
                DKeys = DQueries + rd;
                end = DKeys + md;
            }
            else DScores = DQueries = DKeys = end;
            Total = Math.Max(end, 16);
        }
    }

    /// <summary>A scratch block for one call, from the device's caching allocator (reused across calls).</summary>
    public static Tensor RentScratch(in ContextAttentionGeometry geo, bool backward)
    {
        long total = new Layout(geo, backward).Total;
        if (total > int.MaxValue)
            throw new ArgumentException($"context_attention scratch of {total} floats is too large for keys (M={geo.M}, D={geo.D})", "g");
        return Tensor.Empty(Device.Cpu, DataType.Float32, (int)total);
    }

    /// <summary>RoIs grouped by image: order[start[n] .. start[n + 1]) are the RoIs of image n, ascending.</summary>
    private static void GroupByImage(long* batchIndex, int k, int n, int* order, int* start)
    {
        new Span<int>(start, n + 1).Clear();
        for (int i = 0; i < k; i++) start[batchIndex[i] + 1]++;
        for (int i = 0; i < n; i++) start[i + 1] += start[i];
        // fill using start[img] as a cursor, then shift back
        for (int i = 0; i < k; i++) order[start[batchIndex[i]]++] = i;
        for (int i = n; i > 0; i--) start[i] = start[i - 1];
        start[0] = 0;
    }

    public static void Forward(float* p, float* g, long* batchIndex, float* wq, float* wk, float* y, float* scratch,
        in ContextAttentionGeometry geo)
    {
        int K = geo.K, C = geo.C, Q = geo.Q, N = geo.N, M = geo.M, D = geo.D, H = geo.Heads, dk = geo.Dk, cv = geo.Cv;
        var lay = new Layout(geo, backward: false);
        float* keysT = scratch + lay.Keys, queriesT = scratch + lay.Queries, scores = scratch + lay.Scores;
        float scale = 1f / MathF.Sqrt(dk);
        long cq = (long)C * Q, cm = (long)C * M;
        int chunk = ChunkRois(geo);

        // residual: y = p
        Buffer.MemoryCopy(p, y, (long)K * cq * sizeof(float), (long)K * cq * sizeof(float));

        int[] orderArr = ArrayPool<int>.Shared.Rent(K), startArr = ArrayPool<int>.Shared.Rent(N + 1);
        try
        {
            fixed (int* order = orderArr, start = startArr)
            {
                GroupByImage(batchIndex, K, N, order, start);
                for (int n = 0; n < N; n++)
                {
                    if (start[n + 1] == start[n]) continue;
                    float* gn = g + n * cm;
                    // K_nᵀ = w_k·Vᵀ (D × M); Vᵀ is the stored (C, M) map
                    GemmCpu.Multiply(false, false, D, M, C, 1f, wk, C, gn, M, 0f, keysT, M);
                    for (int c0 = start[n]; c0 < start[n + 1]; c0 += chunk)
                    {
                        int rc = Math.Min(chunk, start[n + 1] - c0), rows = rc * Q;
                        ProjectQueries(p, wq, order + c0, rc, Q, C, D, cq, queriesT, rows);
                        for (int h = 0; h < H; h++)
                        {
                            Attention(queriesT + (long)h * dk * rows, keysT + (long)h * dk * M, scores, rows, M, dk, scale);
                            for (int r = 0; r < rc; r++)
                            {
                                // y[k] rows h·cv.. (cv × Q) += V_hᵀ·A_rᵀ
                                GemmCpu.Multiply(false, true, cv, Q, M, 1f, gn + (long)h * cv * M, M, scores + (long)r * Q * M, M,
                                    1f, y + order[c0 + r] * cq + (long)h * cv * Q, Q);
                            }
                        }
                    }
                }
            }
        }
        finally
        {
            ArrayPool<int>.Shared.Return(orderArr);
            ArrayPool<int>.Shared.Return(startArr);
        }
    }

    public static void Backward(float* gy, float* p, float* g, long* batchIndex, float* wq, float* wk,
        float* gp, float* gg, float* gwq, float* gwk, float* scratch, in ContextAttentionGeometry geo)
    {
        int K = geo.K, C = geo.C, Q = geo.Q, N = geo.N, M = geo.M, D = geo.D, H = geo.Heads, dk = geo.Dk, cv = geo.Cv;
        var lay = new Layout(geo, backward: true);
        float* keysT = scratch + lay.Keys, queriesT = scratch + lay.Queries, attn = scratch + lay.Scores;
        float* dScores = scratch + lay.DScores, dQueriesT = scratch + lay.DQueries, dKeysT = scratch + lay.DKeys;
        float scale = 1f / MathF.Sqrt(dk);
        long cq = (long)C * Q, cm = (long)C * M;
        int chunk = ChunkRois(geo);

        // every gradient is overwritten: dP starts as the residual's dY, the others at zero
        Buffer.MemoryCopy(gy, gp, (long)K * cq * sizeof(float), (long)K * cq * sizeof(float));
        new Span<float>(gwq, D * C).Clear();
        new Span<float>(gwk, D * C).Clear();
        for (int n = 0; n < N; n++) new Span<float>(gg + n * cm, (int)cm).Clear();

        int[] orderArr = ArrayPool<int>.Shared.Rent(K), startArr = ArrayPool<int>.Shared.Rent(N + 1);
        try
        {
            fixed (int* order = orderArr, start = startArr)
            {
                GroupByImage(batchIndex, K, N, order, start);
                for (int n = 0; n < N; n++)
                {
                    if (start[n + 1] == start[n]) continue;
                    float* gn = g + n * cm, ggn = gg + n * cm;
                    GemmCpu.Multiply(false, false, D, M, C, 1f, wk, C, gn, M, 0f, keysT, M);
                    new Span<float>(dKeysT, D * M).Clear();
                    for (int c0 = start[n]; c0 < start[n + 1]; c0 += chunk)
                    {
                        int rc = Math.Min(chunk, start[n + 1] - c0), rows = rc * Q;
                        ProjectQueries(p, wq, order + c0, rc, Q, C, D, cq, queriesT, rows);
                        for (int h = 0; h < H; h++)
                        {
                            float* qh = queriesT + (long)h * dk * rows, kh = keysT + (long)h * dk * M;
                            Attention(qh, kh, attn, rows, M, dk, scale);
                            float* vh = gn + (long)h * cv * M;      // V_hᵀ (cv × M)
                            for (int r = 0; r < rc; r++)
                            {
                                float* dOt = gy + order[c0 + r] * cq + (long)h * cv * Q;  // dO_hᵀ (cv × Q)
                                float* ar = attn + (long)r * Q * M;
                                // dA = dO_h·V_hᵀ (Q × M)
                                GemmCpu.Multiply(true, false, Q, M, cv, 1f, dOt, Q, vh, M, 0f, dScores + (long)r * Q * M, M);
                                // dV_hᵀ += dO_hᵀ·A (cv × M)
                                GemmCpu.Multiply(false, false, cv, M, Q, 1f, dOt, Q, ar, M, 1f, ggn + (long)h * cv * M, M);
                            }
                            SoftmaxBackward(attn, dScores, rows, M);
                            // dQ_hᵀ = K_hᵀ·dSᵀ/√dk (dk × rows)
                            GemmCpu.Multiply(false, true, dk, rows, M, scale, kh, M, dScores, M, 0f, dQueriesT + (long)h * dk * rows, rows);
                            // dK_hᵀ += Q_hᵀ·dS/√dk (dk × M)
                            GemmCpu.Multiply(false, false, dk, M, rows, scale, qh, rows, dScores, M, 1f, dKeysT + (long)h * dk * M, M);
                        }
                        for (int r = 0; r < rc; r++)
                        {
                            float* pk = p + order[c0 + r] * cq;
                            float* dqT = dQueriesT + (long)r * Q;   // dQ_rᵀ (D × Q), row stride rows
                            // dw_q += dQᵀ·P (D × C)
                            GemmCpu.Multiply(false, true, D, C, Q, 1f, dqT, rows, pk, Q, 1f, gwq, C);
                            // dP[k] (C × Q) += (dQ·w_q)ᵀ = w_qᵀ·dQᵀ
                            GemmCpu.Multiply(true, false, C, Q, D, 1f, wq, C, dqT, rows, 1f, gp + order[c0 + r] * cq, Q);
                        }
                    }
                    // dw_k += dKᵀ·V (D × C); dV += dK·w_k, stored transposed: dg_n (C × M) += w_kᵀ·dKᵀ
                    GemmCpu.Multiply(false, true, D, C, M, 1f, dKeysT, M, gn, M, 1f, gwk, C);
                    GemmCpu.Multiply(true, false, C, M, D, 1f, wk, C, dKeysT, M, 1f, ggn, M);
                }
            }
        }
        finally
        {
            ArrayPool<int>.Shared.Return(orderArr);
            ArrayPool<int>.Shared.Return(startArr);
        }
    }

    /// <summary>
    /// Queries of a chunk, transposed: columns r·Q .. (r+1)·Q − 1 of queriesT (D × rows) are
    /// (P_r·w_qᵀ)ᵀ = w_q·P_rᵀ for RoI roi[r], P_rᵀ being the stored (C, Q) block.
    /// </summary>
    private static void ProjectQueries(float* p, float* wq, int* roi, int rc, int q, int c, int d, long cq, float* queriesT, int rows)
    {
        for (int r = 0; r < rc; r++)
            GemmCpu.Multiply(false, false, d, q, c, 1f, wq, c, p + roi[r] * cq, q, 0f, queriesT + (long)r * q, rows);
    }

    /// <summary>scores (rows × M) = softmax_rows(scale · Q·Kᵀ) for one head, from qT (dk × rows) and kT (dk × M).</summary>
    private static void Attention(float* qT, float* kT, float* scores, int rows, int m, int dk, float scale)
    {
        GemmCpu.Multiply(true, false, rows, m, dk, scale, qT, rows, kT, m, 0f, scores, m);
        nint ps = (nint)scores;
        Parallelism.For(rows, 8L * m, (start, end) =>
        {
            for (int i = start; i < end; i++) SoftmaxRow((float*)ps + (long)i * m, m);
        });
    }

    /// <summary>In place: x = exp(x − max x) / Σ exp(x − max x).</summary>
    private static void SoftmaxRow(float* x, int m)
    {
        float max = x[0];
        for (int j = 1; j < m; j++)
            if (x[j] > max || float.IsNaN(x[j])) max = x[j];
        float sum = 0f;
        for (int j = 0; j < m; j++)
        {
            float e = MathF.Exp(x[j] - max);
            x[j] = e;
            sum += e;
        }
        float inv = 1f / sum;
        Scale(x, m, inv);
    }

    /// <summary>In place over rows: dS = A ⊙ (dA − rowsum(dA ⊙ A)), dA held in <paramref name="grad"/>.</summary>
    private static void SoftmaxBackward(float* attn, float* grad, int rows, int m)
    {
        nint pa = (nint)attn, pg = (nint)grad;
        Parallelism.For(rows, 4L * m, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                float* a = (float*)pa + (long)i * m;
                float* d = (float*)pg + (long)i * m;
                float s = Dot(a, d, m);
                for (int j = 0; j < m; j++) d[j] = a[j] * (d[j] - s);
            }
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scale(float* x, int n, float s)
    {
        int j = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var vs = new Vector<float>(s);
            for (; j <= n - Vector<float>.Count; j += Vector<float>.Count)
                Unsafe.WriteUnaligned(x + j, Unsafe.ReadUnaligned<Vector<float>>(x + j) * vs);
        }
        for (; j < n; j++) x[j] *= s;
    }

    private static float Dot(float* x, float* y, int n)
    {
        int j = 0;
        var acc = Vector<float>.Zero;
        if (Vector.IsHardwareAccelerated)
        {
            for (; j <= n - Vector<float>.Count; j += Vector<float>.Count)
                acc += Unsafe.ReadUnaligned<Vector<float>>(x + j) * Unsafe.ReadUnaligned<Vector<float>>(y + j);
        }
        float s = Vector.Sum(acc);
        for (; j < n; j++) s += x[j] * y[j];
        return s;
    }
}
