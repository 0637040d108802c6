// Direct conv2d forward for stride 1, dilation 1, kernel width 3 and few input channels (the
// 64- and 128-channel layers of VGG): x (N, C, H, W), w (O, C, KH, 3), y (N, O, OH, OW).
// y[n, o, oh, ow0 .. ow0+16] for 6 output channels at a time is accumulated in 12 AVX registers
// over every (c, u, v). Instead of im2col's KH·3 copies of x, each tile copies the 18 input
// columns it reads from each (c, u) row once into a small contiguous buffer (zeros for padding),
// and the three taps v load it at offsets 0, 1, 2. The weights are packed once per call into
// panels of 6 output channels, k-major. A large output (the first layer's) is written with
// non-temporal stores.
// Parallelism: the output rows of all images (with the output channels split too when there
// are few rows) are cut into contiguous chunks of a few rows (16 per worker) claimed by the
// workers; each item writes its own tiles.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GRcn.Kernels.Cpu;

internal static unsafe partial class Conv2dCpu
{
    /// <summary>Output channels per register tile.</summary>
    private const int DirectMR = 6;

    /// <summary>Output columns per register tile (two AVX vectors).</summary>
    private const int DirectNR = 16;

    /// <summary>Largest C·KH·KW the direct path takes: the weight panels (6·C·KH·KW floats each) and the input rows of one output row then stay in L2.</summary>
    internal const int DirectMaxK = 1152;

    /// <summary>
    /// Most (c, u) input rows one kernel call sums over (the partial sums of a longer k go
    /// through y between calls): all 192 of a 64-channel 3×3 layer, whose sums then never leave
    /// the registers. The tile's packed segments (18 KiB) stay in L1 while the weights stream
    /// from L2; 96 rows, which keep the weights in L1 too, measured 1–1.5 % slower.
    /// </summary>
    private const int DirectChunkRows = 192;

    /// <summary>Chunks of output rows per worker thread (see <see cref="Parallelism.For{TState}"/>).</summary>
    private const int DirectChunksPerThread = 16;

    /// <summary>Test hook: forward convolutions started on this thread use the GEMM path even where the direct one applies.</summary>
    [ThreadStatic] internal static bool ForceGemmForward;

    [ThreadStatic] private static float[]? t_directWeights;

    /// <summary>
    /// Smallest output (bytes) the direct kernel writes with non-temporal stores: one that outgrows
    /// the caches would be evicted before the next layer reads it anyway, and streaming stores skip
    /// the read-for-ownership of every line (the 3-channel first layer of VGG, 30 MB of output for
    /// 27 products per value: 24 % faster).
    /// </summary>
    internal const long DirectStreamingBytes = 8 << 20;

    /// <summary>Whether the direct kernel computes this forward convolution.</summary>
    internal static bool UseDirect(in Conv2dGeometry g) =>
        !ForceGemmForward && Avx2.IsSupported && Fma.IsSupported &&
        g.KW == 3 && g.StrideH == 1 && g.StrideW == 1 && g.DilationH == 1 && g.DilationW == 1 &&
        g.PadW <= 2 && (long)g.C * g.KH * g.KW <= DirectMaxK && g.OW >= 8 && g.O >= 4;

    /// <summary>A 32-byte aligned pointer into a pinned array of at least <paramref name="floats"/> floats, grown when too small.</summary>
    private static float* Aligned(ref float[]? cache, long floats)
    {
        if (cache is null || cache.Length < floats + 8)
            cache = GC.AllocateUninitializedArray<float>(checked((int)(floats + 8)), pinned: true);
        nint p = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(cache));
        return (float*)((p + 31) & ~(nint)31);
    }

    /// <summary>Floats per packed row segment: 16 + 2 columns of one tile, rounded up to a multiple of 8.</summary>
    private const int SegmentStride = 24;

    /// <summary>The arguments of one direct convolution, shared read-only by the workers.</summary>
    private readonly struct DirectJob(float* x, float* panels, float* bias, float* y, Conv2dGeometry g, int oGroups, bool streaming)
    {
        private readonly nint _x = (nint)x, _panels = (nint)panels, _bias = (nint)bias, _y = (nint)y;

        /// <summary>Items [start, end): item i is output row i / oGroups (over all images) for output-channel group i % oGroups.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int start, int end)
        {
            int kdim = g.C * g.KH * 3;
            int pairs = g.C * g.KH;
            int panelCount = (g.O + DirectMR - 1) / DirectMR;
            long inPlane = (long)g.H * g.W, outPlane = (long)g.OH * g.OW;
            // Input row of each (c, u) for the current output row, or null above/below the image.
            float** rows = stackalloc float*[pairs];
            // The segments of one tile and chunk: seg[q·24 + t] = x[c, ih, ow0 − pw + t] (0 outside).
            float* seg = stackalloc float[DirectChunkRows * SegmentStride + 8];
            seg = (float*)(((nint)seg + 31) & ~(nint)31);
            for (int item = start; item < end; item++)
            {
                int row = item / oGroups, group = item % oGroups;
                int n = row / g.OH, oh = row % g.OH;
                int p0 = (int)((long)panelCount * group / oGroups), p1 = (int)((long)panelCount * (group + 1) / oGroups);
                float* xn = (float*)_x + n * g.C * inPlane;
                for (int c = 0; c < g.C; c++)
                {
                    for (int u = 0; u < g.KH; u++)
                    {
                        int ih = oh - g.PadH + u;
                        rows[c * g.KH + u] = (uint)ih < (uint)g.H ? xn + c * inPlane + (long)ih * g.W : null;
                    }
                }
                float* yRow = (float*)_y + n * g.O * outPlane + (long)oh * g.OW;
                // Whole 6×16 tiles go out as full 64-byte lines, streamed when the row and every
                // channel plane start on a line.
                bool stream = streaming && ((nint)yRow & 63) == 0 && (outPlane & 15) == 0;
                for (int ow0 = 0; ow0 < g.OW; ow0 += DirectNR)
                {
                    int cols = Math.Min(DirectNR, g.OW - ow0);
                    int width = cols > 8 ? DirectNR + 2 : 8 + 2;
                    // The output lines of the next tile, fetched ahead so the stores do not wait for them.
                    if (!stream && ow0 + 2 * DirectNR <= g.OW)
                    {
                        for (int o = p0 * DirectMR; o < Math.Min(g.O, p1 * DirectMR); o++) Sse.Prefetch0(yRow + o * outPlane + ow0 + 2 * DirectNR - 1);
                    }
                    // Chunks of (c, u) rows outermost; each chunk's segments are packed once and
                    // stay in L1 while every output-channel panel of the item runs over them.
                    for (int q0 = 0; q0 < pairs; q0 += DirectChunkRows)
                    {
                        int qn = Math.Min(DirectChunkRows, pairs - q0);
                        PackSegments(rows + q0, qn, ow0 - g.PadW, width, g.W, seg);
                        bool first = q0 == 0;
                        for (int p = p0; p < p1; p++)
                        {
                            int o0 = p * DirectMR, mr = Math.Min(DirectMR, g.O - o0);
                            // panel p, from k = q0·3 on (k-major, 6 values per k)
                            float* a = (float*)_panels + ((long)p * kdim + q0 * 3) * DirectMR;
                            float* yt = yRow + o0 * outPlane + ow0;
                            float* b = (float*)_bias == null ? null : (float*)_bias + o0;
                            if (cols > 8 && mr <= 4) Tile4x16(a, seg, qn, yt, outPlane, mr, cols, b, first);
                            else if (cols > 8) Tile16(a, seg, qn, yt, outPlane, mr, cols, b, first, stream);
                            else Tile8(a, seg, qn, yt, outPlane, mr, cols, b, first);
                        }
                    }
                }
            }
            // streamed stores are weakly ordered: drain them before the caller reads y
            if (streaming) Sse.StoreFence();
        }
    }

    /// <summary>
    /// seg[q·24 + t] = rows[q][col0 + t] for t &lt; width, 0 where the row is null (outside the
    /// image) or the column lies outside [0, w).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackSegments(float** rows, int count, int col0, int width, int w, float* seg)
    {
        bool inside = col0 >= 0 && col0 + width <= w;
        for (int q = 0; q < count; q++)
        {
            float* src = rows[q], dst = seg + q * SegmentStride;
            // The next tile (16 columns on) is read from memory while this one computes.
            if (src != null && (uint)(col0 + width + 15) < (uint)w) Sse.Prefetch0(src + col0 + width + 15);
            if (src != null && inside)
            {
                src += col0;
                // width is 18 or 10: one or two vectors, then the last two floats
                Avx.Store(dst, Avx.LoadVector256(src));
                if (width > 10) Avx.Store(dst + 8, Avx.LoadVector256(src + 8));
                *(long*)(dst + width - 2) = *(long*)(src + width - 2);
                continue;
            }
            // The first and last tile of a row, and rows above or below the image.
            CopyClipped(src, col0, width, w, dst);
        }
    }

    /// <summary>
    /// dst[t] = row[col0 + t] for t &lt; width (at most 24) where the row exists and col0 + t lies
    /// in [0, w), else 0: all 24 floats of dst are zeroed, then the columns inside the row copied
    /// over them, 8 at a time. A segment at the image's edge (direct and Winograd kernels).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyClipped(float* row, int col0, int width, int w, float* dst)
    {
        Avx.Store(dst, Vector256<float>.Zero);
        Avx.Store(dst + 8, Vector256<float>.Zero);
        Avx.Store(dst + 16, Vector256<float>.Zero);
        if (row == null) return;
        int t0 = Math.Clamp(-col0, 0, width);
        int t1 = Math.Clamp(w - col0, t0, width);
        int t = t0;
        for (; t + 8 <= t1; t += 8) Avx.Store(dst + t, Avx.LoadVector256(row + col0 + t));
        for (; t < t1; t++) dst[t] = row[col0 + t];
    }

    /// <summary>
    /// One 6×16 tile: acc[r, j] = Σ over packed rows q &lt; pairs and taps v &lt; 3 of
    /// a[(q·3 + v)·6 + r] · seg[q·24 + j + v], then for r &lt; mr, j &lt; cols
    /// y[r·ldy + j] = acc + bias[r] on the first chunk (streamed, for a whole tile, when
    /// <paramref name="stream"/>), y += acc on later ones.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile16(float* a, float* seg, int pairs, float* y, long ldy, int mr, int cols, float* bias, bool first, bool stream)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        float* end = seg + pairs * SegmentStride;
        for (float* s = seg; s < end; s += SegmentStride)
        {
            GemmCpu.Step6x16(s, a, ref c00, ref c01, ref c10, ref c11, ref c20, ref c21, ref c30, ref c31, ref c40, ref c41, ref c50, ref c51);
            GemmCpu.Step6x16(s + 1, a + DirectMR, ref c00, ref c01, ref c10, ref c11, ref c20, ref c21, ref c30, ref c31, ref c40, ref c41, ref c50, ref c51);
            GemmCpu.Step6x16(s + 2, a + 2 * DirectMR, ref c00, ref c01, ref c10, ref c11, ref c20, ref c21, ref c30, ref c31, ref c40, ref c41, ref c50, ref c51);
            a += 3 * DirectMR;
        }
        if (mr == DirectMR && cols == DirectNR)
        {
            if (first)
            {
                StoreBias(y, c00, c01, bias, 0, stream);
                StoreBias(y + ldy, c10, c11, bias, 1, stream);
                StoreBias(y + 2 * ldy, c20, c21, bias, 2, stream);
                StoreBias(y + 3 * ldy, c30, c31, bias, 3, stream);
                StoreBias(y + 4 * ldy, c40, c41, bias, 4, stream);
                StoreBias(y + 5 * ldy, c50, c51, bias, 5, stream);
            }
            else
            {
                StoreAdd(y, c00, c01);
                StoreAdd(y + ldy, c10, c11);
                StoreAdd(y + 2 * ldy, c20, c21);
                StoreAdd(y + 3 * ldy, c30, c31);
                StoreAdd(y + 4 * ldy, c40, c41);
                StoreAdd(y + 5 * ldy, c50, c51);
            }
            return;
        }
        float* acc = stackalloc float[DirectMR * DirectNR];
        Avx.Store(acc, c00); Avx.Store(acc + 8, c01);
        Avx.Store(acc + 16, c10); Avx.Store(acc + 24, c11);
        Avx.Store(acc + 32, c20); Avx.Store(acc + 40, c21);
        Avx.Store(acc + 48, c30); Avx.Store(acc + 56, c31);
        Avx.Store(acc + 64, c40); Avx.Store(acc + 72, c41);
        Avx.Store(acc + 80, c50); Avx.Store(acc + 88, c51);
        StoreEdge(acc, DirectNR, y, ldy, mr, cols, bias, first);
    }

    /// <summary>
    /// As <see cref="Tile16"/> for a panel with at most 4 valid rows (the last panel when O is not
    /// a multiple of 6): rows 0..3 of the panel only, 8 accumulators.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x16(float* a, float* seg, int pairs, float* y, long ldy, int mr, int cols, float* bias, bool first)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default, c30 = default, c31 = default;
        float* end = seg + pairs * SegmentStride;
        for (float* s = seg; s < end; s += SegmentStride)
        {
            for (int v = 0; v < 3; v++)
            {
                var b0 = Avx.LoadVector256(s + v);
                var b1 = Avx.LoadVector256(s + v + 8);
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
                a += DirectMR;
            }
        }
        float* acc = stackalloc float[4 * DirectNR];
        Avx.Store(acc, c00); Avx.Store(acc + 8, c01);
        Avx.Store(acc + 16, c10); Avx.Store(acc + 24, c11);
        Avx.Store(acc + 32, c20); Avx.Store(acc + 40, c21);
        Avx.Store(acc + 48, c30); Avx.Store(acc + 56, c31);
        StoreEdge(acc, DirectNR, y, ldy, mr, cols, bias, first);
    }

    /// <summary>As <see cref="Tile16"/> for a tile of at most 8 columns (one vector).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile8(float* a, float* seg, int pairs, float* y, long ldy, int mr, int cols, float* bias, bool first)
    {
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
        for (int q = 0; q < pairs; q++)
        {
            float* s = seg + q * SegmentStride;
            for (int v = 0; v < 3; v++)
            {
                var b0 = Avx.LoadVector256(s + v);
                c0 = Fma.MultiplyAdd(Avx.BroadcastScalarToVector256(a), b0, c0);
                c1 = Fma.MultiplyAdd(Avx.BroadcastScalarToVector256(a + 1), b0, c1);
                c2 = Fma.MultiplyAdd(Avx.BroadcastScalarToVector256(a + 2), b0, c2);
                c3 = Fma.MultiplyAdd(Avx.BroadcastScalarToVector256(a + 3), b0, c3);
                c4 = Fma.MultiplyAdd(Avx.BroadcastScalarToVector256(a + 4), b0, c4);
                c5 = Fma.MultiplyAdd(Avx.BroadcastScalarToVector256(a + 5), b0, c5);
                a += DirectMR;
            }
        }
        float* acc = stackalloc float[DirectMR * 8];
        Avx.Store(acc, c0);
        Avx.Store(acc + 8, c1);
        Avx.Store(acc + 16, c2);
        Avx.Store(acc + 24, c3);
        Avx.Store(acc + 32, c4);
        Avx.Store(acc + 40, c5);
        StoreEdge(acc, 8, y, ldy, mr, cols, bias, first);
    }

    /// <summary>y[0..16) = (lo, hi) + bias[r], with non-temporal stores when <paramref name="stream"/> (y then 32-byte aligned).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreBias(float* y, Vector256<float> lo, Vector256<float> hi, float* bias, int r, bool stream)
    {
        var vb = bias == null ? Vector256<float>.Zero : Vector256.Create(bias[r]);
        if (stream)
        {
            Avx.StoreAlignedNonTemporal(y, lo + vb);
            Avx.StoreAlignedNonTemporal(y + 8, hi + vb);
            return;
        }
        Avx.Store(y, lo + vb);
        Avx.Store(y + 8, hi + vb);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreAdd(float* y, Vector256<float> lo, Vector256<float> hi)
    {
        Avx.Store(y, Avx.LoadVector256(y) + lo);
        Avx.Store(y + 8, Avx.LoadVector256(y + 8) + hi);
    }

    /// <summary>y[r·ldy + j] = acc[r·width + j] + bias[r] (first chunk) or y += acc, for r &lt; mr, j &lt; cols.</summary>
    private static void StoreEdge(float* acc, int width, float* y, long ldy, int mr, int cols, float* bias, bool first)
    {
        for (int r = 0; r < mr; r++)
        {
            float* src = acc + r * width, dst = y + r * ldy;
            if (first)
            {
                float b = bias == null ? 0f : bias[r];
                for (int j = 0; j < cols; j++) dst[j] = src[j] + b;
            }
            else
            {
                for (int j = 0; j < cols; j++) dst[j] += src[j];
            }
        }
    }

    /// <summary>
    /// Forward by the direct kernel (requires <see cref="UseDirect"/>): packs w (O × C·KH·3) into
    /// panels of 6 output channels, panel p holding a[(k)·6 + r] = w[p·6 + r, k] (rows past O zero),
    /// then runs <see cref="DirectJob"/> over the output rows.
    /// </summary>
    private static void ForwardDirect(float* x, float* w, float* bias, float* y, in Conv2dGeometry g)
    {
        int kdim = g.C * g.KH * 3;
        int panelCount = (g.O + DirectMR - 1) / DirectMR;
        float* panels = Aligned(ref t_directWeights, (long)panelCount * DirectMR * kdim);
        for (int p = 0; p < panelCount; p++)
        {
            float* d = panels + (long)p * DirectMR * kdim;
            for (int r = 0; r < DirectMR; r++)
            {
                int o = p * DirectMR + r;
                float* src = w + (long)o * kdim;
                if (o < g.O)
                {
                    for (int k = 0; k < kdim; k++) d[k * DirectMR + r] = src[k];
                }
                else
                {
                    for (int k = 0; k < kdim; k++) d[k * DirectMR + r] = 0f;
                }
            }
        }
        int rowsTotal = g.N * g.OH;
        int threads = Parallelism.Threads;
        // Few rows: split the output channels as well so every worker has several items.
        int oGroups = rowsTotal >= 4 * threads ? 1 : Math.Min(panelCount, (4 * threads + rowsTotal - 1) / rowsTotal);
        // Streamed only when y is written once: a single chunk of (c, u) rows, no partial sums.
        bool streaming = (long)g.N * g.O * g.OH * g.OW * sizeof(float) >= DirectStreamingBytes && g.C * g.KH <= DirectChunkRows;
        var job = new DirectJob(x, panels, bias, y, g, oGroups, streaming);
        long cost = (long)g.OW * kdim * DirectMR * ((panelCount + oGroups - 1) / oGroups);
        // Chunks of a few rows (16 per thread): when one worker falls behind, the other is left
        // at most one such chunk (about 1 ms for 64 channels at 150 × 200) to wait for.
        Parallelism.For(rowsTotal * oGroups, cost, job, static (j, start, end) => j.Run(start, end), DirectChunksPerThread);
    }
}
