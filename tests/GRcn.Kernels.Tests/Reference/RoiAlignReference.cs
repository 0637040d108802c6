// Scalar oracle for roi_align: torchvision's CPU kernel (csrc/ops/cpu/roi_align_kernel.cpp,
// roi_align_common.h) with T = float, the path torchvision takes for float32 tensors: RoI
// geometry, sample positions and bilinear weights in float, expression by expression; the
// sums of weighted values are kept in double (the oracle's accumulation, not a choice).
namespace GRcn.Kernels.Tests;

/// <summary>Plain-loop torchvision.ops.roi_align for float32 tensors.</summary>
internal static class RoiAlignReference
{
    /// <summary>Sample-point layout of one RoI: start, bin size and grid per axis, in float.</summary>
    private static (float StartH, float StartW, float BinH, float BinW, int GridH, int GridW) Geometry(
        float[] rois, int r, int ph, int pw, double scale, int sampling, bool aligned)
    {
        float s = (float)scale; // the kernel's `const T& spatial_scale`
        float offset = aligned ? 0.5f : 0f;
        float startW = rois[r * 5 + 1] * s - offset;
        float startH = rois[r * 5 + 2] * s - offset;
        float endW = rois[r * 5 + 3] * s - offset;
        float endH = rois[r * 5 + 4] * s - offset;
        float roiW = endW - startW, roiH = endH - startH;
        if (!aligned)
        {
            roiW = MathF.Max(roiW, 1f);
            roiH = MathF.Max(roiH, 1f);
        }
        int gridH = sampling > 0 ? sampling : (int)MathF.Ceiling(roiH / (float)ph);
        int gridW = sampling > 0 ? sampling : (int)MathF.Ceiling(roiW / (float)pw);
        return (startH, startW, roiH / (float)ph, roiW / (float)pw, gridH, gridW);
    }

    /// <summary>
    /// Bilinear neighbours and weights of the point (y, x) in an h × w plane; null when the
    /// point lies outside [−1, h] × [−1, w].
    /// </summary>
    private static (int[] Index, float[] Weight)? Bilinear(float y, float x, int h, int w)
    {
        if (y < -1.0 || y > h || x < -1.0 || x > w) return null;
        if (y <= 0) y = 0;
        if (x <= 0) x = 0;
        int yLow = (int)y, xLow = (int)x, yHigh, xHigh;
        if (yLow >= h - 1)
        {
            yHigh = yLow = h - 1;
            y = yLow;
        }
        else yHigh = yLow + 1;
        if (xLow >= w - 1)
        {
            xHigh = xLow = w - 1;
            x = xLow;
        }
        else xHigh = xLow + 1;
        float ly = y - yLow, lx = x - xLow, hy = (float)(1.0 - ly), hx = (float)(1.0 - lx);
        return ([yLow * w + xLow, yLow * w + xHigh, yHigh * w + xLow, yHigh * w + xHigh],
                [hy * hx, hy * lx, ly * hx, ly * lx]);
    }

    /// <summary>roi_start + ph * bin_size + static_cast&lt;T&gt;(iy + .5f) * bin_size / static_cast&lt;T&gt;(grid), in float.</summary>
    private static float SampleY(float start, float bin, int i, int iy, int grid) =>
        start + (float)i * bin + (float)(iy + 0.5f) * bin / (float)grid;

    /// <summary>y (K, C, ph, pw), flattened, for x (N, C, H, W) and rois (K, 5).</summary>
    public static double[] Forward(float[] x, int n, int c, int h, int w, float[] rois, int ph, int pw, double scale, int sampling, bool aligned)
    {
        int k = rois.Length / 5;
        var y = new double[k * c * ph * pw];
        for (int r = 0; r < k; r++)
        {
            int b = (int)rois[r * 5];
            var g = Geometry(rois, r, ph, pw, scale, sampling, aligned);
            float count = Math.Max(g.GridH * g.GridW, 1);
            for (int ch = 0; ch < c; ch++)
            {
                int plane = (b * c + ch) * h * w;
                for (int i = 0; i < ph; i++)
                {
                    for (int j = 0; j < pw; j++)
                    {
                        double sum = 0;
                        for (int iy = 0; iy < g.GridH; iy++)
                        {
                            for (int ix = 0; ix < g.GridW; ix++)
                            {
                                var p = Bilinear(SampleY(g.StartH, g.BinH, i, iy, g.GridH), SampleY(g.StartW, g.BinW, j, ix, g.GridW), h, w);
                                // The reference stores an outside point as four zero weights on cell 0,
                                // so it still adds 0 · x[0] (NaN when that cell is not finite).
                                if (p is null) sum += 4 * (0.0 * x[plane]);
                                else
                                {
                                    var (idx, wt) = p.Value;
                                    sum += (double)wt[0] * x[plane + idx[0]] + (double)wt[1] * x[plane + idx[1]]
                                         + (double)wt[2] * x[plane + idx[2]] + (double)wt[3] * x[plane + idx[3]];
                                }
                            }
                        }
                        y[((r * c + ch) * ph + i) * pw + j] = sum / count;
                    }
                }
            }
        }
        return y;
    }

    /// <summary>gradX (N, C, H, W): each inside sample point adds gradY · w / (grid_h · grid_w) to its four neighbours.</summary>
    public static double[] Backward(float[] gradY, float[] rois, int n, int c, int h, int w, int ph, int pw, double scale, int sampling, bool aligned)
    {
        var gx = new double[n * c * h * w];
        int k = rois.Length / 5;
        for (int r = 0; r < k; r++)
        {
            int b = (int)rois[r * 5];
            var g = Geometry(rois, r, ph, pw, scale, sampling, aligned);
            float count = g.GridH * g.GridW;
            for (int ch = 0; ch < c; ch++)
            {
                int plane = (b * c + ch) * h * w;
                for (int i = 0; i < ph; i++)
                {
                    for (int j = 0; j < pw; j++)
                    {
                        float gy = gradY[((r * c + ch) * ph + i) * pw + j];
                        for (int iy = 0; iy < g.GridH; iy++)
                        {
                            for (int ix = 0; ix < g.GridW; ix++)
                            {
                                var p = Bilinear(SampleY(g.StartH, g.BinH, i, iy, g.GridH), SampleY(g.StartW, g.BinW, j, ix, g.GridW), h, w);
                                if (p is null) continue;
                                var (idx, wt) = p.Value;
                                // grad_output_this_bin * w / count, in float as the reference; summed in double.
                                for (int q = 0; q < 4; q++) gx[plane + idx[q]] += gy * wt[q] / count;
                            }
                        }
                    }
                }
            }
        }
        return gx;
    }
}
