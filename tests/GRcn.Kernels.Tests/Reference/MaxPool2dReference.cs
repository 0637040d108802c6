// Oracle for max_pool2d with indices: PyTorch CPU's definition, window element by window element.
namespace GRcn.Kernels.Tests.Reference;

/// <summary>Sizes and options of one pooling case.</summary>
public sealed record MaxPool2dCase(int N, int C, int H, int W, int KH, int KW, int StrideH, int StrideW, int PadH = 0, int PadW = 0, bool CeilMode = false)
{
    public MaxPool2dOptions Options => new(KH, KW, StrideH, StrideW, PadH, PadW, CeilMode);
    public int OH => MaxPool2dReference.OutputSize(H, KH, StrideH, PadH, CeilMode);
    public int OW => MaxPool2dReference.OutputSize(W, KW, StrideW, PadW, CeilMode);
}

/// <summary>
/// For each output (i, j) of each plane: visit window offsets (u, v) in row-major order, skip those
/// outside the input; the winner starts as (−inf, first in-bounds element) and a value takes over
/// when it is greater or NaN. Backward adds each dy to its winner.
/// </summary>
internal static class MaxPool2dReference
{
    /// <summary>PyTorch's pooling_output_shape with dilation 1.</summary>
    public static int OutputSize(int input, int kernel, int stride, int pad, bool ceil)
    {
        double raw = (double)(input + 2 * pad - kernel) / stride;
        int size = (int)(ceil ? Math.Ceiling(raw) : Math.Floor(raw)) + 1;
        if (ceil && (size - 1) * stride >= input + pad) size--;
        return size;
    }

    public static (float[] Y, long[] Index) Forward(MaxPool2dCase k, float[] x)
    {
        int oh = k.OH, ow = k.OW;
        var y = new float[k.N * k.C * oh * ow];
        var index = new long[y.Length];
        for (int p = 0; p < k.N * k.C; p++)
        for (int i = 0; i < oh; i++)
        for (int j = 0; j < ow; j++)
        {
            float best = float.NegativeInfinity;
            long at = -1;
            for (int u = 0; u < k.KH; u++)
            for (int v = 0; v < k.KW; v++)
            {
                int h = i * k.StrideH - k.PadH + u, w = j * k.StrideW - k.PadW + v;
                if (h < 0 || h >= k.H || w < 0 || w >= k.W) continue;
                long flat = (long)h * k.W + w;
                if (at < 0) at = flat;
                float val = x[p * k.H * k.W + flat];
                if (val > best || float.IsNaN(val))
                {
                    best = val;
                    at = flat;
                }
            }
            int o = (p * oh + i) * ow + j;
            y[o] = best;
            index[o] = at;
        }
        return (y, index);
    }

    public static double[] Backward(MaxPool2dCase k, float[] dy, long[] index)
    {
        var dx = new double[k.N * k.C * k.H * k.W];
        int plane = k.OH * k.OW;
        for (int o = 0; o < dy.Length; o++) dx[o / plane * k.H * k.W + index[o]] += dy[o];
        return dx;
    }
}
