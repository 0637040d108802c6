// context_attention on the CPU (G-RCN eq. (1), W_V dropped), forward and backward, built on
// GemmCpu. For RoI k of image n, P = p[k] as (Q, C), V = g[n] as (M, C), per head h:
//   Qh = P·Wq_hᵀ, Kh = V·Wk_hᵀ, Ah = softmax_rows(Qh·Khᵀ/√dk), Oh = Ah·V_h, y[k] = P + concat_h(Oh).
// Everything is computed transposed, with the RoIs of a chunk side by side in columns: the stored
// (C, Qh·Qw) blocks are gathered into one (C × rows) matrix, so the projections are one large GEMM
// per chunk, and each head's scores, softmax (down columns, vectorised across queries) and values
// run block by block of at most 256 query columns, each block on one worker with its scores in L2.
using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GRcn.Kernels.Cpu;

internal sealed unsafe partial class CpuBackend : IContextAttentionBackend
{
    public void ContextAttentionForward(Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk, Tensor y, Tensor? save, in ContextAttentionGeometry geo)
    {
        using var scratch = ContextAttentionCpu.RentScratch(geo, backward: false);
        ContextAttentionCpu.Forward(p.Ptr<float>(), g.Ptr<float>(), batchIndex.Ptr<long>(), wq.Ptr<float>(), wk.Ptr<float>(),
            y.Ptr<float>(), scratch.Ptr<float>(), save is null ? null : save.Ptr<float>(), geo);
    }

    public void ContextAttentionBackward(Tensor gradY, Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk, Tensor? saved,
        Tensor gradP, Tensor gradG, Tensor gradWq, Tensor gradWk, in ContextAttentionGeometry geo)
    {
        using var scratch = ContextAttentionCpu.RentScratch(geo, backward: true);
        ContextAttentionCpu.Backward(gradY.Ptr<float>(), p.Ptr<float>(), g.Ptr<float>(), batchIndex.Ptr<long>(), wq.Ptr<float>(),
            wk.Ptr<float>(), gradP.Ptr<float>(), gradG.Ptr<float>(), gradWq.Ptr<float>(), gradWk.Ptr<float>(), scratch.Ptr<float>(),
            saved is null ? null : saved.Ptr<float>(), geo);
    }

    public long ContextAttentionSavedFloats(in ContextAttentionGeometry geo) => ContextAttentionCpu.SavedFloats(geo);
}

/// <summary>Context-attention kernels on raw float32 pointers.</summary>
/// <remarks>
/// <para>
/// Shapes: p and y (K, C, Q), g (N, C, M), batch_index (K), w_q and w_k (D, C), heads H,
/// dk = D/H, cv = C/H. RoIs are grouped by image (stable counting sort of batch_index) and
/// each used image is handled once: its keys are projected once as K_nᵀ = w_k·V_nᵀ (D × M),
/// V_nᵀ being the stored (C, M) map, then its RoIs are processed in chunks of at most
/// <see cref="ChunkRois"/> RoIs. A chunk's (C, Q) blocks are gathered side by side into
/// Pᵀ (C × rows), RoI r in columns r·Q .. (r+1)·Q − 1, so the queries are one GEMM
/// Qᵀ = w_q·Pᵀ (D × rows). Per head and block of <see cref="Block"/> query columns, the
/// transposed scores Sᵀ = K_h·Q_hᵀ/√dk (M × block) are one product, the softmax runs down each
/// column (over the M context positions, max subtracted), and the head output is
/// Oᵀ_h = V_hᵀ·Aᵀ (cv × block); finally y[k] = p[k] + the RoI's columns of Oᵀ. K_h and V_h
/// (and in the backward K_hᵀ) are packed once per image into the micro-kernel's panel layout
/// (<see cref="PackHeads"/>), and the block products read their other operand, a block of
/// columns of a (· × rows) matrix, in place (<see cref="GemmCpu.MultiplyPackedA"/>); those
/// matrices have a row pitch (<see cref="Pitch"/>) that spreads a block's rows over the L1 sets.
/// </para>
/// <para>
/// Backward takes Qᵀ and Aᵀ of each chunk and head from the block the forward saved them in
/// (see <see cref="SavedFloats"/>), or recomputes them without one, and forms, with dOᵀ the gathered dY:
/// dAᵀ = V_h·dO_hᵀ, dSᵀ = Aᵀ ⊙ (dAᵀ − colsum(dAᵀ ⊙ Aᵀ)), dQ_hᵀ = K_hᵀ·dSᵀ/√dk (these three
/// block by block of query columns), then dK_hᵀ += Q_hᵀ·dS/√dk and dV_hᵀ += dO_hᵀ·A (both summed
/// over the image's RoIs, over all the chunk's columns at once, each computed transposed and
/// added in); then per chunk
/// dw_q += dQᵀ·P and dPᵀ = w_qᵀ·dQᵀ, scattered as dp[k] = dY[k] + the RoI's columns; per image
/// dw_k += dKᵀ·V and dV += dK·w_k. All gradients are cleared or overwritten first.
/// </para>
/// <para>
/// Parallelism: the projections and weight gradients are parallel GEMMs (tiles of C split across
/// workers); the column blocks of all heads of a chunk are <see cref="Parallelism.For"/> items
/// (each one's products on one thread, <see cref="GemmCpu.MultiplySerial"/>), and so are the
/// parts of dK_hᵀ and dV_hᵀ, the heads of the packing and the RoIs of the gathers and scatters.
/// Images and chunks run in sequence and every item writes its own outputs, and no sum is split
/// by worker, so the results are deterministic and the same for any number of threads.
/// Scratch (keys, gathered operands, queries, scores, their gradients) is one block from the CPU
/// device's caching allocator, so repeated calls reuse the same memory.
/// </para>
/// </remarks>
internal static unsafe class ContextAttentionCpu
{
    /// <summary>Upper bound on query rows (RoIs × Q) of one chunk.</summary>
    private const int RowBudget = 4096;

    /// <summary>Upper bound on score elements (rows × M) of one chunk.</summary>
    private const long ScoreBudget = 1L << 22;

    /// <summary>Columns of Sᵀ one softmax pass handles at a time (a multiple of the vector width).</summary>
    private const int Strip = 64;

    /// <summary>
    /// Most query columns of one work item of a head: its scores (at most M × 256 floats, 200 KB
    /// for M = 196) stay in L2 from their product through the softmax to the product that reads them.
    /// </summary>
    private const int Block = 4 * Strip;

    /// <summary>
    /// RoIs per chunk of an image with <paramref name="count"/> RoIs: as few chunks as
    /// <paramref name="limit"/> (<see cref="ChunkRois"/>) allows, of equal size (the last one
    /// possibly smaller), so no chunk is a small remainder whose products split poorly.
    /// </summary>
    private static int EvenChunk(int count, int limit)
    {
        if (count <= limit) return Math.Max(count, 1);
        int chunks = (count + limit - 1) / limit;
        return (count + chunks - 1) / chunks;
    }

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

    /// <summary>
    /// Row pitch (floats) of a chunk's (· × rows) matrices, scratch and saved: rows rounded up to
    /// whole 64-byte lines, plus one line when that makes an even count. A block of columns then
    /// has its lines (one per row) spread over every L1 set; with a pitch that is a multiple of
    /// 1 KiB they would share 1/16 of them (3136 rows: 12.25 KiB), and a product reading a
    /// 196-row block in place would miss L1 at every row.
    /// </summary>
    private static int Pitch(int rows)
    {
        int lines = (rows + 15) / 16;
        return (lines | 1) * 16;
    }

    /// <summary>Floats of score matrices (M × rows) the heads of one group may hold in scratch at once.</summary>
    private const long GroupScoreBudget = 1L << 23;

    /// <summary>
    /// Heads whose blocks run as one set of work items (see <see cref="HeadBlocks.RunForward"/>),
    /// each with its own scores (and score gradients) in scratch: every head when that fits
    /// <see cref="GroupScoreBudget"/> (32 MiB).
    /// </summary>
    private static int HeadGroup(in ContextAttentionGeometry geo) =>
        (int)Math.Clamp((TestGroupScoreBudget ?? GroupScoreBudget) / ((long)Pitch(ChunkRois(geo) * geo.Q) * Math.Max(1, geo.M)), 1, Math.Max(1, geo.Heads));

    /// <summary>Test hook: replaces <see cref="GroupScoreBudget"/> for calls started on this thread (smaller groups of heads).</summary>
    [ThreadStatic] internal static long? TestGroupScoreBudget;

    /// <summary>
    /// Whether the per-head products run on pre-packed K_h and V_h (<see cref="GemmCpu.MultiplyPackedA"/>):
    /// AVX2/FMA present and M, dk, cv within one packed slice of k.
    /// </summary>
    private static bool PrePack(in ContextAttentionGeometry geo) =>
        Avx2.IsSupported && Fma.IsSupported && geo.M <= GemmCpu.KC && geo.Dk <= GemmCpu.KC && geo.Cv <= GemmCpu.KC;

    /// <summary>
    /// Floats of one head's pre-packed operands: K_h (M × dk) and V_hᵀ (cv × M) for the forward;
    /// K_h, V_h (M × cv) and K_hᵀ (dk × M) for the backward (see <see cref="PackHeads"/>).
    /// </summary>
    private static long PackedPerHead(in ContextAttentionGeometry geo, bool backward)
    {
        if (!PrePack(geo)) return 0;
        var at = PackedOffsets(geo.M, geo.Dk, geo.Cv);
        return backward ? at.Kt + Align(GemmCpu.PackedASize(geo.Dk, geo.M)) : at.V + Align(GemmCpu.PackedASize(geo.Cv, geo.M));
    }

    /// <summary>
    /// Where a head's pre-packed operands start in its region (floats): K_h at 0, then V (V_hᵀ in
    /// the forward's region, V_h in the backward's), then, backward only, K_hᵀ.
    /// </summary>
    private static (long V, long Kt) PackedOffsets(int m, int dk, int cv)
    {
        long v = Align(GemmCpu.PackedASize(m, dk));
        return (v, v + Align(GemmCpu.PackedASize(m, cv)));
    }

    /// <summary>
    /// Scratch layout (in floats): Kᵀ (D × M), Pᵀ (C × rows), Qᵀ (D × rows), Aᵀ (M × rows, one per
    /// head of a group) [, dKᵀ (D × M), dOᵀ (C × rows), dQᵀ (D × rows), dSᵀ (M × rows) and dV_h,
    /// dK_h (M × cv, M × dk), one of each per head of a group], then every head's pre-packed
    /// operands; the (· × rows) matrices with row pitch <see cref="Pitch"/>.
    /// </summary>
    private readonly struct Layout
    {
        public readonly long Keys, Gathered, Queries, Scores, DKeys, DOut, DQueries, DScores, DReduce, Packed, Total;

        public Layout(in ContextAttentionGeometry geo, bool backward)
        {
            long ld = Pitch(ChunkRois(geo) * geo.Q);
            int group = HeadGroup(geo);
            long md = Align((long)geo.M * geo.D), rc = Align(ld * geo.C), rd = Align(ld * geo.D), rm = Align(ld * geo.M * group);
            Keys = 0;
            Gathered = Keys + md;
            Queries = Gathered + rc;
            Scores = Queries + rd;
            long end = Scores + rm;
            if (backward)
            {
                DKeys = end;
                DOut = DKeys + md;
                DQueries = DOut + rc;
                DScores = DQueries + rd;
                DReduce = DScores + rm;
                end = DReduce + Align((long)geo.M * (geo.Cv + geo.Dk) * group);
            }
            else DKeys = DOut = DQueries = DScores = DReduce = end;
            Packed = end;
            end += geo.Heads * PackedPerHead(geo, backward);
            Total = Math.Max(end, 16);
        }
    }

    /// <summary>
    /// Packs every head's operands of the per-block products once per image (they do not change
    /// across chunks and blocks), one head per work item. Head h's region (<see cref="PackedPerHead"/>
    /// floats) holds K_h (M × dk, from K_hᵀ transposed) for Sᵀ = K_h·Q_hᵀ, then forward V_hᵀ
    /// (cv × M) for Oᵀ = V_hᵀ·Aᵀ, or backward V_h (M × cv) for dAᵀ = V_h·dO_hᵀ and K_hᵀ (dk × M)
    /// for dQ_hᵀ = K_hᵀ·dSᵀ.
    /// </summary>
    private static void PackHeads(float* keysT, float* gn, float* packed, in ContextAttentionGeometry geo, bool backward)
    {
        long perHead = PackedPerHead(geo, backward);
        Parallelism.For(geo.Heads, perHead, (k: (nint)keysT, v: (nint)gn, p: (nint)packed, perHead, geo.M, geo.Dk, geo.Cv, backward),
            static (st, h0, h1) =>
            {
                var (k, v, p, perHead, m, dk, cv, backward) = st;
                var at = PackedOffsets(m, dk, cv);
                for (int h = h0; h < h1; h++)
                {
                    float* khT = (float*)k + (long)h * dk * m, vhT = (float*)v + (long)h * cv * m;
                    float* dst = (float*)p + h * perHead;
                    GemmCpu.PackA(true, khT, m, m, dk, dst);
                    if (!backward)
                    {
                        GemmCpu.PackA(false, vhT, m, cv, m, dst + at.V);
                        continue;
                    }
                    GemmCpu.PackA(true, vhT, m, m, cv, dst + at.V);
                    GemmCpu.PackA(false, khT, m, dk, m, dst + at.Kt);
                }
            });
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

    /// <summary>
    /// Floats a forward saves for the backward: per chunk, in the order the chunks run (images
    /// ascending, then chunks), Qᵀ (D × rows) followed by Aᵀ of every head (H × M × rows), all
    /// with row pitch <see cref="Pitch"/>(rows) ≤ rows + 31; in all at most
    /// (K·Q + 31·chunks)·(D + H·M), an image of r RoIs having at most r / <see cref="ChunkRois"/> + 1 chunks.
    /// </summary>
    public static long SavedFloats(in ContextAttentionGeometry geo)
    {
        int chunk = ChunkRois(geo);
        long chunks = Math.Min(geo.K, (geo.K + chunk - 1) / chunk + Math.Min(geo.N, geo.K));
        return ((long)geo.K * geo.Q + 31 * chunks) * (geo.D + (long)geo.Heads * geo.M);
    }

    /// <summary>
    /// y = p + attention; with <paramref name="save"/> (<see cref="SavedFloats"/> floats) the
    /// queries and attention weights are computed into it (same values, kept for the backward).
    /// </summary>
    public static void Forward(float* p, float* g, long* batchIndex, float* wq, float* wk, float* y, float* scratch, float* save,
        in ContextAttentionGeometry geo)
    {
        int K = geo.K, C = geo.C, Q = geo.Q, N = geo.N, M = geo.M, D = geo.D, H = geo.Heads, dk = geo.Dk, cv = geo.Cv;
        var lay = new Layout(geo, backward: false);
        float* keysT = scratch + lay.Keys, gathered = scratch + lay.Gathered, queriesT = scratch + lay.Queries, attnT = scratch + lay.Scores;
        float* packed = PrePack(geo) ? scratch + lay.Packed : null;
        long perHead = PackedPerHead(geo, backward: false);
        int group = HeadGroup(geo);
        HeadBlocks* heads = stackalloc HeadBlocks[group];
        float scale = 1f / MathF.Sqrt(dk);
        long cq = (long)C * Q, cm = (long)C * M;
        int chunk = ChunkRois(geo);

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
                    if (packed != null) PackHeads(keysT, gn, packed, geo, backward: false);
                    int imageChunk = EvenChunk(start[n + 1] - start[n], chunk);
                    for (int c0 = start[n]; c0 < start[n + 1]; c0 += imageChunk)
                    {
                        int rc = Math.Min(imageChunk, start[n + 1] - c0), rows = rc * Q, ld = Pitch(rows);
                        Gather(p, order + c0, rc, C, Q, gathered, ld);
                        // the chunk's Qᵀ and Aᵀ of every head go to the saved block when there is one
                        float* qT = save == null ? queriesT : save;
                        // Qᵀ = w_q·Pᵀ (D × rows)
                        GemmCpu.Multiply(false, false, D, rows, C, 1f, wq, C, gathered, ld, 0f, qT, ld);
                        // Pᵀ is no longer needed: its buffer collects Oᵀ (C × rows), head h in rows h·cv ..
                        float* outT = gathered;
                        for (int h0 = 0; h0 < H; h0 += group)
                        {
                            int hn = Math.Min(group, H - h0);
                            for (int i = 0; i < hn; i++)
                            {
                                int h = h0 + i;
                                float* aT = save == null ? attnT + (long)i * M * ld : save + (D + (long)h * M) * ld;
                                heads[i] = new HeadBlocks(qT + (long)h * dk * ld, keysT + (long)h * dk * M, gn + (long)h * cv * M, aT,
                                    outT + (long)h * cv * ld, null, null, rows, ld, M, dk, cv, scale, packed == null ? null : packed + h * perHead);
                            }
                            HeadBlocks.RunForward(heads, hn);
                        }
                        ScatterAdd(p, outT, order + c0, rc, C, Q, y, ld);
                        if (save != null) save += (D + (long)H * M) * ld;
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

    /// <summary>
    /// The gradients; with <paramref name="saved"/> (filled by <see cref="Forward"/> for the same
    /// inputs) Qᵀ and Aᵀ are read from it instead of being recomputed.
    /// </summary>
    public static void Backward(float* gy, float* p, float* g, long* batchIndex, float* wq, float* wk,
        float* gp, float* gg, float* gwq, float* gwk, float* scratch, float* saved, in ContextAttentionGeometry geo)
    {
        int K = geo.K, C = geo.C, Q = geo.Q, N = geo.N, M = geo.M, D = geo.D, H = geo.Heads, dk = geo.Dk, cv = geo.Cv;
        var lay = new Layout(geo, backward: true);
        float* keysT = scratch + lay.Keys, gathered = scratch + lay.Gathered, queriesT = scratch + lay.Queries, attnT = scratch + lay.Scores;
        float* dKeysT = scratch + lay.DKeys, dOutT = scratch + lay.DOut, dQueriesT = scratch + lay.DQueries, dScoresT = scratch + lay.DScores;
        float* dReduce = scratch + lay.DReduce;
        float* packed = PrePack(geo) ? scratch + lay.Packed : null;
        long perHead = PackedPerHead(geo, backward: true);
        int group = HeadGroup(geo);
        HeadBlocks* heads = stackalloc HeadBlocks[group];
        float scale = 1f / MathF.Sqrt(dk);
        long cm = (long)C * M;
        int chunk = ChunkRois(geo);

        // every gradient is overwritten: dp by the scatter below (every RoI belongs to one image), the others cleared
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
                    if (packed != null) PackHeads(keysT, gn, packed, geo, backward: true);
                    new Span<float>(dKeysT, D * M).Clear();
                    int imageChunk = EvenChunk(start[n + 1] - start[n], chunk);
                    for (int c0 = start[n]; c0 < start[n + 1]; c0 += imageChunk)
                    {
                        int rc = Math.Min(imageChunk, start[n + 1] - c0), rows = rc * Q, ld = Pitch(rows);
                        Gather(p, order + c0, rc, C, Q, gathered, ld);
                        Gather(gy, order + c0, rc, C, Q, dOutT, ld);
                        float* qT = saved == null ? queriesT : saved;
                        if (saved == null) GemmCpu.Multiply(false, false, D, rows, C, 1f, wq, C, gathered, ld, 0f, qT, ld);
                        for (int h0 = 0; h0 < H; h0 += group)
                        {
                            int hn = Math.Min(group, H - h0);
                            for (int i = 0; i < hn; i++)
                            {
                                int h = h0 + i;
                                float* qhT = qT + (long)h * dk * ld, khT = keysT + (long)h * dk * M;
                                float* vhT = gn + (long)h * cv * M;            // V_hᵀ (cv × M)
                                float* dOhT = dOutT + (long)h * cv * ld;        // dO_hᵀ (cv × rows)
                                float* aT = saved == null ? attnT + (long)i * M * ld : saved + (D + (long)h * M) * ld;
                                heads[i] = new HeadBlocks(qhT, khT, vhT, aT, dOhT, dScoresT + (long)i * M * ld, dQueriesT + (long)h * dk * ld,
                                    rows, ld, M, dk, cv, scale, packed == null ? null : packed + h * perHead);
                            }
                            HeadBlocks.RunBackward(heads, hn, recompute: saved == null, ggn + (long)h0 * cv * M, dKeysT + (long)h0 * dk * M, dReduce);
                        }
                        // dw_q += dQᵀ·P (D × C)
                        GemmCpu.Multiply(false, true, D, C, rows, 1f, dQueriesT, ld, gathered, ld, 1f, gwq, C);
                        // dPᵀ = w_qᵀ·dQᵀ (C × rows), into Pᵀ's buffer; dp[k] = dY[k] + its columns
                        GemmCpu.Multiply(true, false, C, rows, D, 1f, wq, C, dQueriesT, ld, 0f, gathered, ld);
                        ScatterAdd(gy, gathered, order + c0, rc, C, Q, gp, ld);
                        if (saved != null) saved += (D + (long)H * M) * ld;
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
    /// dst (C × rc·Q, row pitch ld) gets RoI roi[r]'s stored (C, Q) block of src in columns r·Q .. (r+1)·Q − 1.
    /// </summary>
    private static void Gather(float* src, int* roi, int rc, int c, int q, float* dst, int ld)
    {
        long cq = (long)c * q;
        Parallelism.For(rc, cq, (ps: (nint)src, pr: (nint)roi, pd: (nint)dst, c, q, cq, ld), static (st, r0, r1) =>
        {
            var (ps, pr, pd, c, q, cq, ld) = st;
            for (int r = r0; r < r1; r++)
            {
                float* s = (float*)ps + ((int*)pr)[r] * cq;
                float* d = (float*)pd + (long)r * q;
                for (int ch = 0; ch < c; ch++)
                    Buffer.MemoryCopy(s + (long)ch * q, d + (long)ch * ld, q * sizeof(float), q * sizeof(float));
            }
        });
    }

    /// <summary>dst[roi[r]] (C, Q) = src[roi[r]] + columns r·Q .. (r+1)·Q − 1 of addT (C × rc·Q, row pitch ld).</summary>
    private static void ScatterAdd(float* src, float* addT, int* roi, int rc, int c, int q, float* dst, int ld)
    {
        long cq = (long)c * q;
        Parallelism.For(rc, cq, (ps: (nint)src, pa: (nint)addT, pr: (nint)roi, pd: (nint)dst, c, q, cq, ld), static (st, r0, r1) =>
        {
            var (ps, pa, pr, pd, c, q, cq, ld) = st;
            for (int r = r0; r < r1; r++)
            {
                long off = ((int*)pr)[r] * cq;
                float* s = (float*)ps + off, d = (float*)pd + off;
                float* a = (float*)pa + (long)r * q;
                for (int ch = 0; ch < c; ch++)
                    Add(s + (long)ch * q, a + (long)ch * ld, d + (long)ch * q, q);
            }
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Add(float* x, float* y, float* dst, int n)
    {
        int j = 0;
        for (; j <= n - Vector256<float>.Count; j += Vector256<float>.Count)
            Vector256.Store(Vector256.Load(x + j) + Vector256.Load(y + j), dst + j);
        for (; j < n; j++) dst[j] = x[j] + y[j];
    }

    /// <summary>
    /// The per-head products of one chunk, cut into blocks of up to <see cref="Block"/> query
    /// columns that the workers claim (each block's products run on one thread, see
    /// <see cref="GemmCpu.MultiplySerial"/>). Shapes: qhT (dk × rows), khT (dk × M), vhT (cv × M),
    /// aT (M × rows); forward: o = Oᵀ_h (cv × rows); backward: o = dO_hᵀ (cv × rows), dS (M × rows)
    /// and dQ = dQ_hᵀ (dk × rows); the (· × rows) matrices with row pitch ld. Every block writes
    /// only its own columns. With <paramref name="packed"/> (the head's region of
    /// <see cref="PackHeads"/>) the block products take K_h, V_h from it and read their other
    /// operand in place (<see cref="GemmCpu.MultiplyPackedA"/>): the same arithmetic without
    /// packing either operand per block.
    /// </summary>
    private readonly struct HeadBlocks(float* qhT, float* khT, float* vhT, float* aT, float* o, float* dS, float* dQ,
        int rows, int ld, int m, int dk, int cv, float scale, float* packed)
    {
        private readonly nint _q = (nint)qhT, _k = (nint)khT, _v = (nint)vhT, _a = (nint)aT, _o = (nint)o, _dS = (nint)dS, _dQ = (nint)dQ;

        // Pre-packed operands (or 0), see PackedOffsets: K_h; V_hᵀ (forward) or V_h (backward); K_hᵀ (backward).
        private readonly nint _pK = (nint)packed;
        private readonly nint _pV = packed == null ? 0 : (nint)(packed + PackedOffsets(m, dk, cv).V);
        private readonly nint _pKt = packed == null ? 0 : (nint)(packed + PackedOffsets(m, dk, cv).Kt);

        /// <summary>
        /// Blocks: at least rows / <see cref="Block"/>, rounded up to a multiple of the thread
        /// count so every worker gets as many; each one (but the last) a whole number of 16-column
        /// panels wide. (Every column's values are the same whichever block computes it.)
        /// </summary>
        private readonly int _blocks = Math.Min((rows + 15) / 16,
            ((rows + Block - 1) / Block + Parallelism.Threads - 1) / Parallelism.Threads * Parallelism.Threads);

        private int Width => ((rows + _blocks - 1) / _blocks + 15) / 16 * 16;

        /// <summary>Floating-point operations of one block's products (the item cost for <see cref="Parallelism.For"/>).</summary>
        private long BlockCost => 2L * Width * m * (dk + cv);

        /// <summary>Floating-point operations of one of the two reductions (dV_hᵀ or dK_hᵀ) over the whole chunk.</summary>
        private long ReduceCost => 2L * rows * m * Math.Max(cv, dk);

        /// <summary>Floats of dV_hᵀ (cv × M) and of dK_hᵀ (dk × M), and of this head's reduction scratch.</summary>
        private (long DV, long DK, long Scratch) Sizes => ((long)cv * m, (long)dk * m, (long)m * (cv + dk));

        /// <summary>Register-tile row panels of the M positions (the most parts a reduction can be cut into).</summary>
        private int PositionPanels => (m + GemmCpu.MR - 1) / GemmCpu.MR;

        /// <summary>
        /// Aᵀ and Oᵀ_h of every block of <paramref name="count"/> heads (same chunk, their own
        /// score buffers), all blocks of all of them as one set of work items: one barrier per
        /// group of heads, and a worker that falls behind is evened out over many items.
        /// </summary>
        public static void RunForward(HeadBlocks* heads, int count)
        {
            int blocks = heads[0]._blocks;
            Parallelism.For(count * blocks, heads[0].BlockCost, (p: (nint)heads, blocks), static (st, i0, i1) =>
            {
                for (int i = i0; i < i1; i++) ((HeadBlocks*)st.p)[i / st.blocks].Forward(i % st.blocks);
            }, count * blocks);
        }

        /// <summary>
        /// For <paramref name="count"/> heads (same chunk; head i's dS in its own buffer): dS and
        /// dQ_hᵀ of every block (recomputing Aᵀ first when <paramref name="recompute"/>), then
        /// dV_hᵀ (cv × M) += dO_hᵀ·A into dV + i·cv·M and dK_hᵀ (dk × M) += Q_hᵀ·dS/√dk into
        /// dK + i·dk·M, in parts of the M context positions that run on one thread each (see
        /// <see cref="Reduce"/>; <paramref name="scratch"/> holds M·(cv + dk) floats per head).
        /// Each phase is one set of work items over all the heads.
        /// </summary>
        public static void RunBackward(HeadBlocks* heads, int count, bool recompute, float* dV, float* dK, float* scratch)
        {
            ref readonly var h0 = ref heads[0];
            int blocks = h0._blocks;
            Parallelism.For(count * blocks, (recompute ? 2 : 1) * h0.BlockCost, (p: (nint)heads, blocks, recompute), static (st, i0, i1) =>
            {
                for (int i = i0; i < i1; i++) ((HeadBlocks*)st.p)[i / st.blocks].Backward(i % st.blocks, st.recompute);
            }, count * blocks);
            // Enough parts of the M positions (whole register-tile rows) that every thread gets one.
            int parts = Math.Clamp((Parallelism.Threads + 2 * count - 1) / (2 * count), 1, h0.PositionPanels);
            int items = 2 * parts;
            var sizes = h0.Sizes;
            Parallelism.For(count * items, h0.ReduceCost / parts,
                (p: (nint)heads, dV: (nint)dV, dK: (nint)dK, t: (nint)scratch, sizes, parts, items),
                static (st, i0, i1) =>
                {
                    for (int i = i0; i < i1; i++)
                    {
                        int h = i / st.items, r = i % st.items;
                        ((HeadBlocks*)st.p)[h].Reduce(r % 2 == 0, r / 2, st.parts, (float*)st.dV + h * st.sizes.DV,
                            (float*)st.dK + h * st.sizes.DK, (float*)st.t + h * st.sizes.Scratch);
                    }
                }, count * items);
        }

        /// <summary>Columns [b·Width, b·Width + width) of every operand of block b (width 0 for a block past the end).</summary>
        private (int J0, int Width) Columns(int b) => (b * Width, Math.Clamp(rows - b * Width, 0, Width));

        /// <summary>Aᵀ[:, block] = column softmax of scale · K_h·Q_hᵀ[:, block] (M × width, row pitch ld).</summary>
        private void Attention(int j0, int width)
        {
            float* a = (float*)_a;
            if (_pK != 0) GemmCpu.MultiplyPackedA((float*)_pK, m, width, dk, scale, (float*)_q + j0, ld, 0f, a + j0, ld);
            else GemmCpu.MultiplySerial(true, false, m, width, dk, scale, (float*)_k, m, (float*)_q + j0, ld, 0f, a + j0, ld);
            for (int j = j0; j < j0 + width; j += Strip) SoftmaxColumns(a, m, ld, j, Math.Min(j0 + width, j + Strip));
        }

        private void Forward(int b)
        {
            var (j0, width) = Columns(b);
            if (width == 0) return;
            Attention(j0, width);
            // Oᵀ_h[:, block] = V_hᵀ·Aᵀ[:, block] (cv × width)
            if (_pV != 0) GemmCpu.MultiplyPackedA((float*)_pV, cv, width, m, 1f, (float*)_a + j0, ld, 0f, (float*)_o + j0, ld);
            else GemmCpu.MultiplySerial(false, false, cv, width, m, 1f, (float*)_v, m, (float*)_a + j0, ld, 0f, (float*)_o + j0, ld);
        }

        private void Backward(int b, bool recompute)
        {
            var (j0, width) = Columns(b);
            if (width == 0) return;
            if (recompute) Attention(j0, width);
            float* a = (float*)_a, ds = (float*)_dS;
            // dAᵀ[:, block] = V_h·dO_hᵀ[:, block] (M × width), then dS in place
            if (_pV != 0) GemmCpu.MultiplyPackedA((float*)_pV, m, width, cv, 1f, (float*)_o + j0, ld, 0f, ds + j0, ld);
            else GemmCpu.MultiplySerial(true, false, m, width, cv, 1f, (float*)_v, m, (float*)_o + j0, ld, 0f, ds + j0, ld);
            for (int j = j0; j < j0 + width; j += Strip) SoftmaxBackwardStrip(a, ds, m, ld, j, Math.Min(j0 + width, j + Strip));
            // dQ_hᵀ[:, block] = K_hᵀ·dSᵀ[:, block]/√dk (dk × width)
            if (_pKt != 0) GemmCpu.MultiplyPackedA((float*)_pKt, dk, width, m, scale, ds + j0, ld, 0f, (float*)_dQ + j0, ld);
            else GemmCpu.MultiplySerial(false, false, dk, width, m, scale, (float*)_k, m, ds + j0, ld, 0f, (float*)_dQ + j0, ld);
        }

        /// <summary>
        /// Part <paramref name="part"/> of <paramref name="parts"/> (whole 6-row panels of the M
        /// positions [i0, i1)) of dV_hᵀ += dO_hᵀ·A (<paramref name="values"/>) or dK_hᵀ += Q_hᵀ·dS/√dk.
        /// Computed transposed, dV_h[i0..i1] = Aᵀ[i0..i1]·dO_h (likewise dK_h = dSᵀ·Q_h/√dk) into
        /// <paramref name="scratch"/>, then added into the transposed gradient: the long product
        /// then packs the M-row operand as A panels, used by all its 16-column panels, where the
        /// other orientation packs it transposed as B and uses it for only cv/6 row panels
        /// (measured single-threaded for M = 196, cv = 64, 3136 rows: 72–81 GFLOP/s against 55–71).
        /// </summary>
        private void Reduce(bool values, int part, int parts, float* dV, float* dK, float* scratch)
        {
            int panels = PositionPanels;
            int i0 = panels * part / parts * GemmCpu.MR, i1 = Math.Min(m, panels * (part + 1) / parts * GemmCpu.MR);
            if (i0 >= i1) return;
            if (values)
            {
                float* t = scratch + (long)i0 * cv;
                GemmCpu.MultiplySerial(false, true, i1 - i0, cv, rows, 1f, (float*)_a + (long)i0 * ld, ld, (float*)_o, ld, 0f, t, cv);
                AddTransposed(t, i1 - i0, cv, dV + i0, m);
            }
            else
            {
                float* t = scratch + (long)m * cv + (long)i0 * dk;
                GemmCpu.MultiplySerial(false, true, i1 - i0, dk, rows, scale, (float*)_dS + (long)i0 * ld, ld, (float*)_q, ld, 0f, t, dk);
                AddTransposed(t, i1 - i0, dk, dK + i0, m);
            }
        }

        /// <summary>dst[r·ldd + i] += src[i·w + r] for i &lt; n, r &lt; w.</summary>
        private static void AddTransposed(float* src, int n, int w, float* dst, int ldd)
        {
            for (int r = 0; r < w; r++)
            {
                float* d = dst + (long)r * ldd;
                for (int i = 0; i < n; i++) d[i] += src[(long)i * w + r];
            }
        }
    }

    /// <summary>
    /// In place on columns j0 .. j1 − 1 (at most <see cref="Strip"/>) of x (m × ld):
    /// x = exp(x − max x) / Σ exp(x − max x) down each column. Full vectors use <see cref="Exp"/>;
    /// leftover columns use MathF.Exp.
    /// </summary>
    private static void SoftmaxColumns(float* x, int m, int ld, int j0, int j1)
    {
        const int W = 8;   // Vector256<float>.Count
        // the strip's full vectors go through each pass together, row by row, so every row's
        // cache lines (and page) are touched once per pass
        int nv = (j1 - j0) / W;
        var mx = stackalloc Vector256<float>[Strip / W];
        var sm = stackalloc Vector256<float>[Strip / W];
        float* x0 = x + j0;
        for (int v = 0; v < nv; v++) mx[v] = Vector256.Load(x0 + v * W);
        for (int i = 1; i < m; i++)
        {
            float* r = x0 + (long)i * ld;
            for (int v = 0; v < nv; v++) mx[v] = Max(mx[v], Vector256.Load(r + v * W));
        }
        for (int v = 0; v < nv; v++) sm[v] = Vector256<float>.Zero;
        for (int i = 0; i < m; i++)
        {
            float* r = x0 + (long)i * ld;
            for (int v = 0; v < nv; v++)
            {
                var e = Exp(Vector256.Load(r + v * W) - mx[v]);
                Vector256.Store(e, r + v * W);
                sm[v] += e;
            }
        }
        for (int v = 0; v < nv; v++) sm[v] = Vector256<float>.One / sm[v];
        for (int i = 0; i < m; i++)
        {
            float* r = x0 + (long)i * ld;
            for (int v = 0; v < nv; v++) Vector256.Store(Vector256.Load(r + v * W) * sm[v], r + v * W);
        }
        int j = j0 + nv * W;
        for (; j < j1; j++)
        {
            float* col = x + j;
            float max = col[0];
            for (int i = 1; i < m; i++)
            {
                float v = col[(long)i * ld];
                if (v > max || float.IsNaN(v)) max = v;
            }
            float sum = 0f;
            for (int i = 0; i < m; i++)
            {
                float e = MathF.Exp(col[(long)i * ld] - max);
                col[(long)i * ld] = e;
                sum += e;
            }
            float inv = 1f / sum;
            for (int i = 0; i < m; i++) col[(long)i * ld] *= inv;
        }
    }

    /// <summary>
    /// Largest of a and b lane by lane; with a NaN either may come back (maxps where AVX exists).
    /// The softmax does not depend on which: a NaN in a column reaches every exponential of it
    /// through the sum, as with the NaN-propagating maximum of the scalar path.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Max(Vector256<float> a, Vector256<float> b) =>
        Avx.IsSupported ? Avx.Max(a, b) : Vector256.Max(a, b);

    /// <summary>
    /// e^x for x ≤ 0 or NaN (Cephes expf: x = n·ln 2 + r, |r| ≤ ln2/2, degree-7 polynomial, 2^n via
    /// the exponent bits; about 1 ulp). x below −87.3 is clamped there (e^x ≈ 1.2e−38 instead of a
    /// denormal or 0, far below the sum of a softmax column, which is at least 1); NaN stays NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Exp(Vector256<float> x)
    {
        var lo = Vector256.Create(-87.3f);
        if (Fma.IsSupported)
        {
            // maxps returns its second operand when either is NaN, so NaN is kept
            x = Avx.Max(lo, x);
            // n = x·log2(e) rounded to nearest (the default rounding mode of cvtps2dq)
            var ni = Avx.ConvertToVector256Int32(x * Vector256.Create(1.44269504088896341f));
            var fn = Avx.ConvertToVector256Single(ni);
            var rr = Fma.MultiplyAddNegated(fn, Vector256.Create(0.693359375f), x);
            rr = Fma.MultiplyAdd(fn, Vector256.Create(2.12194440e-4f), rr);
            var p = Fma.MultiplyAdd(Vector256.Create(1.9875691500e-4f), rr, Vector256.Create(1.3981999507e-3f));
            p = Fma.MultiplyAdd(p, rr, Vector256.Create(8.3334519073e-3f));
            p = Fma.MultiplyAdd(p, rr, Vector256.Create(4.1665795894e-2f));
            p = Fma.MultiplyAdd(p, rr, Vector256.Create(1.6666665459e-1f));
            p = Fma.MultiplyAdd(p, rr, Vector256.Create(5.0000001201e-1f));
            var ev = Fma.MultiplyAdd(p, rr * rr, rr + Vector256<float>.One);
            // 2^n: n + 127 in the exponent field (n ≥ −126 after the clamp)
            var scale2 = Avx2.ShiftLeftLogical(Avx2.Add(ni, Vector256.Create(127)), 23);
            return ev * scale2.AsSingle();
        }
        // the comparison is false for NaN, so NaN is kept
        x = Vector256.ConditionalSelect(Vector256.LessThan(x, lo), lo, x);
        var fx = Vector256.Round(x * Vector256.Create(1.44269504088896341f));
        var r = x - fx * Vector256.Create(0.693359375f) + fx * Vector256.Create(2.12194440e-4f);
        var poly = Vector256.Create(1.9875691500e-4f);
        poly = poly * r + Vector256.Create(1.3981999507e-3f);
        poly = poly * r + Vector256.Create(8.3334519073e-3f);
        poly = poly * r + Vector256.Create(4.1665795894e-2f);
        poly = poly * r + Vector256.Create(1.6666665459e-1f);
        poly = poly * r + Vector256.Create(5.0000001201e-1f);
        var e = poly * (r * r) + r + Vector256<float>.One;
        var pow2 = (Vector256.ConvertToInt32(fx) + Vector256.Create(127)) << 23;
        return e * pow2.AsSingle();
    }

    /// <summary>
    /// In place on columns j0 .. j1 − 1 (at most <see cref="Strip"/>) of d (m × ld), dAᵀ given in
    /// it: d = a ⊙ (d − colsum(d ⊙ a)), a (m × ld) the column softmax.
    /// </summary>
    private static void SoftmaxBackwardStrip(float* a, float* d, int m, int ld, int j0, int j1)
    {
        const int W = 8;
        int nv = (j1 - j0) / W;
        var sm = stackalloc Vector256<float>[Strip / W];
        for (int v = 0; v < nv; v++) sm[v] = Vector256<float>.Zero;
        for (int i = 0; i < m; i++)
        {
            long o = (long)i * ld + j0;
            for (int v = 0; v < nv; v++) sm[v] += Vector256.Load(a + o + v * W) * Vector256.Load(d + o + v * W);
        }
        for (int i = 0; i < m; i++)
        {
            long o = (long)i * ld + j0;
            for (int v = 0; v < nv; v++)
                Vector256.Store(Vector256.Load(a + o + v * W) * (Vector256.Load(d + o + v * W) - sm[v]), d + o + v * W);
        }
        int j = j0 + nv * W;
        for (; j < j1; j++)
        {
            float s = 0f;
            for (int i = 0; i < m; i++) s += a[(long)i * ld + j] * d[(long)i * ld + j];
            for (int i = 0; i < m; i++) d[(long)i * ld + j] = a[(long)i * ld + j] * (d[(long)i * ld + j] - s);
        }
    }
}
