// conv2d on a GPU device: im2col + the tiled GEMM (kernels/Gemm.cs), with the helpers of
// kernels/Conv2d.cs. Forward per chunk of images: col = im2col(x), Y_n = W·col_n as one batched
// GEMM over the chunk (bias pre-filled into y, then beta = 1). A 1×1, stride-1, unpadded
// convolution multiplies x directly (no column buffer, one batched GEMM over all images).
// Backward: dW = Σ_n dY_n·col_nᵀ, one GEMM per image in image order accumulating with beta = 1
// (deterministic); dX: col = Wᵀ·dY_n (batched over the chunk) then the col2im gather; db by a
// fixed-order reduction. No atomics anywhere: results are bit-identical run to run.
// The column buffer is a scratch tensor from the device's caching allocator holding whole
// images, at most MaxColumnFloats (256 MiB) unless a single image needs more.
using ILGPU;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

internal sealed partial class GpuBackend : IConv2dBackend
{
    /// <summary>Largest column buffer (floats) built at once, unless one image needs more.</summary>
    internal const long ConvMaxColumnFloats = 1L << 26;

    /// <summary>Test hook: a smaller column-buffer limit in floats (0: <see cref="ConvMaxColumnFloats"/>).</summary>
    internal long ConvColumnLimitOverride { get; set; }

    private Action<KernelConfig, ConvShape, ArrayView<float>, ArrayView<float>>? _convIm2Col, _convCol2Im, _convFillBias, _convBiasGradient;

    public void Conv2dForward(Tensor x, Tensor weight, Tensor? bias, Tensor y, in Conv2dGeometry g)
    {
        if (g.N == 0) return;
        int kdim = g.C * g.KH * g.KW;
        int plane = ConvPlane(g);
        long inImage = (long)g.C * g.H * g.W, outImage = (long)g.O * plane;
        ArrayView<float> xv = x.Floats(), wv = weight.Floats(), yv = y.Floats();
        float beta = 0f;
        if (bias is not null)
        {
            ConvLaunch(ref _convFillBias, "conv2d_fill_bias", Conv2dKernels.FillBias, (long)g.N * outImage, ConvShape.Of(g, g.N), bias.Floats(), yv);
            beta = 1f;
        }
        // Y_n (O × P) = W (O × kdim) · B_n (kdim × P), B_n = x_n (pointwise) or col_n.
        var gemm = new GemmShape(g.O, plane, kdim, 0, 0, 1f, beta, Lda: kdim, Ldb: plane, Ldc: plane,
            StrideA: 0, StrideB: (long)kdim * plane, StrideC: outImage);
        if (IsPointwiseConv(g))
        {
            Gemm(gemm, wv, xv, yv, g.N);
            return;
        }
        int chunk = ConvChunk(g, kdim, plane);
        using var col = Tensor.Empty(Device, DataType.Float32, chunk, kdim, plane);
        var cv = col.Floats();
        for (int n0 = 0; n0 < g.N; n0 += chunk)
        {
            int count = Math.Min(chunk, g.N - n0);
            ConvLaunch(ref _convIm2Col, "conv2d_im2col", Conv2dKernels.Im2Col, (long)count * kdim * plane, ConvShape.Of(g, count),
                xv.SubView(n0 * inImage, count * inImage), cv);
            Gemm(gemm, wv, cv, yv.SubView(n0 * outImage, count * outImage), count);
        }
    }

    public void Conv2dBackward(Tensor gradY, Tensor x, Tensor weight, Tensor? gradX, Tensor? gradWeight, Tensor? gradBias, in Conv2dGeometry g)
    {
        int kdim = g.C * g.KH * g.KW;
        int plane = ConvPlane(g);
        long inImage = (long)g.C * g.H * g.W, outImage = (long)g.O * plane;
        ArrayView<float> dyv = gradY.Floats(), xv = x.Floats(), wv = weight.Floats();
        if (gradBias is not null)
        {
            var k = Kernel(ref _convBiasGradient, "conv2d_bias_gradient",
                acc => acc.LoadStreamKernel<ConvShape, ArrayView<float>, ArrayView<float>>(Conv2dKernels.BiasGradient));
            k(new KernelConfig(Math.Min(g.O, 1 << 16), Conv2dKernels.Threads), ConvShape.Of(g, g.N), dyv, gradBias.Floats());
        }
        if (gradWeight is not null && g.N == 0) Fill(gradWeight.Floats(), 0f);
        if (g.N == 0 || (gradX is null && gradWeight is null)) return;

        // dW (O × kdim) (+)= dY_n (O × P) · B_nᵀ with B_n = x_n (pointwise) or col_n (kdim × P), image by image.
        var weightGemm = new GemmShape(g.O, kdim, plane, 0, 1, 1f, 0f, Lda: plane, Ldb: plane, Ldc: kdim, 0, 0, 0);
        // col_n (kdim × P) = Wᵀ (kdim × O) · dY_n (O × P), batched over images (into dX directly when pointwise).
        var inputGemm = new GemmShape(kdim, plane, g.O, 1, 0, 1f, 0f, Lda: kdim, Ldb: plane, Ldc: plane,
            StrideA: 0, StrideB: outImage, StrideC: (long)kdim * plane);
        if (IsPointwiseConv(g))
        {
            if (gradWeight is not null)
            {
                var dwv = gradWeight.Floats();
                for (int n = 0; n < g.N; n++)
                    Gemm(weightGemm with { Beta = n == 0 ? 0f : 1f }, dyv.SubView(n * outImage, outImage), xv.SubView(n * inImage, inImage), dwv, 1);
            }
            if (gradX is not null) Gemm(inputGemm, wv, dyv, gradX.Floats(), g.N);
            return;
        }
        int chunk = ConvChunk(g, kdim, plane);
        using var col = Tensor.Empty(Device, DataType.Float32, chunk, kdim, plane);
        var cv = col.Floats();
        long colImage = (long)kdim * plane;
        for (int n0 = 0; n0 < g.N; n0 += chunk)
        {
            int count = Math.Min(chunk, g.N - n0);
            var shape = ConvShape.Of(g, count);
            if (gradWeight is not null)
            {
                ConvLaunch(ref _convIm2Col, "conv2d_im2col", Conv2dKernels.Im2Col, count * colImage, shape,
                    xv.SubView(n0 * inImage, count * inImage), cv);
                var dwv = gradWeight.Floats();
                for (int i = 0; i < count; i++)
                    Gemm(weightGemm with { Beta = n0 + i == 0 ? 0f : 1f }, dyv.SubView((n0 + i) * outImage, outImage),
                        cv.SubView(i * colImage, colImage), dwv, 1);
            }
            if (gradX is not null)
            {
                // The stream runs this after the weight GEMMs above have read col.
                Gemm(inputGemm, wv, dyv.SubView(n0 * outImage, count * outImage), cv, count);
                ConvLaunch(ref _convCol2Im, "conv2d_col2im", Conv2dKernels.Col2Im, count * inImage, shape,
                    cv, gradX.Floats().SubView(n0 * inImage, count * inImage));
            }
        }
    }

    /// <summary>A 1×1 kernel with stride 1 and no padding: col_n is x_n itself.</summary>
    private static bool IsPointwiseConv(in Conv2dGeometry g) =>
        g.KH == 1 && g.KW == 1 && g.StrideH == 1 && g.StrideW == 1 && g.PadH == 0 && g.PadW == 0;

    /// <summary>OH·OW, which the GEMMs take as an int.</summary>
    private static int ConvPlane(in Conv2dGeometry g)
    {
        long plane = (long)g.OH * g.OW;
        if (plane > int.MaxValue) throw new NotSupportedException($"conv2d output planes of {g.OH}×{g.OW} exceed {int.MaxValue} elements");
        return (int)plane;
    }

    /// <summary>Images per column buffer: as many as fit the limit, at least one, at most N.</summary>
    private int ConvChunk(in Conv2dGeometry g, int kdim, int plane)
    {
        long limit = ConvColumnLimitOverride > 0 ? ConvColumnLimitOverride : ConvMaxColumnFloats;
        return (int)Math.Clamp(limit / ((long)kdim * plane), 1, g.N);
    }

    /// <summary>Launches a grid-stride helper kernel of kernels/Conv2d.cs over <paramref name="count"/> elements.</summary>
    private void ConvLaunch(ref Action<KernelConfig, ConvShape, ArrayView<float>, ArrayView<float>>? slot, string name,
        Action<ConvShape, ArrayView<float>, ArrayView<float>> method, long count, ConvShape s, ArrayView<float> input, ArrayView<float> output)
    {
        if (count == 0) return;
        var k = Kernel(ref slot, name, acc => acc.LoadStreamKernel(method));
        // Grid-stride loops: enough groups to fill any GPU, not one per element.
        int groups = (int)Math.Min((count + Conv2dKernels.Threads - 1) / Conv2dKernels.Threads, 1 << 16);
        k(new KernelConfig(groups, Conv2dKernels.Threads), s, input, output);
    }
}
