// conv2d on the CPU: forward is Winograd F(2×2, 3×3) (Conv2dCpu.Winograd.cs) for 3×3 stride-1
// kernels over at least 16 input and output channels, the direct kernel of Conv2dCpu.Direct.cs
// for other 3-wide stride-1 kernels over few channels, else one GEMM per image whose B panels are
// gathered straight from x (implicit im2col; a 1×1, stride-1, unpadded convolution multiplies the
// input plane directly);
// the weight gradient is one GEMM per image whose B panels are gathered from x the same way;
// the input gradient is, for stride 1, the forward convolution of dY with the flipped filters
// (same kernels, no column buffer), else GEMM + col2im.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace GRcn.Kernels.Cpu;

internal sealed unsafe partial class CpuBackend : IConv2dBackend
{
    public void Conv2dForward(Tensor x, Tensor weight, Tensor? bias, Tensor y, in Conv2dGeometry g) =>
        Conv2dCpu.Forward(x.Ptr<float>(), weight.Ptr<float>(), bias is null ? null : bias.Ptr<float>(), y.Ptr<float>(), g);

    public void Conv2dBackward(Tensor gradY, Tensor x, Tensor weight, Tensor? gradX, Tensor? gradWeight, Tensor? gradBias, in Conv2dGeometry g) =>
        Conv2dCpu.Backward(gradY.Ptr<float>(), x.Ptr<float>(), weight.Ptr<float>(),
            gradX is null ? null : gradX.Ptr<float>(),
            gradWeight is null ? null : gradWeight.Ptr<float>(),
            gradBias is null ? null : gradBias.Ptr<float>(), g);
}

/// <summary>2-D convolution (cross-correlation, groups = 1), forward and backward, on NCHW float32.</summary>
/// <remarks>
/// <para>
/// Forward: <c>y[n, o, i, j] = bias[o] + Σ_{c,u,v} w[o, c, u, v] · x[n, c, i·sh − ph + u·dh, j·sw − pw + v·dw]</c>
/// (zero outside the input), with x (N, C, H, W), w (O, C, KH, KW), y (N, O, OH, OW). Per image,
/// the column matrix col (C·KH·KW × OH·OW), <c>col[(c·KH + u)·KW + v, i·OW + j]</c> = the input value
/// above, turns the convolution into <c>Y_n (O × OH·OW) = W (O × C·KH·KW) · col</c>.
/// </para>
/// <para>
/// Backward: <c>dW = Σ_n dY_n · col_nᵀ</c>, <c>dX_n = col2im(Wᵀ · dY_n)</c> (col2im adds every column
/// entry back onto the input pixel it came from), <c>db[o] = Σ_{n,i,j} dY[n, o, i, j]</c> (summed in
/// double). Each requested gradient is overwritten; with N = 0 dW and db are zero. With stride 1
/// (and padding within the dilated kernel) dX is computed instead as the forward convolution of
/// dY with the flipped, transposed filters (<see cref="TransposedForward"/>), the same sums in
/// another order.
/// </para>
/// <para>
/// Forward and the weight gradient never build col: the GEMM's B-panel packing reads x with the
/// index arithmetic above (<see cref="ImplicitColumns"/>, <see cref="ImplicitColumnsTransposed"/>),
/// and the bias is added by the GEMM's first store (no fill pass over y). A 1×1 convolution with
/// stride 1 and no padding uses x_n itself as col. For a strided input gradient, Wᵀ · dY_n is computed
/// for a band of whole output rows at a time, at most <see cref="MaxColumnFloats"/> floats (but at
/// least one output row), into a per-thread buffer kept across calls, so memory stays bounded for
/// large images. Images run one after another; the parallelism is inside: the GEMMs split C into
/// one strip per worker, col2im and the bias gradient split the channels (each chunk owns whole
/// input planes, so no two write the same element).
/// </para>
/// </remarks>
internal static unsafe partial class Conv2dCpu
{
    /// <summary>Largest column buffer built at once (16 MiB of floats), unless one output row needs more.</summary>
    public const int MaxColumnFloats = 1 << 22;

    /// <summary>Test hook: a smaller band limit (in floats) for convolutions started on this thread; 0 keeps <see cref="MaxColumnFloats"/>.</summary>
    [ThreadStatic] internal static int ColumnLimitOverride;

    [ThreadStatic] private static float[]? t_col;

    public static void Forward(float* x, float* w, float* bias, float* y, in Conv2dGeometry g)
    {
        int kdim = g.C * g.KH * g.KW;
        long outPlane = (long)g.OH * g.OW;
        long inImage = (long)g.C * g.H * g.W;
        long outImage = g.O * outPlane;
        if (g.O == 0 || outPlane == 0) return;
        if (UseWinograd(g))
        {
            ForwardWinograd(x, w, bias, y, g);
            return;
        }
        if (UseDirect(g))
        {
            ForwardDirect(x, w, bias, y, g);
            return;
        }
        bool direct = IsPointwise(g);
        for (int n = 0; n < g.N; n++)
        {
            float* xn = x + n * inImage;
            float* yn = y + n * outImage;
            if (kdim == 0)
            {
                // No terms: y = bias (or 0).
                for (int o = 0; o < g.O; o++) new Span<float>(yn + o * outPlane, (int)outPlane).Fill(bias is null ? 0f : bias[o]);
            }
            else if (direct)
                GemmCpu.Multiply(false, g.O, (int)outPlane, kdim, 1f, w, kdim, new GemmCpu.MatrixB(false, xn, (int)outPlane), 0f, yn, (int)outPlane, bias);
            else
                GemmCpu.Multiply(false, g.O, (int)outPlane, kdim, 1f, w, kdim, new ImplicitColumns(xn, g), 0f, yn, (int)outPlane, bias);
        }
    }

    public static void Backward(float* gradY, float* x, float* w, float* gradX, float* gradW, float* gradBias, in Conv2dGeometry g)
    {
        int kdim = g.C * g.KH * g.KW;
        long outPlane = (long)g.OH * g.OW;
        long inImage = (long)g.C * g.H * g.W;
        long outImage = g.O * outPlane;
        if (gradBias is not null) BiasGradient(gradY, gradBias, g);
        if (gradW is not null && g.N == 0) new Span<float>(gradW, g.O * kdim).Clear();
        if (gradX is null && gradW is null) return;

        bool direct = IsPointwise(g);
        bool transposed = !direct && gradX is not null && HasTransposedForward(g);
        if (transposed)
        {
            // dX as the forward convolution of dY with the flipped, transposed filters (no column buffer).
            TransposedForward(gradY, w, gradX, g);
            gradX = null;
        }
        if (gradX is null && gradW is null) return;
        int band = BandRows(g, kdim);
        float* col = direct || gradX is null ? null : ColumnBuffer((long)kdim * band * g.OW);
        for (int n = 0; n < g.N; n++)
        {
            float* xn = x + n * inImage;
            float* dyn = gradY + n * outImage;
            float* dxn = gradX is null ? null : gradX + n * inImage;
            if (direct)
            {
                // dW (+)= dY_n (O × HW) · x_nᵀ;  dX_n = Wᵀ (C × O) · dY_n.
                if (gradW is not null)
                    GemmCpu.Multiply(false, true, g.O, kdim, (int)outPlane, 1f, dyn, (int)outPlane, xn, (int)outPlane, n == 0 ? 0f : 1f, gradW, kdim);
                if (dxn is not null)
                    GemmCpu.Multiply(true, false, kdim, (int)outPlane, g.O, 1f, w, kdim, dyn, (int)outPlane, 0f, dxn, (int)outPlane);
                continue;
            }
            if (gradW is not null)
            {
                // dW (+)= dY_n (O × OH·OW) · col_nᵀ, colᵀ gathered straight from x_n.
                GemmCpu.Multiply(false, g.O, kdim, (int)outPlane, 1f, dyn, (int)outPlane, new ImplicitColumnsTransposed(xn, g),
                    n == 0 ? 0f : 1f, gradW, kdim, null);
            }
            if (dxn is null) continue;
            new Span<float>(dxn, (int)inImage).Clear();
            for (int oh0 = 0; oh0 < g.OH; oh0 += band)
            {
                int oh1 = Math.Min(g.OH, oh0 + band);
                int len = (oh1 - oh0) * g.OW;
                float* dyBand = dyn + (long)oh0 * g.OW;
                GemmCpu.Multiply(true, false, kdim, len, g.O, 1f, w, kdim, dyBand, (int)outPlane, 0f, col, len);
                Col2ImAdd(col, g, oh0, oh1, dxn);
            }
        }
    }

    /// <summary>
    /// Whether dX is a stride-1 forward convolution of dY: stride 1 and padding at most the
    /// dilated kernel extent, so the transposed problem has padding ≥ 0.
    /// </summary>
    private static bool HasTransposedForward(in Conv2dGeometry g) =>
        g.StrideH == 1 && g.StrideW == 1 && g.PadH <= g.DilationH * (g.KH - 1) && g.PadW <= g.DilationW * (g.KW - 1);

    /// <summary>
    /// For stride 1, dX[n, c, ih, iw] = Σ_{o,u,v} w[o, c, u, v] · dY[n, o, ih + ph − u·dh, iw + pw − v·dw]
    /// is the forward convolution of dY (N, O, OH, OW) with w'[c, o, u', v'] = w[o, c, KH−1−u', KW−1−v']
    /// (C, O, KH, KW), padding (dh·(KH−1) − ph, dw·(KW−1) − pw), the same dilation, and output (N, C, H, W):
    /// u' = KH−1−u turns ih − ph' + u'·dh into ih + ph − u·dh. It runs on the forward kernels
    /// (direct or implicit im2col), so no column buffer is built and nothing is scattered back.
    /// </summary>
    private static void TransposedForward(float* gradY, float* w, float* gradX, in Conv2dGeometry g)
    {
        int taps = g.KH * g.KW;
        float* flipped = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(
            FlippedBuffer((long)g.O * g.C * taps)));
        for (int o = 0; o < g.O; o++)
        {
            for (int c = 0; c < g.C; c++)
            {
                float* src = w + ((long)o * g.C + c) * taps, dst = flipped + ((long)c * g.O + o) * taps;
                // tap (u, v) = u·KW + v goes to (KH−1−u)·KW + KW−1−v = taps − 1 − (u·KW + v)
                for (int t = 0; t < taps; t++) dst[taps - 1 - t] = src[t];
            }
        }
        var t2 = new Conv2dGeometry(g.N, g.O, g.OH, g.OW, g.C, g.KH, g.KW, g.H, g.W, 1, 1,
            g.DilationH * (g.KH - 1) - g.PadH, g.DilationW * (g.KW - 1) - g.PadW, g.DilationH, g.DilationW);
        Forward(gradY, flipped, null, gradX, t2);
    }

    [ThreadStatic] private static float[]? t_flipped;

    /// <summary>The per-thread pinned buffer of the flipped filters, grown when too small.</summary>
    private static float[] FlippedBuffer(long floats)
    {
        if (floats > Array.MaxLength)
            throw new InvalidOperationException($"conv2d filter buffer of {floats} floats is too large");
        if (t_flipped is null || t_flipped.Length < floats)
            t_flipped = GC.AllocateUninitializedArray<float>((int)floats, pinned: true);
        return t_flipped;
    }

    /// <summary>A 1×1 kernel with stride 1 and no padding: col is the input image itself.</summary>
    private static bool IsPointwise(in Conv2dGeometry g) =>
        g.KH == 1 && g.KW == 1 && g.StrideH == 1 && g.StrideW == 1 && g.PadH == 0 && g.PadW == 0;

    /// <summary>Output rows per column band: as many as fit in <see cref="MaxColumnFloats"/>, at least one.</summary>
    private static int BandRows(in Conv2dGeometry g, int kdim)
    {
        long perRow = (long)kdim * g.OW;
        long limit = ColumnLimitOverride > 0 ? ColumnLimitOverride : MaxColumnFloats;
        return (int)Math.Clamp(limit / perRow, 1, Math.Max(1, g.OH));
    }

    private static float* ColumnBuffer(long floats)
    {
        if (floats > Array.MaxLength - 8)
            throw new InvalidOperationException($"conv2d column buffer of {floats} floats is too large");
        var buffer = t_col;
        if (buffer is null || buffer.Length < floats)
            t_col = buffer = GC.AllocateUninitializedArray<float>((int)floats, pinned: true);
        return (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
    }

    /// <summary>Floor division for a positive divisor.</summary>
    private static int FloorDiv(int a, int b) => a >= 0 ? a / b : -((-a + b - 1) / b);

    /// <summary>
    /// The output columns [lo, hi) whose input column <c>j·sw + offset</c> lies in [0, W).
    /// </summary>
    private static (int Lo, int Hi) ValidColumns(int offset, int stride, int width, int outWidth)
    {
        int lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
        int hi = Math.Min(outWidth, FloorDiv(width - 1 - offset, stride) + 1);
        lo = Math.Min(lo, outWidth);
        return (lo, Math.Max(lo, hi));
    }

    /// <summary>Adds col (C·KH·KW × (oh1 − oh0)·OW) back onto the input planes it was gathered from.</summary>
    private static void Col2ImAdd(float* col, in Conv2dGeometry geometry, int oh0, int oh1, float* image)
    {
        var g = geometry;
        Parallelism.For(g.C, (long)g.KH * g.KW * (oh1 - oh0) * g.OW, (ci: (nint)col, g, oh0, oh1, xi: (nint)image),
            static (s, start, end) => Col2ImPlanes((float*)s.ci, s.g, s.oh0, s.oh1, (float*)s.xi, start, end));
    }

    /// <summary>Input planes [start, end): each adds back the KH·KW rows of col that were gathered from it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Col2ImPlanes(float* col, in Conv2dGeometry g, int oh0, int oh1, float* image, int start, int end)
    {
        int len = (oh1 - oh0) * g.OW;
        for (int c = start; c < end; c++)
        {
            float* plane = image + (long)c * g.H * g.W;
            for (int u = 0; u < g.KH; u++)
            {
                for (int v = 0; v < g.KW; v++)
                {
                    float* src = col + (long)((c * g.KH + u) * g.KW + v) * len;
                    int offset = v * g.DilationW - g.PadW;
                    var (lo, hi) = ValidColumns(offset, g.StrideW, g.W, g.OW);
                    for (int oh = oh0; oh < oh1; oh++, src += g.OW)
                    {
                        int ih = oh * g.StrideH - g.PadH + u * g.DilationH;
                        if ((uint)ih >= (uint)g.H) continue;
                        float* dst = plane + (long)ih * g.W + offset;
                        if (g.StrideW == 1)
                        {
                            for (int j = lo; j < hi; j++) dst[j] += src[j];
                        }
                        else
                        {
                            for (int j = lo; j < hi; j++) dst[(long)j * g.StrideW] += src[j];
                        }
                    }
                }
            }
        }
    }

    /// <summary>db[o] = Σ over images and output positions of dY[n, o, :, :], accumulated in double.</summary>
    private static void BiasGradient(float* gradY, float* gradBias, in Conv2dGeometry g)
    {
        long plane = (long)g.OH * g.OW;
        int images = g.N, channels = g.O;
        Parallelism.For(channels, images * plane, (dy: (nint)gradY, db: (nint)gradBias, images, channels, plane),
            static (s, start, end) => BiasSums((float*)s.dy, (float*)s.db, s.images, s.channels, s.plane, start, end));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BiasSums(float* gradY, float* gradBias, int images, int channels, long plane, int start, int end)
    {
        for (int o = start; o < end; o++)
        {
            double sum = 0;
            for (int n = 0; n < images; n++)
            {
                float* p = gradY + ((long)n * channels + o) * plane;
                for (long i = 0; i < plane; i++) sum += p[i];
            }
            gradBias[o] = (float)sum;
        }
    }
}
