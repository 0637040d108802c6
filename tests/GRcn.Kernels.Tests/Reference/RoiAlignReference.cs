// Scalar oracle for roi_align: torchvision's CPU kernel (csrc/ops/cpu/roi_align_kernel.cpp,
// roi_align_common.h) with T = double, one sample point at a time, no precomputation.
namespace GRcn.Kernels.Tests;

/// <summary>Plain-loop torchvision.ops.roi_align in double precision.</summary>
internal static class RoiAlignReference
{
    /// <summary>Sample-point layout of one RoI: start, bin size and grid per axis.</summary>
    private static (double StartH, double StartW, double BinH, double BinW, int GridH, int GridW) Geometry(
        float[] rois, int r, int ph, int pw, double scale, int sampling, bool aligned)
    {
        double offset = aligned ? 0.5 : 0.0;
        double startW = rois[r * 5 + 1] * scale - offset;
        double startH = rois[r * 5 + 2] * scale - offset;
        double endW = rois[r * 5 + 3] * scale - offset;
        double endH = rois[r * 5 + 4] * scale - offset;
        double roiW = endW - startW, roiH = endH - startH;
        if (!aligned)
        {
            roiW = Math.Max(roiW, 1.0);
            roiH = Math.Max(roiH, 1.0);
        }
        int gridH = sampling > 0 ? sampling : (int)Math.Ceiling(roiH / ph);
        int gridW = sampling > 0 ? sampling : (int)Math.Ceiling(roiW / pw);
        return (startH, startW, roiH / ph, roiW / pw, gridH, gridW);
    }

    /// <summary>
    /// Bilinear neighbours and weights of the point (y, x) in an h × w plane; null when the
    /// point lies outside [−1, h] × [−1, w].
    /// </summary>
    private static (int[] Index, double[] Weight)? Bilinear(double y, double x, int h, int w)
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
        double ly = y - yLow, lx = x - xLow, hy = 1 - ly, hx = 1 - lx;
        return ([yLow * w + xLow, yLow * w + xHigh, yHigh * w + xLow, yHigh * w + xHigh],
                [hy * hx, hy * lx, ly * hx, ly * lx]);
    }

    private static double SampleY(double start, double bin, int i, int iy, int grid) => start + i * bin + (iy + 0.5) * bin / grid;

    /// <summary>y (K, C, ph, pw), flattened, for x (N, C, H, W) and rois (K, 5).</summary>
    public static double[] Forward(float[] x, int n, int c, int h, int w, float[] rois, int ph, int pw, double scale, int sampling, bool aligned)
    {
        int k = rois.Length / 5;
        var y = new double[k * c * ph * pw];
        for (int r = 0; r < k; r++)
        {
            int b = (int)rois[r * 5];
            var g = Geometry(rois, r, ph, pw, scale, sampling, aligned);
            double count = Math.Max(g.GridH * g.GridW, 1);
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
                                    sum += wt[0] * x[plane + idx[0]] + wt[1] * x[plane + idx[1]] + wt[2] * x[plane + idx[2]] + wt[3] * x[plane + idx[3]];
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
            double count = g.GridH * g.GridW;
            for (int ch = 0; ch < c; ch++)
            {
                int plane = (b * c + ch) * h * w;
                for (int i = 0; i < ph; i++)
                {
                    for (int j = 0; j < pw; j++)
                    {
                        double gy = gradY[((r * c + ch) * ph + i) * pw + j];
                        for (int iy = 0; iy < g.GridH; iy++)
                        {
                            for (int ix = 0; ix < g.GridW; ix++)
                            {
                                var p = Bilinear(SampleY(g.StartH, g.BinH, i, iy, g.GridH), SampleY(g.StartW, g.BinW, j, ix, g.GridW), h, w);
                                if (p is null) continue;
                                var (idx, wt) = p.Value;
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
