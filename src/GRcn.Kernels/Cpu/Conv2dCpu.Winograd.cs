// Winograd F(2×2, 3×3) conv2d forward for 3×3 kernels with stride 1 and dilation 1 over many
// channels (VGG's and ResNet's 3×3 layers, and their stride-1 input gradients):
// x (N, C, H, W), w (O, C, 3, 3), y (N, O, OH, OW), any padding. Each 2×2 output tile is
//   Y = Aᵀ·[Σ_c U_oc ⊙ V_c]·A,   U_oc = G·w[o, c]·Gᵀ,   V_c = Bᵀ·d_c·B,
// d_c the tile's 4×4 input patch of channel c: 16 products per tile, (o, c) pair instead of 36, as
// 16 GEMMs, one per position ξ of the 4×4 transform: M_ξ (O × tiles) = U_ξ (O × C) · V_ξ (C × tiles).
// Parallelism: the tiles of all images, in order (image, tile row, tile column), are cut into
// blocks of a few 16-tile panels; a worker transforms a block's input patches into its own V,
// runs the 16 products into its own M (both stay in L2) and transforms M into y, 8 tiles per
// vector. U is computed once per call, straight into the GEMM's packed A layout, split by
// panels of output channels.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GRcn.Kernels.Cpu;

internal static unsafe partial class Conv2dCpu
{
    /// <summary>Fewest input and output channels the Winograd path takes (below, the transforms outweigh the saved products).</summary>
    internal const int WinogradMinChannels = 16;

    /// <summary>Floats of V and M one block may take (384 KiB of a Zen 3 core's 512 KiB L2), which sets the block width.</summary>
    private const int WinogradBlockFloats = 3 << 15;

    /// <summary>Test hook: forward convolutions started on this thread skip the Winograd path (direct or GEMM instead).</summary>
    [ThreadStatic] internal static bool DisableWinograd;

    [ThreadStatic] private static float[]? t_winogradWeights;
    [ThreadStatic] private static float[]? t_winogradBlock;

    /// <summary>Whether the Winograd kernel computes this forward convolution.</summary>
    internal static bool UseWinograd(in Conv2dGeometry g) =>
        !ForceGemmForward && !DisableWinograd && Avx2.IsSupported && Fma.IsSupported &&
        g.KH == 3 && g.KW == 3 && g.StrideH == 1 && g.StrideW == 1 && g.DilationH == 1 && g.DilationW == 1 &&
        g.C >= WinogradMinChannels && g.O >= WinogradMinChannels && g.OW >= 16 && g.OH >= 2;

    /// <summary>
    /// Tiles per block, whole 16-tile panels: as many as keep V (16·C) and M (16·O floats per
    /// tile) within <see cref="WinogradBlockFloats"/>, one to four; four when U (16·O·C floats)
    /// alone outgrows that, since every block then streams all of U from L3 and more tiles per
    /// block read it fewer times (512 channels at 38 × 50: 8 % faster than one panel).
    /// </summary>
    private static int WinogradBlockTiles(in Conv2dGeometry g) =>
        16L * g.O * g.C >= WinogradBlockFloats ? 64 : 16 * Math.Clamp(WinogradBlockFloats / (16 * 16 * (g.C + g.O)), 1, 4);

    /// <summary>
    /// Forward by Winograd F(2×2, 3×3) (requires <see cref="UseWinograd"/>): y = bias + the
    /// convolution, every output written once.
    /// </summary>
    private static void ForwardWinograd(float* x, float* w, float* bias, float* y, in Conv2dGeometry g)
    {
        int slices = (g.C + GemmCpu.KC - 1) / GemmCpu.KC;
        // the packed size is linear in k, so position ξ's slices take PackedASize(O, C) floats together
        long perPosition = GemmCpu.PackedASize(g.O, g.C);
        float* u = Aligned(ref t_winogradWeights, 16 * perPosition);
        int panels = (g.O + GemmCpu.MR - 1) / GemmCpu.MR;
        Parallelism.For(panels, 16L * GemmCpu.MR * g.C * 9, (w: (nint)w, u: (nint)u, g.O, g.C, slices, perPosition), static (st, p0, p1) =>
        {
            for (int p = p0; p < p1; p++) TransformWeights((float*)st.w, (float*)st.u, st.O, st.C, st.slices, st.perPosition, p);
        });

        int blockTiles = WinogradBlockTiles(g);
        int tilesH = (g.OH + 1) / 2, tilesW = (g.OW + 1) / 2;
        long tiles = (long)g.N * tilesH * tilesW;
        int blocks = checked((int)((tiles + blockTiles - 1) / blockTiles));
        var job = new WinogradJob(x, u, perPosition, slices, bias, y, g, blockTiles, tilesH, tilesW, tiles);
        Parallelism.For(blocks, 16L * 2 * g.O * g.C * blockTiles, job, static (j, start, end) => j.Run(start, end));
    }

    /// <summary>Depth of k slice <paramref name="s"/> of the C input channels (<see cref="GemmCpu.KC"/> each, the last one shorter).</summary>
    private static int SliceDepth(int c, int s) => Math.Min(GemmCpu.KC, c - s * GemmCpu.KC);

    /// <summary>
    /// U = G·w[o, c]·Gᵀ for the output channels of panel <paramref name="panel"/> (MR of them; rows
    /// past O zero), written where <see cref="GemmCpu.PackA(bool, float*, int, int, int, float*)"/>
    /// would put U_ξ (O × C): position ξ's region starts at ξ·perPosition and holds its k slices one
    /// after another (slice s at PackedASize(O, s·KC)), slice s of depth kc as panels of MR rows,
    /// (panel·kc + c')·MR + r.
    /// G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1].
    /// </summary>
    private static void TransformWeights(float* w, float* u, int o, int c, int slices, long perPosition, int panel)
    {
        const int MR = GemmCpu.MR;
        float* gg = stackalloc float[12];
        for (int r = 0; r < MR; r++)
        {
            int oc = panel * MR + r;
            for (int s = 0; s < slices; s++)
            {
                int kc = SliceDepth(c, s);
                float* dst = u + GemmCpu.PackedASize(o, s * GemmCpu.KC) + (long)panel * kc * MR + r;
                for (int ci = 0; ci < kc; ci++)
                {
                    float* d = dst + ci * MR;
                    if (oc >= o)
                    {
                        for (int xi = 0; xi < 16; xi++) d[xi * perPosition] = 0f;
                        continue;
                    }
                    float* k = w + ((long)oc * c + s * GemmCpu.KC + ci) * 9;
                    // G·w (4×3): rows w0, (w0 + w1 + w2)/2, (w0 − w1 + w2)/2, w2
                    for (int j = 0; j < 3; j++)
                    {
                        float a = k[j], b = k[3 + j], e = k[6 + j];
                        gg[j] = a;
                        gg[3 + j] = 0.5f * (a + b + e);
                        gg[6 + j] = 0.5f * (a - b + e);
                        gg[9 + j] = e;
                    }
                    // (G·w)·Gᵀ, row by row
                    for (int i = 0; i < 4; i++)
                    {
                        float a = gg[3 * i], b = gg[3 * i + 1], e = gg[3 * i + 2];
                        d[(4 * i) * perPosition] = a;
                        d[(4 * i + 1) * perPosition] = 0.5f * (a + b + e);
                        d[(4 * i + 2) * perPosition] = 0.5f * (a - b + e);
                        d[(4 * i + 3) * perPosition] = e;
                    }
                }
            }
        }
    }

    /// <summary>The arguments of one Winograd convolution, shared read-only by the workers.</summary>
    private readonly struct WinogradJob(float* x, float* u, long perPosition, int slices, float* bias, float* y, Conv2dGeometry g,
        int blockTiles, int tilesH, int tilesW, long tiles)
    {
        private readonly nint _x = (nint)x, _u = (nint)u, _bias = (nint)bias, _y = (nint)y;

        /// <summary>
        /// Row pitch of V and M (floats): 16 tiles more than a block, so the vector stores of a run's
        /// last group may run past its end (into tiles the next run or nothing overwrites), and a
        /// multiple of 16, so a 16-tile panel of a row is one cache line.
        /// </summary>
        private int Pitch => blockTiles + 16;

        /// <summary>
        /// Floats from one position ξ's matrix to the next in V (C rows) and M (O rows): one cache
        /// line more than the rows, so the 16 vectors a transform stores or loads (one per ξ) fall
        /// in 16 different L1 sets; at C·Pitch floats, a multiple of 4 KiB, they would share one.
        /// </summary>
        private long VStride => (long)g.C * Pitch + 16;

        /// <inheritdoc cref="VStride"/>
        private long MStride => (long)g.O * Pitch + 16;

        /// <summary>Blocks [start, end): block b covers tiles [b·blockTiles, (b + 1)·blockTiles) in (image, tile row, tile column) order.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int start, int end)
        {
            int ld = Pitch;
            long vSize = 16 * VStride, mSize = 16 * MStride;
            float* v = Aligned(ref t_winogradBlock, vSize + mSize);
            float* m = v + vSize;
            for (int b = start; b < end; b++)
            {
                long t0 = (long)b * blockTiles;
                int count = (int)Math.Min(blockTiles, tiles - t0);
                ForEachRun(t0, count, v, ld, input: true);
                for (int xi = 0; xi < 16; xi++)
                {
                    // M_ξ (O × count) = U_ξ · V_ξ, over the k slices of C
                    for (int s = 0; s < slices; s++)
                    {
                        float* us = (float*)_u + xi * perPosition + GemmCpu.PackedASize(g.O, s * GemmCpu.KC);
                        GemmCpu.MultiplyPackedA(us, g.O, count, SliceDepth(g.C, s), 1f, v + xi * VStride + (long)s * GemmCpu.KC * ld, ld,
                            s == 0 ? 0f : 1f, m + xi * MStride, ld);
                    }
                }
                ForEachRun(t0, count, m, ld, input: false);
            }
        }

        /// <summary>
        /// Cuts tiles [t0, t0 + count) into runs within one tile row and transforms each: the input
        /// patches into <paramref name="buffer"/> (V), or <paramref name="buffer"/> (M) into y.
        /// </summary>
        private void ForEachRun(long t0, int count, float* buffer, int ld, bool input)
        {
            long perImage = (long)tilesH * tilesW;
            for (int l = 0; l < count;)
            {
                long t = t0 + l;
                int n = (int)(t / perImage), rest = (int)(t % perImage);
                int ti = rest / tilesW, tj = rest % tilesW;
                int run = Math.Min(tilesW - tj, count - l);
                if (input) InputRun(n, ti, tj, run, buffer + l, ld);
                else OutputRun(n, ti, tj, run, buffer + l, ld);
                l += run;
            }
        }

        /// <summary>
        /// V_ξ[c, l + t] for the <paramref name="run"/> tiles (ti, tj + t) of image n, every channel,
        /// 8 tiles at a time (the last group may compute up to 7 tiles past the run, from in-bounds
        /// input, into columns that are overwritten or unused).
        /// </summary>
        private void InputRun(int n, int ti, int tj, int run, float* v, int ld)
        {
            float* patch = stackalloc float[4 * 24];
            long plane = (long)g.H * g.W, xiStride = VStride;
            int ih0 = 2 * ti - g.PadH;
            bool rowsInside = ih0 >= 0 && ih0 + 4 <= g.H;
            // The run's input columns, clipped to the row: fetched two channels ahead, since the 4
            // short row segments of a channel are too scattered for the hardware prefetcher.
            int f0 = Math.Max(0, 2 * tj - g.PadW), f1 = Math.Min(g.W, 2 * (tj + run) - g.PadW + 2);
            for (int c = 0; c < g.C; c++)
            {
                float* xc = (float*)_x + ((long)n * g.C + c) * plane;
                float* vc = v + (long)c * ld;
                if (c + 2 < g.C && f0 < f1)
                {
                    float* ahead = xc + 2 * plane;
                    for (int r = Math.Max(0, ih0); r < Math.Min(g.H, ih0 + 4); r++)
                    {
                        float* row = ahead + (long)r * g.W;
                        for (int i = f0; i < f1; i += 16) Sse.Prefetch0(row + i);
                        Sse.Prefetch0(row + f1 - 1);
                    }
                }
                for (int t = 0; t < run; t += 8)
                {
                    // The group's 8 patches span input columns [col, col + 18) of rows ih0 .. ih0 + 3.
                    int col = 2 * (tj + t) - g.PadW;
                    if (rowsInside && col >= 0 && col + 18 <= g.W)
                    {
                        float* r0 = xc + (long)ih0 * g.W + col;
                        TransformInput(r0, r0 + g.W, r0 + 2 * g.W, r0 + 3 * g.W, vc + t, xiStride);
                        continue;
                    }
                    // At the image's edge: the patch rows, zero outside the image, copied first.
                    for (int r = 0; r < 4; r++)
                    {
                        int ih = ih0 + r;
                        CopyClipped((uint)ih < (uint)g.H ? xc + (long)ih * g.W : null, col, 18, g.W, patch + r * 24);
                    }
                    TransformInput(patch, patch + 24, patch + 48, patch + 72, vc + t, xiStride);
                }
            }
        }

        /// <summary>
        /// y[n, o, 2ti .. 2ti + 1, 2tj .. 2(tj + run) − 1] (clipped to OH × OW) = bias[o] + Aᵀ·M·A of
        /// each tile, for every output channel, 8 tiles at a time.
        /// </summary>
        private void OutputRun(int n, int ti, int tj, int run, float* mBase, int ld)
        {
            float* edge = stackalloc float[32];
            long plane = (long)g.OH * g.OW, xiStride = MStride;
            int oh = 2 * ti;
            bool second = oh + 1 < g.OH;
            for (int o = 0; o < g.O; o++)
            {
                float* yo = (float*)_y + ((long)n * g.O + o) * plane + (long)oh * g.OW;
                var vb = (float*)_bias == null ? Vector256<float>.Zero : Vector256.Create(((float*)_bias)[o]);
                float* mo = mBase + (long)o * ld;
                for (int t = 0; t < run; t += 8)
                {
                    int ow = 2 * (tj + t);
                    // valid output columns of this group: its tiles within the run, clipped to OW
                    int cols = Math.Min(2 * Math.Min(8, run - t), g.OW - ow);
                    if (cols == 16)
                    {
                        TransformOutput(mo + t, xiStride, vb, yo + ow, second ? yo + g.OW + ow : edge + 16);
                        continue;
                    }
                    TransformOutput(mo + t, xiStride, vb, edge, edge + 16);
                    for (int i = 0; i < cols; i++) yo[ow + i] = edge[i];
                    if (second)
                    {
                        for (int i = 0; i < cols; i++) yo[g.OW + ow + i] = edge[16 + i];
                    }
                }
            }
        }
    }

    /// <summary>
    /// V = Bᵀ·d·B for 8 tiles side by side: d[r][s] of tile k is row r at column 2k + s (rows
    /// r0..r3, 18 columns read), V[ξ][ν] stored at v + (4ξ + ν)·xiStride, 8 tiles contiguous.
    /// Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransformInput(float* r0, float* r1, float* r2, float* r3, float* v, long xiStride)
    {
        // d·B along each row: (d0 − d2, d1 + d2, d2 − d1, d1 − d3)
        RowTransform(r0, out var a0, out var a1, out var a2, out var a3);
        RowTransform(r1, out var b0, out var b1, out var b2, out var b3);
        RowTransform(r2, out var c0, out var c1, out var c2, out var c3);
        RowTransform(r3, out var e0, out var e1, out var e2, out var e3);
        // Bᵀ·(d·B) down the rows, the same combination
        Avx.Store(v, a0 - c0);
        Avx.Store(v + xiStride, a1 - c1);
        Avx.Store(v + 2 * xiStride, a2 - c2);
        Avx.Store(v + 3 * xiStride, a3 - c3);
        Avx.Store(v + 4 * xiStride, b0 + c0);
        Avx.Store(v + 5 * xiStride, b1 + c1);
        Avx.Store(v + 6 * xiStride, b2 + c2);
        Avx.Store(v + 7 * xiStride, b3 + c3);
        Avx.Store(v + 8 * xiStride, c0 - b0);
        Avx.Store(v + 9 * xiStride, c1 - b1);
        Avx.Store(v + 10 * xiStride, c2 - b2);
        Avx.Store(v + 11 * xiStride, c3 - b3);
        Avx.Store(v + 12 * xiStride, b0 - e0);
        Avx.Store(v + 13 * xiStride, b1 - e1);
        Avx.Store(v + 14 * xiStride, b2 - e2);
        Avx.Store(v + 15 * xiStride, b3 - e3);
    }

    /// <summary>
    /// One patch row of 8 tiles times B: with s_j the 8 values row[2k + j] (k = 0..7),
    /// (s0 − s2, s1 + s2, s2 − s1, s1 − s3).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RowTransform(float* row, out Vector256<float> t0, out Vector256<float> t1, out Vector256<float> t2, out Vector256<float> t3)
    {
        Deinterleave(Avx.LoadVector256(row), Avx.LoadVector256(row + 8), out var s0, out var s1);
        Deinterleave(Avx.LoadVector256(row + 2), Avx.LoadVector256(row + 10), out var s2, out var s3);
        t0 = s0 - s2;
        t1 = s1 + s2;
        t2 = s2 - s1;
        t3 = s1 - s3;
    }

    /// <summary>Even and odd elements of the 16 floats (lo, hi): even = x0, x2, .., x14; odd = x1, x3, .., x15.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Deinterleave(Vector256<float> lo, Vector256<float> hi, out Vector256<float> even, out Vector256<float> odd)
    {
        // per 128-bit lane: (lo0, lo2, hi0, hi2 | lo4, lo6, hi4, hi6); the 64-bit quarters 0, 2, 1, 3 put them in order
        even = Avx2.Permute4x64(Avx.Shuffle(lo, hi, 0b10_00_10_00).AsDouble(), 0b11_01_10_00).AsSingle();
        odd = Avx2.Permute4x64(Avx.Shuffle(lo, hi, 0b11_01_11_01).AsDouble(), 0b11_01_10_00).AsSingle();
    }

    /// <summary>
    /// Y = Aᵀ·M·A + bias for 8 tiles side by side (M[ξ][ν] at m + (4ξ + ν)·xiStride), output rows
    /// written interleaved: y0[2k + j] = Y[0][j] of tile k, y1 likewise for Y[1] (16 floats each).
    /// Aᵀ = [1 1 1 0; 0 1 −1 −1].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransformOutput(float* m, long xiStride, Vector256<float> bias, float* y0, float* y1)
    {
        // Aᵀ·M: rows (m0 + m1 + m2, m1 − m2 − m3), column by column
        RowsOfAtM(m, xiStride, out var p0, out var q0);
        RowsOfAtM(m + xiStride, xiStride, out var p1, out var q1);
        RowsOfAtM(m + 2 * xiStride, xiStride, out var p2, out var q2);
        RowsOfAtM(m + 3 * xiStride, xiStride, out var p3, out var q3);
        // (Aᵀ·M)·A: columns (r0 + r1 + r2, r1 − r2 − r3)
        StoreInterleaved(y0, p0 + p1 + p2 + bias, p1 - p2 - p3 + bias);
        StoreInterleaved(y1, q0 + q1 + q2 + bias, q1 - q2 - q3 + bias);
    }

    /// <summary>Column ν of Aᵀ·M (M[ξ][ν] at m + 4ξ·xiStride): p = m0 + m1 + m2, q = m1 − m2 − m3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RowsOfAtM(float* m, long xiStride, out Vector256<float> p, out Vector256<float> q)
    {
        var a = Avx.LoadVector256(m);
        var b = Avx.LoadVector256(m + 4 * xiStride);
        var c = Avx.LoadVector256(m + 8 * xiStride);
        var d = Avx.LoadVector256(m + 12 * xiStride);
        p = a + b + c;
        q = b - c - d;
    }

    /// <summary>dst[2k] = a[k], dst[2k + 1] = b[k] for k &lt; 8.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreInterleaved(float* dst, Vector256<float> a, Vector256<float> b)
    {
        // per 128-bit lane: lo = (a0 b0 a1 b1 | a4 b4 a5 b5), hi = (a2 b2 a3 b3 | a6 b6 a7 b7)
        var lo = Avx.UnpackLow(a, b);
        var hi = Avx.UnpackHigh(a, b);
        Avx.Store(dst, Avx.Permute2x128(lo, hi, 0x20));
        Avx.Store(dst + 8, Avx.Permute2x128(lo, hi, 0x31));
    }
}
