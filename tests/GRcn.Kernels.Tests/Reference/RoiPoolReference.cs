// Scalar oracle for roi_pool: a line-by-line transcription of torchvision's CPU kernel
// (csrc/ops/cpu/roi_pool_kernel.cpp) with T = float, the path torchvision takes for float32
// tensors: spatial_scale, the scaled coordinates, bin sizes and bin edges are float.
namespace GRcn.Kernels.Tests;

/// <summary>Plain-loop torchvision.ops.roi_pool for float32 tensors.</summary>
internal static class RoiPoolReference
{
    /// <summary>C <c>round</c> of a float: to the nearest integer, halves away from zero.</summary>
    public static int CRound(float v)
    {
        float t = MathF.Truncate(v);
        if (MathF.Abs(v - t) >= 0.5f) t += MathF.Sign(v);
        return (int)t;
    }

    /// <summary>y and argmax (K, C, ph, pw), flattened, for x (N, C, H, W) and rois (K, 5).</summary>
    public static (double[] Y, long[] Argmax) Forward(float[] x, int n, int c, int h, int w, float[] rois, int ph, int pw, double scale)
    {
        int k = rois.Length / 5;
        var y = new double[k * c * ph * pw];
        var argmax = new long[y.Length];
        float s = (float)scale; // the kernel's `const T spatial_scale`
        for (int r = 0; r < k; r++)
        {
            int b = (int)rois[r * 5];
            int startW = CRound(rois[r * 5 + 1] * s);
            int startH = CRound(rois[r * 5 + 2] * s);
            int endW = CRound(rois[r * 5 + 3] * s);
            int endH = CRound(rois[r * 5 + 4] * s);
            int roiW = Math.Max(endW - startW + 1, 1);
            int roiH = Math.Max(endH - startH + 1, 1);
            float binH = (float)roiH / (float)ph;
            float binW = (float)roiW / (float)pw;
            for (int i = 0; i < ph; i++)
            {
                for (int j = 0; j < pw; j++)
                {
                    int hs = Math.Min(Math.Max((int)MathF.Floor((float)i * binH) + startH, 0), h);
                    int he = Math.Min(Math.Max((int)MathF.Ceiling((float)(i + 1) * binH) + startH, 0), h);
                    int ws = Math.Min(Math.Max((int)MathF.Floor((float)j * binW) + startW, 0), w);
                    int we = Math.Min(Math.Max((int)MathF.Ceiling((float)(j + 1) * binW) + startW, 0), w);
                    bool empty = he <= hs || we <= ws;
                    for (int ch = 0; ch < c; ch++)
                    {
                        double max = empty ? 0 : -(double)float.MaxValue;
                        long arg = -1;
                        for (int yy = hs; yy < he; yy++)
                        {
                            for (int xx = ws; xx < we; xx++)
                            {
                                double v = x[((b * c + ch) * h + yy) * w + xx];
                                if (v > max)
                                {
                                    max = v;
                                    arg = yy * w + xx;
                                }
                            }
                        }
                        int o = ((r * c + ch) * ph + i) * pw + j;
                        y[o] = max;
                        argmax[o] = arg;
                    }
                }
            }
        }
        return (y, argmax);
    }

    /// <summary>gradX (N, C, H, W): zero plus gradY added at each bin's argmax (skipping −1).</summary>
    public static double[] Backward(float[] gradY, long[] argmax, float[] rois, int n, int c, int h, int w, int ph, int pw)
    {
        var gx = new double[n * c * h * w];
        int k = rois.Length / 5;
        for (int r = 0; r < k; r++)
        {
            int b = (int)rois[r * 5];
            for (int ch = 0; ch < c; ch++)
            {
                for (int bin = 0; bin < ph * pw; bin++)
                {
                    int o = (r * c + ch) * ph * pw + bin;
                    if (argmax[o] != -1) gx[(b * c + ch) * h * w + argmax[o]] += gradY[o];
                }
            }
        }
        return gx;
    }
}
