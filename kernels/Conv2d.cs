// conv2d helpers around the tiled GEMM of kernels/Gemm.cs (groups = 1, NCHW float32):
// y[n, o, i, j] = bias[o] + Σ_{c,u,v} w[o, c, u, v] · x[n, c, i·sh − ph + u·dh, j·sw − pw + v·dw]
// (zero outside x), x (N, C, H, W), w (O, C, KH, KW), y (N, O, OH, OW). With kdim = C·KH·KW and
// P = OH·OW, the column matrix of image n is col_n (kdim × P), col_n[(c·KH + u)·KW + v, i·OW + j]
// = the x value above, and Y_n = W (O × kdim) · col_n, dW = Σ_n dY_n · col_nᵀ, dX_n =
// col2im(Wᵀ · dY_n), db[o] = Σ_{n,i,j} dY[n, o, i, j].
//
// Kernels (the launcher, src/GRcn.Kernels/Gpu/Conv2dGpu.cs, runs them on a chunk of images):
// - Im2Col: one thread per element of col for a chunk of images (laid out image by image,
//   col[((n·kdim) + k)·P + p]), grid-stride over the whole chunk; writes are consecutive per warp.
// - Col2Im: the input gradient as a GATHER: one thread per element of dX, summing (in fixed
//   order u, v) the column entries that came from that pixel; no two threads write one element.
// - FillBias: y[n, o, p] = bias[o], one thread per element (the GEMM then adds W·col with beta 1).
// - BiasGradient: one group of 256 threads per output channel (grid-stride over channels); each
//   thread sums its fixed share of (n, p) in double, then a shared-memory tree reduction in fixed
//   order gives db[o].
// Nothing uses atomics, so forward and backward are deterministic run to run on any device
// (GpuDevice.DeterministicBackward has nothing to select here).
using ILGPU;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

/// <summary>The sizes of one conv2d over a chunk of <see cref="Images"/> images (as <see cref="Conv2dGeometry"/>, blittable).</summary>
internal readonly record struct ConvShape(
    int Images, int C, int H, int W, int O, int KH, int KW, int OH, int OW,
    int StrideH, int StrideW, int PadH, int PadW, int DilationH, int DilationW)
{
    /// <summary>The sizes of <paramref name="g"/> for <paramref name="images"/> of its images.</summary>
    public static ConvShape Of(in Conv2dGeometry g, int images) =>
        new(images, g.C, g.H, g.W, g.O, g.KH, g.KW, g.OH, g.OW, g.StrideH, g.StrideW, g.PadH, g.PadW, g.DilationH, g.DilationW);
}

internal static class Conv2dKernels
{
    /// <summary>Threads per group of every conv2d helper kernel.</summary>
    public const int Threads = 256;

    /// <summary>col[((n·kdim) + k)·P + p] = x[n, c, i·sh − ph + u·dh, j·sw − pw + v·dw] (0 outside x), k = (c·KH + u)·KW + v, p = i·OW + j.</summary>
    [Kernel]
    public static void Im2Col(ConvShape s, ArrayView<float> x, ArrayView<float> col)
    {
        int kdim = s.C * s.KH * s.KW;
        long plane = (long)s.OH * s.OW;
        long total = (long)s.Images * kdim * plane;
        for (long e = (long)Grid.IdxX * Group.DimX + Group.IdxX; e < total; e += (long)Grid.DimX * Group.DimX)
        {
            long p = e % plane, rest = e / plane;
            int k = (int)(rest % kdim);
            long n = rest / kdim;
            int i = (int)(p / s.OW), j = (int)(p % s.OW);
            int v = k % s.KW, u = k / s.KW % s.KH, c = k / (s.KW * s.KH);
            int h = i * s.StrideH - s.PadH + u * s.DilationH;
            int w = j * s.StrideW - s.PadW + v * s.DilationW;
            col[e] = h >= 0 && h < s.H && w >= 0 && w < s.W ? x[((n * s.C + c) * s.H + h) * s.W + w] : 0f;
        }
    }

    /// <summary>dx[n, c, h, w] = Σ_{u,v} col[n, (c·KH + u)·KW + v, i·OW + j] over the (u, v) whose output (i, j) read x[n, c, h, w]; overwrites dx.</summary>
    [Kernel]
    public static void Col2Im(ConvShape s, ArrayView<float> col, ArrayView<float> dx)
    {
        int kdim = s.C * s.KH * s.KW;
        long plane = (long)s.OH * s.OW;
        long total = (long)s.Images * s.C * s.H * s.W;
        for (long e = (long)Grid.IdxX * Group.DimX + Group.IdxX; e < total; e += (long)Grid.DimX * Group.DimX)
        {
            int w = (int)(e % s.W);
            long rest = e / s.W;
            int h = (int)(rest % s.H);
            rest /= s.H;
            int c = (int)(rest % s.C);
            long n = rest / s.C;
            long colBase = (n * kdim + (long)c * s.KH * s.KW) * plane;
            float sum = 0f;
            for (int u = 0; u < s.KH; u++)
            {
                // Output row i reads input row h through tap u when i·sh = h + ph − u·dh.
                int th = h + s.PadH - u * s.DilationH;
                if (th < 0 || th % s.StrideH != 0) continue;
                int i = th / s.StrideH;
                if (i >= s.OH) continue;
                for (int v = 0; v < s.KW; v++)
                {
                    int tw = w + s.PadW - v * s.DilationW;
                    if (tw < 0 || tw % s.StrideW != 0) continue;
                    int j = tw / s.StrideW;
                    if (j >= s.OW) continue;
                    sum += col[colBase + (u * s.KW + v) * plane + (long)i * s.OW + j];
                }
            }
            dx[e] = sum;
        }
    }

    /// <summary>y[n, o, p] = bias[o] for the chunk's images.</summary>
    [Kernel]
    public static void FillBias(ConvShape s, ArrayView<float> bias, ArrayView<float> y)
    {
        long plane = (long)s.OH * s.OW;
        long total = (long)s.Images * s.O * plane;
        for (long e = (long)Grid.IdxX * Group.DimX + Group.IdxX; e < total; e += (long)Grid.DimX * Group.DimX)
            y[e] = bias[(int)(e / plane % s.O)];
    }

    /// <summary>db[o] = Σ_{n,p} dy[n, o, p] in a fixed order (double partial sums, fixed-shape tree); launch with <see cref="Threads"/> threads per group.</summary>
    [Kernel]
    public static void BiasGradient(ConvShape s, ArrayView<float> dy, ArrayView<float> db)
    {
        var partial = SharedMemory.Allocate<double>(Threads);
        int tid = Group.IdxX;
        long plane = (long)s.OH * s.OW;
        long count = s.Images * plane;
        for (int o = Grid.IdxX; o < s.O; o += Grid.DimX)
        {
            double sum = 0;
            // Thread t takes elements t, t + 256, ... of the (n, p) sequence: consecutive threads read consecutive p.
            for (long e = tid; e < count; e += Threads)
            {
                long n = e / plane, p = e % plane;
                sum += dy[(n * s.O + o) * plane + p];
            }
            partial[tid] = sum;
            Group.Barrier();
            for (int half = Threads / 2; half > 0; half /= 2)
            {
                if (tid < half) partial[tid] += partial[tid + half];
                Group.Barrier();
            }
            if (tid == 0) db[o] = (float)partial[0];
            Group.Barrier();
        }
    }
}
