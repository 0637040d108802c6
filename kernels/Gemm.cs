// GEMM: C[b] = alpha·op(A[b])·op(B[b]) + beta·C[b] for b < batch, row-major float32 matrices with
// leading dimensions lda, ldb, ldc and batch strides (elements), op(X) = X or Xᵀ; op(A) is M×K,
// op(B) is K×N, C is M×N. With beta = 0, C is not read (NaN in it is ignored), as BLAS does;
// with K = 0, C = beta·C (0 with beta = 0).
//
// Parallelisation (tiled SGEMM): one thread-group of 256 threads per 64×64 tile of one C[b]; the
// 1-D grid is flattened as group = (b·tilesM + tileRow)·tilesN + tileCol. The group walks K in
// steps of 16: it stages the 64×16 slab of op(A) and the 16×64 slab of op(B) in shared memory
// (zero outside the matrices, so any M, N, K works), then each thread accumulates a 4×4 block of
// C in registers: rows ty + 16·i and columns tx + 16·j (tx = thread % 16, ty = thread / 16), so a
// warp's shared reads are broadcasts (A) or 16 consecutive words (B) and its C stores are runs of
// 16 consecutive floats. Slab loads follow the memory layout of each operand: a row-major A
// (TransA = 0) is read along k (16 threads per 64-byte row segment), a transposed A along m (64
// threads per row), likewise B, so global loads stay coalesced for every transpose. The slabs
// are stored k-major (slab[k·Pitch + m]) with Pitch = 65, so the strided stores of the along-k
// loads hit 16 different banks. Each output sums its products in order of k, multiply then add.
using ILGPU;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

/// <summary>Sizes, layouts and scalars of one (batched) GEMM (blittable: TransA/TransB are 0 or 1).</summary>
internal readonly record struct GemmShape(
    int M, int N, int K, int TransA, int TransB, float Alpha, float Beta,
    int Lda, int Ldb, int Ldc, long StrideA, long StrideB, long StrideC);

internal static class GemmKernels
{
    /// <summary>Rows of C per thread-group.</summary>
    public const int TileM = 64;

    /// <summary>Columns of C per thread-group.</summary>
    public const int TileN = 64;

    /// <summary>Depth of the shared-memory slabs.</summary>
    public const int TileK = 16;

    /// <summary>Threads per group (16×16, each computing 4×4 outputs).</summary>
    public const int Threads = 256;

    /// <summary>Row pitch of the shared slabs (one word of padding against bank conflicts).</summary>
    private const int Pitch = TileM + 1;

    /// <summary>One 64×64 tile of one C[b] per group (see the file's top comment); launch with <see cref="Threads"/> threads per group.</summary>
    [Kernel]
    public static void Tiled(GemmShape s, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c)
    {
        var sa = SharedMemory.Allocate<float>(TileK * Pitch);
        var sb = SharedMemory.Allocate<float>(TileK * Pitch);
        int tid = Group.IdxX;
        int tilesN = (s.N + TileN - 1) / TileN, tilesM = (s.M + TileM - 1) / TileM;
        int g = Grid.IdxX;
        int n0 = g % tilesN * TileN;
        int rest = g / tilesN;
        int m0 = rest % tilesM * TileM;
        long batch = rest / tilesM;
        long aBase = batch * s.StrideA, bBase = batch * s.StrideB, cBase = batch * s.StrideC;
        int tx = tid % 16, ty = tid / 16;

        float c00 = 0f, c01 = 0f, c02 = 0f, c03 = 0f;
        float c10 = 0f, c11 = 0f, c12 = 0f, c13 = 0f;
        float c20 = 0f, c21 = 0f, c22 = 0f, c23 = 0f;
        float c30 = 0f, c31 = 0f, c32 = 0f, c33 = 0f;

        for (int k0 = 0; k0 < s.K; k0 += TileK)
        {
            // op(A) is read along k where A is row-major (TransA = 0), along m where it is stored K×M;
            // op(B) along n where B is stored K×N (TransB = 0), along k where it is stored N×K.
            StageSlab(a, aBase, s.Lda, s.TransA == 0, m0, s.M, k0, s.K, sa, tid);
            StageSlab(b, bBase, s.Ldb, s.TransB != 0, n0, s.N, k0, s.K, sb, tid);
            Group.Barrier();
            for (int k = 0; k < TileK; k++)
            {
                int ra = k * Pitch + ty, rb = k * Pitch + tx;
                float a0 = sa[ra], a1 = sa[ra + 16], a2 = sa[ra + 32], a3 = sa[ra + 48];
                float b0 = sb[rb], b1 = sb[rb + 16], b2 = sb[rb + 32], b3 = sb[rb + 48];
                c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
            }
            Group.Barrier();
        }

        int row = m0 + ty, col = n0 + tx;
        Store(s, c, cBase, row, col, c00, c01, c02, c03);
        Store(s, c, cBase, row + 16, col, c10, c11, c12, c13);
        Store(s, c, cBase, row + 32, col, c20, c21, c22, c23);
        Store(s, c, cBase, row + 48, col, c30, c31, c32, c33);
    }

    /// <summary>
    /// Stages the 64 (outer) × 16 (k) slab of one operand starting at (outer0, k0) into shared
    /// memory as slab[k·Pitch + outer], zero outside the matrix. With <paramref name="kContiguous"/>
    /// the operand is stored outer-major (element (o, k) at o·ld + k): thread tid reads k = tid % 16 of
    /// rows tid / 16 + 16·r (16 threads per 64-byte run); otherwise it is stored k-major (element
    /// (o, k) at k·ld + o): thread tid reads o = tid % 64 of rows k0 + tid / 64 + 4·r.
    /// </summary>
    private static void StageSlab(ArrayView<float> src, long srcBase, int ld, bool kContiguous, int outer0, int outerLimit,
        int k0, int kLimit, ArrayView<float> slab, int tid)
    {
        for (int r = 0; r < 4; r++)
        {
            int kk = kContiguous ? tid % TileK : tid / TileM + 4 * r;
            int oo = kContiguous ? tid / TileK + 16 * r : tid % TileM;
            int gk = k0 + kk, go = outer0 + oo;
            long at = kContiguous ? srcBase + (long)go * ld + gk : srcBase + (long)gk * ld + go;
            slab[kk * Pitch + oo] = go < outerLimit && gk < kLimit ? src[at] : 0f;
        }
    }

    /// <summary>Stores the sums of columns col + 16·j of one row of C (those inside C), scaled by alpha and blended with beta·C.</summary>
    private static void Store(GemmShape s, ArrayView<float> c, long cBase, int row, int col, float v0, float v1, float v2, float v3)
    {
        if (row >= s.M) return;
        long rowBase = cBase + (long)row * s.Ldc;
        StoreOne(s, c, rowBase, col, v0);
        StoreOne(s, c, rowBase, col + 16, v1);
        StoreOne(s, c, rowBase, col + 32, v2);
        StoreOne(s, c, rowBase, col + 48, v3);
    }

    private static void StoreOne(GemmShape s, ArrayView<float> c, long rowBase, int col, float sum)
    {
        if (col >= s.N) return;
        long i = rowBase + col;
        // beta = 0: C is write-only (BLAS semantics: NaN or garbage in C is ignored).
        if (s.Beta == 0f)
            c[i] = s.Alpha * sum;
        else
            c[i] = s.Alpha * sum + s.Beta * c[i];
    }
}
