// max_pool2d on the CPU: a window scan per output element with PyTorch's winner rule, and a
// scatter-add of the output gradient to the winners; whole 2×2 windows with stride 2 or 1 (no
// padding) take the vectorised paths of MaxPool2dCpu.Window2.cs, which give identical results.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace GRcn.Kernels.Cpu;

internal sealed unsafe partial class CpuBackend : IMaxPool2dBackend
{
    public void MaxPool2dForward(Tensor x, Tensor y, Tensor indices, in MaxPool2dGeometry g) =>
        MaxPool2dCpu.Forward(x.Ptr<float>(), y.Ptr<float>(), indices.Ptr<long>(), g);

    public void MaxPool2dBackward(Tensor gradY, Tensor indices, Tensor gradX, in MaxPool2dGeometry g)
    {
        if (!MaxPool2dCpu.Backward(gradY.Ptr<float>(), indices.Ptr<long>(), gradX.Ptr<float>(), g, out long bad))
            throw new ArgumentException(
                $"indices holds {bad}, outside the input plane of {g.H}×{g.W} = {(long)g.H * g.W} elements; pass the indices of the matching forward pass",
                nameof(indices));
    }
}

/// <summary>Which plane kernels a pooling runs.</summary>
internal enum MaxPool2dPath
{
    /// <summary>Any window, stride and padding: scalar window scan and scatter.</summary>
    Generic,
    /// <summary>2×2 windows, stride 2, no padding, every window inside the input.</summary>
    Window2Stride2,
    /// <summary>2×2 windows, stride 1, no padding, every window inside the input.</summary>
    Window2Stride1,
}

/// <summary>2-D max pooling with indices, forward and backward, on NCHW float32, as PyTorch's CPU kernel.</summary>
/// <remarks>
/// <para>
/// Forward: for output (i, j) of plane p = n·C + c the window is rows [i·sh − ph, … + kh) and columns
/// [j·sw − pw, … + kw), clipped to the input (padding acts as −inf). As in ATen's
/// <c>cpu_max_pool</c>: the running maximum starts at −inf with its index at the first in-bounds
/// element of the window, and a value v replaces it when <c>v &gt; max || isnan(v)</c>, scanning
/// rows then columns. So NaN wins (the last NaN of the window), ties keep the first in row-major
/// order, and a window of only −inf reports −inf at its first in-bounds element. Indices are
/// int64 flat <c>h·W + w</c> within the input plane. x is (N, C, H, W); y and indices (N, C, OH, OW).
/// </para>
/// <para>
/// Backward: each gradX plane is zeroed, then <c>gradX[p, indices[p, i, j]] += gradY[p, i, j]</c>
/// for every output element in row-major order, so overlapping windows (stride below the window)
/// accumulate, always in that order. Indices outside the plane are skipped and reported to the
/// caller, which throws.
/// </para>
/// <para>
/// The 2×2 paths (<see cref="Choose"/>) compute the same bits: see MaxPool2dCpu.Window2.cs.
/// Parallelism: the N·C planes are independent and are split across workers in contiguous ranges.
/// </para>
/// </remarks>
internal static unsafe partial class MaxPool2dCpu
{
    /// <summary>Test hook: poolings started on this thread take the generic path whatever their shape.</summary>
    [ThreadStatic] internal static bool ForceGeneric;

    /// <summary>The plane kernels for this geometry (chosen on the calling thread).</summary>
    internal static MaxPool2dPath Choose(in MaxPool2dGeometry g)
    {
        if (ForceGeneric || !Avx2.IsSupported) return MaxPool2dPath.Generic;
        if (g.KH != 2 || g.KW != 2 || g.StrideH != g.StrideW || g.PadH != 0 || g.PadW != 0) return MaxPool2dPath.Generic;
        // The 2×2 kernels do index arithmetic in int32.
        if ((long)g.H * g.W > int.MaxValue) return MaxPool2dPath.Generic;
        // Every window must lie wholly inside the input: a ceil-mode window hanging over the edge is generic.
        if (g.StrideH == 2 && 2 * g.OH <= g.H && 2 * g.OW <= g.W) return MaxPool2dPath.Window2Stride2;
        if (g.StrideH == 1 && g.OH == g.H - 1 && g.OW == g.W - 1) return MaxPool2dPath.Window2Stride1;
        return MaxPool2dPath.Generic;
    }

    public static void Forward(float* x, float* y, long* indices, in MaxPool2dGeometry geometry)
    {
        var g = geometry;
        var path = Choose(g);
        int planes = g.N * g.C;
        long inPlane = (long)g.H * g.W, outPlane = (long)g.OH * g.OW;
        Parallelism.For(planes, outPlane * g.KH * g.KW, (xp: (nint)x, yp: (nint)y, ip: (nint)indices, g, path, inPlane, outPlane), static (s, start, end) =>
        {
            var (xp, yp, ip, g, path, inPlane, outPlane) = s;
            for (int p = start; p < end; p++)
            {
                float* xs = (float*)xp + p * inPlane, ys = (float*)yp + p * outPlane;
                long* js = (long*)ip + p * outPlane;
                switch (path)
                {
                    case MaxPool2dPath.Window2Stride2: Forward2x2Stride2(xs, ys, js, g.W, g.OH, g.OW); break;
                    case MaxPool2dPath.Window2Stride1: Forward2x2Stride1(xs, ys, js, g.W, g.OH, g.OW); break;
                    default: Plane(xs, ys, js, g); break;
                }
            }
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Plane(float* x, float* y, long* index, in MaxPool2dGeometry g)
    {
        for (int oh = 0; oh < g.OH; oh++)
        {
            int h0 = oh * g.StrideH - g.PadH;
            int h1 = Math.Min(h0 + g.KH, g.H);
            h0 = Math.Max(h0, 0);
            for (int ow = 0; ow < g.OW; ow++)
            {
                int w0 = ow * g.StrideW - g.PadW;
                int w1 = Math.Min(w0 + g.KW, g.W);
                w0 = Math.Max(w0, 0);
                long maxIndex = (long)h0 * g.W + w0;
                float maxValue = float.NegativeInfinity;
                for (int h = h0; h < h1; h++)
                {
                    float* row = x + (long)h * g.W;
                    for (int w = w0; w < w1; w++)
                    {
                        float v = row[w];
                        if (v > maxValue || float.IsNaN(v))
                        {
                            maxValue = v;
                            maxIndex = (long)h * g.W + w;
                        }
                    }
                }
                y[(long)oh * g.OW + ow] = maxValue;
                index[(long)oh * g.OW + ow] = maxIndex;
            }
        }
    }

    /// <summary>Scatters gradY onto zeroed gradX planes; returns false (and one offending index) when an index lies outside the plane.</summary>
    public static bool Backward(float* gradY, long* indices, float* gradX, in MaxPool2dGeometry geometry, out long badIndex)
    {
        var g = geometry;
        var path = Choose(g);
        int planes = g.N * g.C;
        long inPlane = (long)g.H * g.W, outPlane = (long)g.OH * g.OW;
        long bad = 0;
        int found = 0;
        var state = (dyp: (nint)gradY, ip: (nint)indices, dxp: (nint)gradX, g, path, inPlane, outPlane, bad: (nint)(&bad), found: (nint)(&found));
        Parallelism.For(planes, outPlane + inPlane, state, static (s, start, end) =>
        {
            var (dyp, ip, dxp, g, path, inPlane, outPlane, _, _) = s;
            float[]? rows = path == MaxPool2dPath.Window2Stride1 ? GradientRows(g.OW) : null;
            fixed (float* scratch = rows)
            {
                for (int p = start; p < end; p++)
                {
                    float* dy = (float*)dyp + p * outPlane, dx = (float*)dxp + p * inPlane;
                    long* index = (long*)ip + p * outPlane;
                    // A fast path declines a plane holding an index outside its own window (not what
                    // a forward pass gives); the scatter then redoes that plane.
                    bool done = path switch
                    {
                        MaxPool2dPath.Window2Stride2 => Backward2x2Stride2(dy, index, dx, g.H, g.W, g.OH, g.OW),
                        MaxPool2dPath.Window2Stride1 => Backward2x2Stride1(dy, index, dx, g.W, g.OH, g.OW, scratch),
                        _ => false,
                    };
                    if (!done && !ScatterPlane(dy, index, outPlane, dx, inPlane, out long k))
                    {
                        Interlocked.Exchange(ref *(long*)s.bad, k);
                        Volatile.Write(ref *(int*)s.found, 1);
                    }
                }
            }
        });
        badIndex = bad;
        return found == 0;
    }

    /// <summary>dx = 0, then dx[index[i]] += dy[i]; indices outside [0, inPlane) are skipped and one is returned.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool ScatterPlane(float* dy, long* index, long outPlane, float* dx, long inPlane, out long badIndex)
    {
        new Span<float>(dx, (int)inPlane).Clear();
        bool ok = true;
        badIndex = 0;
        for (long i = 0; i < outPlane; i++)
        {
            long k = index[i];
            if ((ulong)k >= (ulong)inPlane)
            {
                ok = false;
                badIndex = k;
                continue;
            }
            dx[k] += dy[i];
        }
        return ok;
    }
}
