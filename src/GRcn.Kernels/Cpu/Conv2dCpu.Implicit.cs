// Implicit im2col for the conv2d GEMMs: packs blocks of the column matrix of one image (forward)
// or of its transpose (weight gradient) straight from x into GemmCpu's B-panel layout, so no
// column buffer is written or read.
// Called by GemmCpu's workers, each on its own strip of output positions (no sharing).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GRcn.Kernels.Cpu;

internal static unsafe partial class Conv2dCpu
{
    /// <summary>
    /// op(B) = col of one image (C·KH·KW × OH·OW): <c>col[(c·KH + u)·KW + v, oh·OW + ow]</c> =
    /// x[c, oh·sh − ph + u·dh, ow·sw − pw + v·dw], zero outside the input.
    /// </summary>
    private readonly struct ImplicitColumns(float* image, Conv2dGeometry g) : GemmCpu.IPackB
    {
        private readonly nint _x = (nint)image;

        /// <summary>
        /// Writes col[p0 + pp, j0 + q] to dst[(q / NR)·kc·NR + pp·NR + q % NR] for pp &lt; kc, q &lt; nc,
        /// and zeros for q in [nc, nc rounded up to NR).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Pack(int p0, int j0, int kc, int nc, float* dst)
        {
            const int NR = GemmCpu.NR;
            int kk = g.KH * g.KW;
            long panelStride = (long)kc * NR;
            int ohStart = j0 / g.OW, owStart = j0 % g.OW;
            for (int pp = 0; pp < kc; pp++)
            {
                int p = p0 + pp;
                int c = p / kk, u = p % kk / g.KW, v = p % g.KW;
                int offset = v * g.DilationW - g.PadW;
                var (lo, hi) = ValidColumns(offset, g.StrideW, g.W, g.OW);
                // Input row ih of plane c, shifted so that src[ow·sw] is x[c, ih, ow·sw + offset].
                float* plane = (float*)_x + (long)c * g.H * g.W + offset;
                float* d = dst + pp * NR;
                int oh = ohStart, ow = owStart;
                for (int q = 0; q < nc;)
                {
                    int run = Math.Min(g.OW - ow, nc - q);
                    int ih = oh * g.StrideH - g.PadH + u * g.DilationH;
                    if ((uint)ih >= (uint)g.H) Zeros(d, panelStride, q, run);
                    else RowRun(plane + (long)ih * g.W, ow, run, lo, hi, g.StrideW, d, panelStride, q);
                    q += run;
                    oh++;
                    ow = 0;
                }
                int padded = (nc + NR - 1) / NR * NR;
                if (padded > nc) Zeros(d, panelStride, nc, padded - nc);
            }
        }

        /// <summary>Packed positions q .. q+count get 0.</summary>
        private static void Zeros(float* d, long panelStride, int q, int count)
        {
            const int NR = GemmCpu.NR;
            while (count > 0)
            {
                int inPanel = q & (NR - 1);
                int seg = Math.Min(count, NR - inPanel);
                new Span<float>(d + (q / NR) * panelStride + inPanel, seg).Clear();
                q += seg;
                count -= seg;
            }
        }

        /// <summary>
        /// Packed positions q .. q+count get src[ow·sw] for output columns ow = ow0 .. ow0+count,
        /// zero where ow is outside the valid columns [lo, hi).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void RowRun(float* src, int ow0, int count, int lo, int hi, int sw, float* d, long panelStride, int q)
        {
            const int NR = GemmCpu.NR;
            while (count > 0)
            {
                int inPanel = q & (NR - 1);
                int seg = Math.Min(count, NR - inPanel);
                float* o = d + (q / NR) * panelStride + inPanel;
                if (sw == 1 && ow0 >= lo && ow0 + seg <= hi)
                {
                    float* s = src + ow0;
                    int t = 0;
                    for (; t + 8 <= seg; t += 8) Unsafe.WriteUnaligned(o + t, Unsafe.ReadUnaligned<Vector256<float>>(s + t));
                    for (; t < seg; t++) o[t] = s[t];
                }
                else
                {
                    for (int t = 0; t < seg; t++)
                    {
                        int col = ow0 + t;
                        o[t] = col >= lo && col < hi ? src[(long)col * sw] : 0f;
                    }
                }
                q += seg;
                ow0 += seg;
                count -= seg;
            }
        }
    }

    /// <summary>
    /// op(B) = colᵀ of one image (OH·OW × C·KH·KW), for dW = dY · colᵀ: op(B)[oh·OW + ow, (c·KH + u)·KW + v]
    /// = x[c, oh·sh − ph + u·dh, ow·sw − pw + v·dw], zero outside the input.
    /// </summary>
    private readonly struct ImplicitColumnsTransposed(float* image, Conv2dGeometry g) : GemmCpu.IPackB
    {
        private readonly nint _x = (nint)image;

        /// <summary>
        /// Writes op(B)[p0 + pp, j0 + q] to dst[(q / NR)·kc·NR + pp·NR + q % NR] for pp &lt; kc, q &lt; nc,
        /// and zeros for q in [nc, nc rounded up to NR).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Pack(int p0, int j0, int kc, int nc, float* dst)
        {
            const int NR = GemmCpu.NR;
            int kk = g.KH * g.KW;
            int ohStart = p0 / g.OW, owStart = p0 % g.OW;
            int padded = (nc + NR - 1) / NR * NR;
            for (int q = 0; q < padded; q++)
            {
                // Column q of the block: one (c, u, v), written down the panel with stride NR.
                float* d = dst + (q / NR) * (long)kc * NR + (q & (NR - 1));
                if (q >= nc)
                {
                    for (int pp = 0; pp < kc; pp++) d[pp * NR] = 0f;
                    continue;
                }
                int jj = j0 + q;
                int c = jj / kk, u = jj % kk / g.KW, v = jj % g.KW;
                int offset = v * g.DilationW - g.PadW;
                var (lo, hi) = ValidColumns(offset, g.StrideW, g.W, g.OW);
                float* plane = (float*)_x + (long)c * g.H * g.W + offset;
                int oh = ohStart, ow = owStart;
                for (int pp = 0; pp < kc;)
                {
                    int run = Math.Min(g.OW - ow, kc - pp);
                    int ih = oh * g.StrideH - g.PadH + u * g.DilationH;
                    float* o = d + pp * NR;
                    if ((uint)ih >= (uint)g.H)
                    {
                        for (int t = 0; t < run; t++) o[t * NR] = 0f;
                    }
                    else
                    {
                        float* src = plane + (long)ih * g.W;
                        int a = Math.Clamp(lo - ow, 0, run), b = Math.Clamp(hi - ow, a, run);
                        int t = 0;
                        for (; t < a; t++) o[t * NR] = 0f;
                        for (; t < b; t++) o[t * NR] = src[(long)(ow + t) * g.StrideW];
                        for (; t < run; t++) o[t * NR] = 0f;
                    }
                    pp += run;
                    oh++;
                    ow = 0;
                }
            }
        }
    }
}
