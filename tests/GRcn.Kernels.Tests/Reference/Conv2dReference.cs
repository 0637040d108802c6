// Oracle for conv2d: the defining sums, written as direct loops in double precision.
namespace GRcn.Kernels.Tests.Reference;

/// <summary>Sizes and options of one convolution case.</summary>
public sealed record Conv2dCase(int N, int C, int H, int W, int O, int KH, int KW,
    int StrideH = 1, int StrideW = 1, int PadH = 0, int PadW = 0, int DilationH = 1, int DilationW = 1, bool Bias = true)
{
    public int OH => (H + 2 * PadH - DilationH * (KH - 1) - 1) / StrideH + 1;
    public int OW => (W + 2 * PadW - DilationW * (KW - 1) - 1) / StrideW + 1;
    public Conv2dOptions Options => new(StrideH, StrideW, PadH, PadW, DilationH, DilationW);
}

/// <summary>
/// y[n,o,i,j] = b[o] + Σ_{c,u,v} w[o,c,u,v]·x[n,c,i·sh−ph+u·dh, j·sw−pw+v·dw] (zero outside), and the
/// exact adjoints of that sum for dx, dw, db. Every result comes with the sum of absolute terms,
/// which bounds the float32 rounding error of any summation order.
/// </summary>
internal static class Conv2dReference
{
    public static (double[] Y, double[] Scale) Forward(Conv2dCase k, float[] x, float[] w, float[]? b)
    {
        int oh = k.OH, ow = k.OW;
        var y = new double[k.N * k.O * oh * ow];
        var scale = new double[y.Length];
        for (int n = 0; n < k.N; n++)
        for (int o = 0; o < k.O; o++)
        for (int i = 0; i < oh; i++)
        for (int j = 0; j < ow; j++)
        {
            double s = b is null ? 0 : b[o];
            double a = Math.Abs(s);
            for (int c = 0; c < k.C; c++)
            for (int u = 0; u < k.KH; u++)
            for (int v = 0; v < k.KW; v++)
            {
                int h = i * k.StrideH - k.PadH + u * k.DilationH;
                int q = j * k.StrideW - k.PadW + v * k.DilationW;
                if (h < 0 || h >= k.H || q < 0 || q >= k.W) continue;
                double t = (double)w[((o * k.C + c) * k.KH + u) * k.KW + v] * x[((n * k.C + c) * k.H + h) * k.W + q];
                s += t;
                a += Math.Abs(t);
            }
            int at = ((n * k.O + o) * oh + i) * ow + j;
            y[at] = s;
            scale[at] = a;
        }
        return (y, scale);
    }

    /// <summary>dx, dw, db (with their absolute-term sums) for upstream gradient dy (N, O, OH, OW).</summary>
    public static (double[] Dx, double[] DxScale, double[] Dw, double[] DwScale, double[] Db, double[] DbScale) Backward(
        Conv2dCase k, float[] dy, float[] x, float[] w)
    {
        int oh = k.OH, ow = k.OW;
        var dx = new double[k.N * k.C * k.H * k.W];
        var dxs = new double[dx.Length];
        var dw = new double[k.O * k.C * k.KH * k.KW];
        var dws = new double[dw.Length];
        var db = new double[k.O];
        var dbs = new double[k.O];
        for (int n = 0; n < k.N; n++)
        for (int o = 0; o < k.O; o++)
        for (int i = 0; i < oh; i++)
        for (int j = 0; j < ow; j++)
        {
            double g = dy[((n * k.O + o) * oh + i) * ow + j];
            db[o] += g;
            dbs[o] += Math.Abs(g);
            for (int c = 0; c < k.C; c++)
            for (int u = 0; u < k.KH; u++)
            for (int v = 0; v < k.KW; v++)
            {
                int h = i * k.StrideH - k.PadH + u * k.DilationH;
                int q = j * k.StrideW - k.PadW + v * k.DilationW;
                if (h < 0 || h >= k.H || q < 0 || q >= k.W) continue;
                int xi = ((n * k.C + c) * k.H + h) * k.W + q;
                int wi = ((o * k.C + c) * k.KH + u) * k.KW + v;
                dx[xi] += g * w[wi];
                dxs[xi] += Math.Abs(g * w[wi]);
                dw[wi] += g * x[xi];
                dws[wi] += Math.Abs(g * x[xi]);
            }
        }
        return (dx, dxs, dw, dws, db, dbs);
    }
}
