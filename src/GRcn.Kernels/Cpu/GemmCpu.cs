// C (m×n) = alpha·op(A)·op(B) + beta·C on row-major float32 matrices with leading dimensions
// lda, ldb, ldc; op(X) = X or Xᵀ. Cache-blocked (Goto/BLIS style) with packed panels and an
// AVX2/FMA 6×16 register-tile micro-kernel; C is cut into contiguous strips of columns (or rows),
// one per worker thread or more for wide products, and each worker packs and multiplies its
// strips on its own.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GRcn.Kernels.Cpu;

/// <summary>Single-precision general matrix multiply for the CPU kernels.</summary>
/// <remarks>
/// <para>
/// Computes <c>C = alpha·op(A)·op(B) + beta·C</c> where op(A) is m×k, op(B) is k×n and C is m×n,
/// all row-major with leading dimensions <c>lda</c>, <c>ldb</c>, <c>ldc</c> (the row pitch of the
/// matrix as stored, i.e. of Aᵀ when A is transposed). With beta = 0 the prior contents of C are
/// never read (NaN in C does not leak); NaN and infinity in A or B propagate (no multiplier is
/// skipped). k = 0 gives C = beta·C.
/// </para>
/// <para>
/// Blocking (BLIS order): for every block of at most <see cref="NC"/> columns and every slice of
/// <see cref="KC"/> along k, the worker packs that block of op(B) into column panels of
/// <see cref="NR"/> (zero-padded at the edge); then for every block of at most <see cref="MC"/>
/// rows it packs op(A) into row panels of <see cref="MR"/> and runs the MR×NR micro-kernel over
/// every panel pair, B panel outermost so one B panel (KC×NR, 16 KiB) stays in L1 while the A
/// block (MC×KC) streams from L2. The micro-kernel keeps 12 AVX accumulators in registers,
/// updated with FMA from one broadcast of A and two loads of B per step of k, and fetches the C
/// tile's cache lines before its loop so the final stores find them in L1. Edge tiles go
/// through a small stack buffer so only the valid part of C is touched. Without AVX2/FMA the
/// same blocking runs a scalar micro-kernel.
/// </para>
/// <para>
/// Parallelism: C is split into contiguous strips of whole NR column panels when m ≤ n (every
/// worker then packs all of A, the smaller operand, once per strip and B only for its own
/// columns): <see cref="Parallelism.Threads"/> strips, or more when that keeps each within
/// <see cref="NC"/> columns (as many packings of A as one strip's NC blocks would need); else
/// <see cref="Parallelism.Threads"/> strips of whole MR row panels. Each worker packs into
/// its own buffers, allocated once per thread and reused across calls. op(B) can also come from
/// a caller's packing routine (<see cref="IPackB"/>), e.g. a convolution gathering its input
/// straight into B panels without an im2col buffer. <see cref="MultiplySerial"/> runs the whole
/// product on the calling thread, for kernels that parallelise over many small products.
/// </para>
/// </remarks>
internal static unsafe class GemmCpu
{
    /// <summary>Rows of the register tile.</summary>
    public const int MR = 6;
    /// <summary>Columns of the register tile (two AVX vectors).</summary>
    public const int NR = 16;
    /// <summary>Depth of one packed slice along k.</summary>
    public const int KC = 256;
    /// <summary>Largest number of rows of one packed A block (a multiple of <see cref="MR"/>).</summary>
    public const int MC = 144;
    /// <summary>Largest number of columns of one packed B block (a multiple of <see cref="NR"/>).</summary>
    public const int NC = 1024;

    private const int Align = 8; // floats: 32 bytes

    /// <summary>Test hook: multiplies started on this thread run the scalar micro-kernel even where AVX2/FMA exist.</summary>
    [ThreadStatic] internal static bool ForceScalar;

    [ThreadStatic] private static float[]? t_packA;
    [ThreadStatic] private static float[]? t_packB;

    private static bool UseSimd => Avx2.IsSupported && Fma.IsSupported && !ForceScalar;

    /// <summary>Packs op(B)[p0 .. p0+kc, j0 .. j0+nc] into column panels (see <see cref="MatrixB.Pack"/> for the layout).</summary>
    internal interface IPackB
    {
        void Pack(int p0, int j0, int kc, int nc, float* dst);
    }

    public static void Multiply(bool transposeA, bool transposeB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc) =>
        Multiply(serial: false, transposeA, transposeB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

    /// <summary>
    /// As <see cref="Multiply(bool, bool, int, int, int, float, float*, int, float*, int, float, float*, int)"/>
    /// on the calling thread only, for kernels that run many small products inside their own
    /// <see cref="Parallelism.For"/> items.
    /// </summary>
    public static void MultiplySerial(bool transposeA, bool transposeB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc) =>
        Multiply(serial: true, transposeA, transposeB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

    /// <summary>Floats <see cref="PackA(bool, float*, int, int, int, float*)"/> writes for an m×k op(A).</summary>
    public static int PackedASize(int m, int k) => CeilDiv(m, MR) * MR * k;

    /// <summary>
    /// Packs all of op(A) (m×k, k ≤ <see cref="KC"/>) into <see cref="PackedASize"/> floats at
    /// <paramref name="dst"/>, as panels of <see cref="MR"/> rows (rows past m zero), for
    /// <see cref="MultiplyPackedA"/>: an operand used by many products is packed once.
    /// </summary>
    public static void PackA(bool transposeA, float* a, int lda, int m, int k, float* dst)
    {
        CheckPackedDepth(k);
        PackA(transposeA, a, lda, 0, 0, m, k, dst);
    }

    private static void CheckPackedDepth(int k)
    {
        if (k > KC) throw new ArgumentOutOfRangeException(nameof(k), k, $"a pre-packed A holds at most KC = {KC} columns");
    }

    /// <summary>
    /// C (m×n) = alpha·A·B + beta·C on the calling thread, with A pre-packed by
    /// <see cref="PackA(bool, float*, int, int, int, float*)"/> (k ≤ <see cref="KC"/>) and B (k×n,
    /// row pitch ldb, not transposed) read in place: every whole 16-column panel of B goes to the
    /// micro-kernel straight from b (k lines of 64 bytes, which stay in L1 while every A panel
    /// runs over them), only a narrower last panel is copied. Same arithmetic, in the same order,
    /// as <see cref="MultiplySerial"/>, without its packing; meant for the many small products of
    /// a kernel whose one operand is shared (B's row pitch should not be a multiple of 1 KiB, or
    /// its lines pile up in a few L1 sets).
    /// </summary>
    public static void MultiplyPackedA(float* packedA, int m, int n, int k, float alpha, float* b, int ldb, float beta, float* c, int ldc)
    {
        if (m <= 0 || n <= 0) return;
        if (k <= 0)
        {
            ScaleOnly(m, n, beta, c, ldc);
            return;
        }
        CheckPackedDepth(k);
        bool simd = UseSimd, overwrite = beta == 0f;
        var source = new MatrixB(false, b, ldb);
        float* edge = null;
        for (int jr = 0; jr < n; jr += NR)
        {
            int nr = Math.Min(NR, n - jr);
            float* panel = b + jr;
            int pitch = ldb;
            if (nr < NR || !simd)
            {
                edge = edge == null ? Buffer(ref t_packB, NR * KC) : edge;
                source.Pack(0, jr, k, nr, edge);
                panel = edge;
                pitch = NR;
            }
            Panel(k, packedA, panel, pitch, c + jr, ldc, m, nr, alpha, beta, overwrite, null, simd);
        }
    }

    private static void Multiply(bool serial, bool transposeA, bool transposeB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        if (m <= 0 || n <= 0) return;
        if (k <= 0)
        {
            ScaleOnly(m, n, beta, c, ldc);
            return;
        }
        var source = new MatrixB(transposeB, b, ldb);
        if (serial) new Job<MatrixB>(transposeA, m, n, k, alpha, a, lda, source, beta, c, ldc, null, 1, true, UseSimd).Part(0);
        else Multiply(transposeA, m, n, k, alpha, a, lda, source, beta, c, ldc, null);
    }

    /// <summary>
    /// As the public overload with op(B) supplied by <paramref name="source"/>, plus
    /// <paramref name="rowBias"/>[i] added to row i of C when it is not null (requires beta = 0:
    /// C = alpha·op(A)·op(B) + rowBias, each element rounded as fma(acc, alpha, rowBias[i]) of the
    /// first k slice); requires m, n, k &gt; 0.
    /// </summary>
    internal static void Multiply<TB>(bool transposeA, int m, int n, int k, float alpha,
        float* a, int lda, TB source, float beta, float* c, int ldc, float* rowBias) where TB : struct, IPackB
    {
        int threads = Parallelism.Threads;
        int mPanels = CeilDiv(m, MR), nPanels = CeilDiv(n, NR);
        // Split the operand whose redundant packing is cheaper: strips of columns repack all of A.
        bool splitColumns = m <= n ? nPanels >= threads || nPanels >= mPanels : mPanels < threads && nPanels > mPanels;
        // Column strips of at most NC columns (one packed B block) cost no extra packing of A, so
        // wide products get that many, claimed dynamically, for balance when one worker falls behind.
        int parts = splitColumns ? Math.Min(nPanels, Math.Max(threads, CeilDiv(nPanels, NC / NR))) : Math.Min(threads, mPanels);
        var job = new Job<TB>(transposeA, m, n, k, alpha, a, lda, source, beta, c, ldc, rowBias, parts, splitColumns, UseSimd);
        if (parts <= 1)
        {
            job.Part(0);
            return;
        }
        Parallelism.For(parts, (long)m * n * k / parts, job, static (j, start, end) =>
        {
            for (int p = start; p < end; p++) j.Part(p);
        });
    }

    /// <summary>C = beta·C (beta = 0 clears without reading).</summary>
    private static void ScaleOnly(int m, int n, float beta, float* c, int ldc)
    {
        for (int i = 0; i < m; i++)
        {
            var row = new Span<float>(c + (long)i * ldc, n);
            if (beta == 0f) row.Clear();
            else if (beta != 1f)
            {
                for (int j = 0; j < row.Length; j++) row[j] *= beta;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int CeilDiv(int a, int b) => (a + b - 1) / b;

    /// <summary>A 32-byte aligned pointer into a per-thread pinned buffer of at least <paramref name="floats"/> floats.</summary>
    private static float* Buffer(ref float[]? cache, int floats)
    {
        if (cache is null || cache.Length < floats + Align)
            cache = GC.AllocateUninitializedArray<float>(floats + Align, pinned: true);
        nint p = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(cache));
        return (float*)((p + 31) & ~(nint)31);
    }

    /// <summary>The arguments of one multiply, shared read-only by the workers.</summary>
    private readonly struct Job<TB>(bool transposeA, int m, int n, int k, float alpha,
        float* a, int lda, TB source, float beta, float* c, int ldc, float* rowBias, int parts, bool splitColumns, bool simd)
        where TB : struct, IPackB
    {
        private readonly nint _a = (nint)a, _c = (nint)c, _bias = (nint)rowBias;

        /// <summary>Strip <paramref name="part"/> of C: whole panels [part·P/parts, (part+1)·P/parts) of the split dimension.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Part(int part)
        {
            int i0 = 0, i1 = m, j0 = 0, j1 = n;
            if (splitColumns)
            {
                int panels = CeilDiv(n, NR);
                j0 = (int)((long)panels * part / parts) * NR;
                j1 = Math.Min(n, (int)((long)panels * (part + 1) / parts) * NR);
            }
            else
            {
                int panels = CeilDiv(m, MR);
                i0 = (int)((long)panels * part / parts) * MR;
                i1 = Math.Min(m, (int)((long)panels * (part + 1) / parts) * MR);
            }
            if (i0 >= i1 || j0 >= j1) return;
            float* pa = Buffer(ref t_packA, MC * KC);
            float* pb = Buffer(ref t_packB, NC * KC);
            for (int jc = j0; jc < j1; jc += NC)
            {
                int nCur = Math.Min(NC, j1 - jc);
                for (int p0 = 0; p0 < k; p0 += KC)
                {
                    int kc = Math.Min(KC, k - p0);
                    source.Pack(p0, jc, kc, nCur, pb);
                    bool first = p0 == 0;
                    float scaleC = first ? beta : 1f;
                    bool overwrite = first && beta == 0f;
                    float* bias = first ? (float*)_bias : null;
                    for (int ic = i0; ic < i1; ic += MC)
                    {
                        int mCur = Math.Min(MC, i1 - ic);
                        PackA(transposeA, (float*)_a, lda, ic, p0, mCur, kc, pa);
                        Block(kc, pa, pb, (float*)_c + (long)ic * ldc + jc, ldc, mCur, nCur, alpha, scaleC, overwrite, bias == null ? null : bias + ic, simd);
                    }
                }
            }
        }
    }

    /// <summary>Runs the micro-kernel over every pair of a packed mc×kc A block and kc×nc B block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block(int kc, float* pa, float* pb, float* cBlock, int ldc, int mc, int nc,
        float alpha, float scaleC, bool overwrite, float* rowBias, bool simd)
    {
        for (int jr = 0; jr < nc; jr += NR)
            Panel(kc, pa, pb + (long)jr * kc, NR, cBlock + jr, ldc, mc, Math.Min(NR, nc - jr), alpha, scaleC, overwrite, rowBias, simd);
    }

    /// <summary>
    /// Runs the micro-kernel for one B panel (nr ≤ 16 columns, row pitch ldb: <see cref="NR"/> when
    /// packed; the scalar kernel needs it packed) against every MR-row panel of a packed mc×kc A
    /// block, into C's columns at <paramref name="cPanel"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Panel(int kc, float* pa, float* bPanel, int ldb, float* cPanel, int ldc, int mc, int nr,
        float alpha, float scaleC, bool overwrite, float* rowBias, bool simd)
    {
        for (int ir = 0; ir < mc; ir += MR)
        {
            int mr = Math.Min(MR, mc - ir);
            float* cTile = cPanel + (long)ir * ldc;
            float* bias = rowBias == null ? null : rowBias + ir;
            if (simd) Kernel6x16(kc, pa + (long)ir * kc, bPanel, ldb, cTile, ldc, mr, nr, alpha, scaleC, overwrite, bias);
            else KernelScalar(kc, pa + (long)ir * kc, bPanel, cTile, ldc, mr, nr, alpha, scaleC, overwrite, bias);
        }
    }

    /// <summary>
    /// Packs op(A)[i0 .. i0+mc, p0 .. p0+kc] as panels of <see cref="MR"/> rows: panel r holds,
    /// for each p, the MR values op(A)[i0 + r·MR + 0..MR, p0 + p]; rows past the edge are zero.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackA(bool transposeA, float* a, int lda, int i0, int p0, int mc, int kc, float* dst)
    {
        for (int ir = 0; ir < mc; ir += MR)
        {
            int mr = Math.Min(MR, mc - ir);
            float* d = dst + (long)ir * kc;
            if (!transposeA && mr == MR && Avx.IsSupported)
            {
                PackRowsTransposed(a + (long)(i0 + ir) * lda + p0, lda, kc, d);
            }
            else if (!transposeA)
            {
                // op(A)[i, p] = a[i·lda + p]: each row is contiguous along p.
                for (int r = 0; r < mr; r++)
                {
                    float* s = a + (long)(i0 + ir + r) * lda + p0;
                    for (int p = 0; p < kc; p++) d[p * MR + r] = s[p];
                }
                for (int r = mr; r < MR; r++)
                {
                    for (int p = 0; p < kc; p++) d[p * MR + r] = 0f;
                }
            }
            else
            {
                // op(A)[i, p] = a[p·lda + i]: the MR values of one p are contiguous.
                for (int p = 0; p < kc; p++)
                {
                    float* s = a + (long)(p0 + p) * lda + i0 + ir;
                    float* dp = d + p * MR;
                    if (mr == MR)
                    {
                        Unsafe.WriteUnaligned(dp, Unsafe.ReadUnaligned<Vector128<float>>(s));
                        Unsafe.WriteUnaligned(dp + 4, Unsafe.ReadUnaligned<long>(s + 4));
                        continue;
                    }
                    int r = 0;
                    for (; r < mr; r++) dp[r] = s[r];
                    for (; r < MR; r++) dp[r] = 0f;
                }
            }
        }
    }

    /// <summary>
    /// One full A panel from 6 rows that are contiguous along p (row pitch lda):
    /// d[p·6 + r] = s[r·lda + p] for p &lt; kc, 8 values of p at a time through an 8×8 transpose.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackRowsTransposed(float* s, int lda, int kc, float* d)
    {
        int p = 0;
        // Each 8-wide store writes 2 lanes past its 6 values; the next store (or, after the last
        // block, the scalar tail, which always has at least one p left) overwrites them.
        for (; p + 8 < kc; p += 8)
        {
            var r0 = Avx.LoadVector256(s + p);
            var r1 = Avx.LoadVector256(s + lda + p);
            var r2 = Avx.LoadVector256(s + 2L * lda + p);
            var r3 = Avx.LoadVector256(s + 3L * lda + p);
            var r4 = Avx.LoadVector256(s + 4L * lda + p);
            var r5 = Avx.LoadVector256(s + 5L * lda + p);
            var t0 = Avx.UnpackLow(r0, r1);
            var t1 = Avx.UnpackHigh(r0, r1);
            var t2 = Avx.UnpackLow(r2, r3);
            var t3 = Avx.UnpackHigh(r2, r3);
            var t4 = Avx.UnpackLow(r4, r5);
            var t5 = Avx.UnpackHigh(r4, r5);
            var u0 = Avx.Shuffle(t0, t2, 0x44);
            var u1 = Avx.Shuffle(t0, t2, 0xEE);
            var u2 = Avx.Shuffle(t1, t3, 0x44);
            var u3 = Avx.Shuffle(t1, t3, 0xEE);
            var u4 = Avx.Shuffle(t4, t4, 0x44);
            var u5 = Avx.Shuffle(t4, t4, 0xEE);
            var u6 = Avx.Shuffle(t5, t5, 0x44);
            var u7 = Avx.Shuffle(t5, t5, 0xEE);
            // Column j (values of rows 0..5 at p + j) = low or high 128-bit halves of u_j, u_(j+4).
            float* o = d + p * MR;
            Avx.Store(o, Avx.Permute2x128(u0, u4, 0x20));
            Avx.Store(o + 6, Avx.Permute2x128(u1, u5, 0x20));
            Avx.Store(o + 12, Avx.Permute2x128(u2, u6, 0x20));
            Avx.Store(o + 18, Avx.Permute2x128(u3, u7, 0x20));
            Avx.Store(o + 24, Avx.Permute2x128(u0, u4, 0x31));
            Avx.Store(o + 30, Avx.Permute2x128(u1, u5, 0x31));
            Avx.Store(o + 36, Avx.Permute2x128(u2, u6, 0x31));
            Avx.Store(o + 42, Avx.Permute2x128(u3, u7, 0x31));
        }
        for (; p < kc; p++)
        {
            float* o = d + p * MR;
            for (int r = 0; r < MR; r++) o[r] = s[r * (long)lda + p];
        }
    }

    /// <summary>op(B) read from a row-major matrix (B, or Bᵀ stored, with row pitch ldb).</summary>
    internal readonly struct MatrixB(bool transposeB, float* b, int ldb) : IPackB
    {
        private readonly nint _b = (nint)b;

        /// <summary>
        /// Packs op(B)[p0 .. p0+kc, j0 .. j0+nc] as panels of <see cref="NR"/> columns: panel j holds,
        /// for each p, the NR values op(B)[p0 + p, j0 + j·NR + 0..NR]; columns past the edge are zero.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Pack(int p0, int j0, int kc, int nc, float* dst)
        {
            for (int jr = 0; jr < nc; jr += NR)
            {
                int nr = Math.Min(NR, nc - jr);
                float* d = dst + (long)jr * kc;
                if (!transposeB)
                {
                    // op(B)[p, j] = b[p·ldb + j]: NR contiguous values per p.
                    for (int p = 0; p < kc; p++)
                    {
                        float* s = (float*)_b + (long)(p0 + p) * ldb + j0 + jr;
                        float* dp = d + p * NR;
                        if (nr == NR)
                        {
                            Unsafe.WriteUnaligned(dp, Unsafe.ReadUnaligned<Vector256<float>>(s));
                            Unsafe.WriteUnaligned(dp + 8, Unsafe.ReadUnaligned<Vector256<float>>(s + 8));
                        }
                        else
                        {
                            int j = 0;
                            for (; j < nr; j++) dp[j] = s[j];
                            for (; j < NR; j++) dp[j] = 0f;
                        }
                    }
                }
                else if (nr == NR && Avx.IsSupported)
                {
                    // op(B)[p, j] = b[j·ldb + p]: 8 columns × 8 values of p at a time through an 8×8 transpose.
                    float* s = (float*)_b + (long)(j0 + jr) * ldb + p0;
                    int p = 0;
                    for (; p + 8 <= kc; p += 8)
                    {
                        Avx8x8.Transpose(s + p, ldb, d + p * NR, NR);
                        Avx8x8.Transpose(s + 8L * ldb + p, ldb, d + p * NR + 8, NR);
                    }
                    for (; p < kc; p++)
                    {
                        float* dp = d + p * NR;
                        for (int j = 0; j < NR; j++) dp[j] = s[(long)j * ldb + p];
                    }
                }
                else
                {
                    // op(B)[p, j] = b[j·ldb + p]: each column of op(B) is contiguous along p.
                    for (int j = 0; j < nr; j++)
                    {
                        float* s = (float*)_b + (long)(j0 + jr + j) * ldb + p0;
                        for (int p = 0; p < kc; p++) d[p * NR + j] = s[p];
                    }
                    for (int j = nr; j < NR; j++)
                    {
                        for (int p = 0; p < kc; p++) d[p * NR + j] = 0f;
                    }
                }
            }
        }

    }

    /// <summary>
    /// One rank-1 step of the 6×16 micro-kernels (<see cref="Kernel6x16"/> and the direct convolution's tiles):
    /// acc[r] += a[r] · (b[0..8], b[8..16]) for the 6 rows r.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Step6x16(float* b, float* a,
        ref Vector256<float> c00, ref Vector256<float> c01, ref Vector256<float> c10, ref Vector256<float> c11,
        ref Vector256<float> c20, ref Vector256<float> c21, ref Vector256<float> c30, ref Vector256<float> c31,
        ref Vector256<float> c40, ref Vector256<float> c41, ref Vector256<float> c50, ref Vector256<float> c51)
    {
        var b0 = Avx.LoadVector256(b);
        var b1 = Avx.LoadVector256(b + 8);
        var av = Avx.BroadcastScalarToVector256(a);
        c00 = Fma.MultiplyAdd(av, b0, c00);
        c01 = Fma.MultiplyAdd(av, b1, c01);
        av = Avx.BroadcastScalarToVector256(a + 1);
        c10 = Fma.MultiplyAdd(av, b0, c10);
        c11 = Fma.MultiplyAdd(av, b1, c11);
        av = Avx.BroadcastScalarToVector256(a + 2);
        c20 = Fma.MultiplyAdd(av, b0, c20);
        c21 = Fma.MultiplyAdd(av, b1, c21);
        av = Avx.BroadcastScalarToVector256(a + 3);
        c30 = Fma.MultiplyAdd(av, b0, c30);
        c31 = Fma.MultiplyAdd(av, b1, c31);
        av = Avx.BroadcastScalarToVector256(a + 4);
        c40 = Fma.MultiplyAdd(av, b0, c40);
        c41 = Fma.MultiplyAdd(av, b1, c41);
        av = Avx.BroadcastScalarToVector256(a + 5);
        c50 = Fma.MultiplyAdd(av, b0, c50);
        c51 = Fma.MultiplyAdd(av, b1, c51);
    }

    /// <summary>
    /// The AVX2/FMA micro-kernel: acc (6×16) = Σ_p a[p·6 + r]·b[p·ldb + j] over kc steps, then
    /// C[r, j] = alpha·acc + scaleC·C (or alpha·acc when <paramref name="overwrite"/>, plus
    /// rowBias[r] when that is not null) on the valid mr×nr corner. <paramref name="ldb"/> is
    /// <see cref="NR"/> for a packed B panel, or B's own row pitch when 16 columns of it are read
    /// in place (<see cref="MultiplyPackedA"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel6x16(int kc, float* a, float* b, int ldb, float* c, int ldc, int mr, int nr,
        float alpha, float scaleC, bool overwrite, float* rowBias)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        // The tile's lines of C (first and last float of each row) are fetched while the loop
        // runs, so the stores at the end do not wait for them.
        for (int r = 0; r < mr; r++)
        {
            Sse.Prefetch0(c + (long)r * ldc);
            Sse.Prefetch0(c + (long)r * ldc + nr - 1);
        }
        for (int p = 0; p < kc; p++)
        {
            Step6x16(b, a, ref c00, ref c01, ref c10, ref c11, ref c20, ref c21, ref c30, ref c31, ref c40, ref c41, ref c50, ref c51);
            a += MR;
            b += ldb;
        }

        if (mr == MR && nr == NR)
        {
            var va = Vector256.Create(alpha);
            if (overwrite && rowBias != null)
            {
                Bias(c, c00, c01, va, rowBias[0]);
                Bias(c + ldc, c10, c11, va, rowBias[1]);
                Bias(c + 2L * ldc, c20, c21, va, rowBias[2]);
                Bias(c + 3L * ldc, c30, c31, va, rowBias[3]);
                Bias(c + 4L * ldc, c40, c41, va, rowBias[4]);
                Bias(c + 5L * ldc, c50, c51, va, rowBias[5]);
            }
            else if (overwrite)
            {
                Store(c, c00 * va, c01 * va);
                Store(c + ldc, c10 * va, c11 * va);
                Store(c + 2L * ldc, c20 * va, c21 * va);
                Store(c + 3L * ldc, c30 * va, c31 * va);
                Store(c + 4L * ldc, c40 * va, c41 * va);
                Store(c + 5L * ldc, c50 * va, c51 * va);
            }
            else
            {
                var vb = Vector256.Create(scaleC);
                Update(c, c00, c01, va, vb);
                Update(c + ldc, c10, c11, va, vb);
                Update(c + 2L * ldc, c20, c21, va, vb);
                Update(c + 3L * ldc, c30, c31, va, vb);
                Update(c + 4L * ldc, c40, c41, va, vb);
                Update(c + 5L * ldc, c50, c51, va, vb);
            }
            return;
        }

        float* acc = stackalloc float[MR * NR];
        Store(acc, c00, c01);
        Store(acc + NR, c10, c11);
        Store(acc + 2 * NR, c20, c21);
        Store(acc + 3 * NR, c30, c31);
        Store(acc + 4 * NR, c40, c41);
        Store(acc + 5 * NR, c50, c51);
        StoreEdge(acc, c, ldc, mr, nr, alpha, scaleC, overwrite, rowBias);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* dst, Vector256<float> lo, Vector256<float> hi)
    {
        Avx.Store(dst, lo);
        Avx.Store(dst + 8, hi);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Bias(float* dst, Vector256<float> lo, Vector256<float> hi, Vector256<float> alpha, float bias)
    {
        var vb = Vector256.Create(bias);
        Avx.Store(dst, Fma.MultiplyAdd(lo, alpha, vb));
        Avx.Store(dst + 8, Fma.MultiplyAdd(hi, alpha, vb));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Update(float* dst, Vector256<float> lo, Vector256<float> hi, Vector256<float> alpha, Vector256<float> beta)
    {
        Avx.Store(dst, Fma.MultiplyAdd(lo, alpha, Avx.LoadVector256(dst) * beta));
        Avx.Store(dst + 8, Fma.MultiplyAdd(hi, alpha, Avx.LoadVector256(dst + 8) * beta));
    }

    /// <summary>Scalar micro-kernel with the same packed layout, for processors without AVX2/FMA.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelScalar(int kc, float* a, float* b, float* c, int ldc, int mr, int nr,
        float alpha, float scaleC, bool overwrite, float* rowBias)
    {
        float* acc = stackalloc float[MR * NR];
        new Span<float>(acc, MR * NR).Clear();
        for (int p = 0; p < kc; p++)
        {
            for (int r = 0; r < MR; r++)
            {
                float ar = a[r];
                float* accRow = acc + r * NR;
                for (int j = 0; j < NR; j++) accRow[j] += ar * b[j];
            }
            a += MR;
            b += NR;
        }
        StoreEdge(acc, c, ldc, mr, nr, alpha, scaleC, overwrite, rowBias);
    }

    /// <summary>Writes the valid mr×nr corner of a 6×16 accumulator tile into C.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void StoreEdge(float* acc, float* c, int ldc, int mr, int nr, float alpha, float scaleC, bool overwrite, float* rowBias)
    {
        for (int r = 0; r < mr; r++)
        {
            float* cr = c + (long)r * ldc;
            float* ar = acc + r * NR;
            if (overwrite && rowBias != null)
            {
                float bias = rowBias[r];
                for (int j = 0; j < nr; j++) cr[j] = alpha * ar[j] + bias;
            }
            else if (overwrite)
            {
                for (int j = 0; j < nr; j++) cr[j] = alpha * ar[j];
            }
            else
            {
                for (int j = 0; j < nr; j++) cr[j] = alpha * ar[j] + scaleC * cr[j];
            }
        }
    }
}
