// max_pool2d on the CPU for whole 2×2 windows, stride 2 or 1, no padding (the VGG and G-RCN
// pools): forward vectorised with AVX2 across 8 output columns, backward written as a gather so
// that each gradX element is stored once. Same bits as the generic kernels of MaxPool2dCpu.cs.
// One call handles one plane; MaxPool2dCpu.Forward/Backward split the planes across workers.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GRcn.Kernels.Cpu;

/// <remarks>
/// <para>
/// A whole 2×2 window at input (h, w) holds, in scan order, the elements at flat offsets 0, 1,
/// W and W + 1 from h·W + w. The running maximum starts as the first element with offset 0: that
/// is what ATen's start (−inf, index of the first element) becomes after the first comparison,
/// since the first element replaces −inf unless it is −inf itself. Each later element v wins when
/// <c>v &gt; max</c> (ordered compare) or v is NaN (v unordered with itself), as in the generic scan.
/// </para>
/// <para>
/// Backward: every index must lie in its own window (forward passes give only such indices);
/// offset d = index − (window's top-left) ∈ {0, 1, W, W + 1} says which of the four elements
/// won. A plane holding any other index is declined (the method returns false) and the caller
/// scatters it instead. Stride 2: each input element belongs to at most one window, so it gets
/// 0 + dy where it won and 0 elsewhere (0 + dy turns −0 into +0, as the scatter's first add does).
/// Stride 1: input (h, w) sums, in the scatter's order (output row-major), the windows
/// (h−1, w−1) with offset W + 1, (h−1, w) with W, (h, w−1) with 1 and (h, w) with 0; windows
/// that did not pick it add +0, which changes no sum (a sum starting at +0 is never −0).
/// </para>
/// </remarks>
internal static unsafe partial class MaxPool2dCpu
{
    /// <summary>Outputs per vector step.</summary>
    private const int Lanes = 8;

    [ThreadStatic] private static float[]? t_gradientRows;

    /// <summary>This thread's scratch for <see cref="Backward2x2Stride1"/>: 6 rows of OW + 2 floats, all zero.</summary>
    private static float[] GradientRows(int ow)
    {
        int length = 6 * (ow + 2);
        var rows = t_gradientRows;
        if (rows is null || rows.Length < length) t_gradientRows = rows = new float[length];
        else Array.Clear(rows, 0, length);
        return rows;
    }

    /// <summary>One step of the running maximum: v (at window offset o) replaces max when v &gt; max or v is NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step(ref Vector256<float> max, ref Vector256<float> offset, Vector256<float> v, Vector256<float> o)
    {
        var win = Avx.Or(Avx.CompareGreaterThan(v, max), Avx.CompareUnordered(v, v));
        max = Avx.BlendVariable(max, v, win);
        offset = Avx.BlendVariable(offset, o, win);
    }

    /// <summary>Scalar window at <paramref name="p"/> (row stride <paramref name="w"/>): maximum and its offset in {0, 1, W, W + 1}.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Window(float* p, int w, out float max)
    {
        max = p[0];
        int offset = 0;
        float v = p[1];
        if (v > max || float.IsNaN(v)) { max = v; offset = 1; }
        v = p[w];
        if (v > max || float.IsNaN(v)) { max = v; offset = w; }
        v = p[w + 1];
        if (v > max || float.IsNaN(v)) { max = v; offset = w + 1; }
        return offset;
    }

    /// <summary>Stores 8 int32 flat indices as int64.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreIndices(long* at, Vector256<int> flat)
    {
        Avx.Store(at, Avx2.ConvertToVector256Int64(flat.GetLower()));
        Avx.Store(at + 4, Avx2.ConvertToVector256Int64(flat.GetUpper()));
    }

    /// <summary>Forward of one plane, 2×2 windows, stride 2: output (i, j) is the window at input (2i, 2j).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Forward2x2Stride2(float* x, float* y, long* index, int w, int oh, int ow)
    {
        // Offsets are carried as int32 bit patterns in float vectors (blends move bits only).
        var off1 = Vector256.Create(1).AsSingle();
        var offW = Vector256.Create(w).AsSingle();
        var offW1 = Vector256.Create(w + 1).AsSingle();
        var evenColumns = Vector256.Create(0, 2, 4, 6, 8, 10, 12, 14);
        for (int i = 0; i < oh; i++)
        {
            float* r0 = x + (long)2 * i * w, r1 = r0 + w;
            float* yRow = y + (long)i * ow;
            long* iRow = index + (long)i * ow;
            int rowBase = 2 * i * w; // flat index of input (2i, 0)
            int j = 0;
            for (; j <= ow - Lanes; j += Lanes)
            {
                // Input columns 2j … 2j + 15 of both rows, split into even and odd columns. The
                // shuffles leave outputs j + (0, 1, 4, 5, 2, 3, 6, 7) in lanes 0 … 7.
                var p = Avx.LoadVector256(r0 + 2 * j);
                var q = Avx.LoadVector256(r0 + 2 * j + 8);
                var a0 = Avx.Shuffle(p, q, 0b10_00_10_00);
                var a1 = Avx.Shuffle(p, q, 0b11_01_11_01);
                p = Avx.LoadVector256(r1 + 2 * j);
                q = Avx.LoadVector256(r1 + 2 * j + 8);
                var b0 = Avx.Shuffle(p, q, 0b10_00_10_00);
                var b1 = Avx.Shuffle(p, q, 0b11_01_11_01);
                var max = a0;
                var offset = Vector256<float>.Zero;
                Step(ref max, ref offset, a1, off1);
                Step(ref max, ref offset, b0, offW);
                Step(ref max, ref offset, b1, offW1);
                // Swap the middle 64-bit pairs back: lanes in output order j … j + 7.
                max = Avx2.Permute4x64(max.AsDouble(), 0b11_01_10_00).AsSingle();
                var off = Avx2.Permute4x64(offset.AsDouble(), 0b11_01_10_00).AsInt32();
                Avx.Store(yRow + j, max);
                // Output j + l has its window at flat rowBase + 2(j + l).
                StoreIndices(iRow + j, Avx2.Add(off, Avx2.Add(Vector256.Create(rowBase + 2 * j), evenColumns)));
            }
            for (; j < ow; j++)
            {
                int offset = Window(r0 + 2 * j, w, out float max);
                yRow[j] = max;
                iRow[j] = rowBase + 2 * j + offset;
            }
        }
    }

    /// <summary>Forward of one plane, 2×2 windows, stride 1: output (i, j) is the window at input (i, j); W = OW + 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Forward2x2Stride1(float* x, float* y, long* index, int w, int oh, int ow)
    {
        var off1 = Vector256.Create(1).AsSingle();
        var offW = Vector256.Create(w).AsSingle();
        var offW1 = Vector256.Create(w + 1).AsSingle();
        var columns = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        for (int i = 0; i < oh; i++)
        {
            float* r0 = x + (long)i * w, r1 = r0 + w;
            float* yRow = y + (long)i * ow;
            long* iRow = index + (long)i * ow;
            int rowBase = i * w; // flat index of input (i, 0)
            int j = 0;
            // The loads reach column j + 8 ≤ OW = W − 1.
            for (; j <= ow - Lanes; j += Lanes)
            {
                var max = Avx.LoadVector256(r0 + j);
                var offset = Vector256<float>.Zero;
                Step(ref max, ref offset, Avx.LoadVector256(r0 + j + 1), off1);
                Step(ref max, ref offset, Avx.LoadVector256(r1 + j), offW);
                Step(ref max, ref offset, Avx.LoadVector256(r1 + j + 1), offW1);
                Avx.Store(yRow + j, max);
                StoreIndices(iRow + j, Avx2.Add(offset.AsInt32(), Avx2.Add(Vector256.Create(rowBase + j), columns)));
            }
            for (; j < ow; j++)
            {
                int offset = Window(r0 + j, w, out float max);
                yRow[j] = max;
                iRow[j] = rowBase + j + offset;
            }
        }
    }

    /// <summary>
    /// Offsets of 8 indices from their windows' top-left flat indices (<paramref name="corner"/>
    /// for the first 4, plus <paramref name="fourSteps"/> for the next 4), as int32 in output order; ORs into
    /// <paramref name="invalid"/> a nonzero lane for each offset outside {0, 1, W, W + 1}.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Offsets(long* at, Vector256<long> corner, Vector256<long> fourSteps, Vector256<int> w, Vector256<int> w1,
        ref Vector256<int> invalid, out Vector256<int> is0, out Vector256<int> is1, out Vector256<int> isW, out Vector256<int> isW1)
    {
        var lo = Avx2.Subtract(Avx.LoadVector256(at), corner);
        var hi = Avx2.Subtract(Avx.LoadVector256(at + 4), Avx2.Add(corner, fourSteps));
        // Low and high 32-bit halves of the 64-bit offsets; the shuffle leaves outputs
        // (0, 1, 4, 5, 2, 3, 6, 7) in lanes 0 … 7, the permute restores the order.
        var low = Avx2.Permute4x64(Avx.Shuffle(lo.AsSingle(), hi.AsSingle(), 0b10_00_10_00).AsDouble(), 0b11_01_10_00).AsInt32();
        var high = Avx.Shuffle(lo.AsSingle(), hi.AsSingle(), 0b11_01_11_01).AsInt32();
        is0 = Avx2.CompareEqual(low, Vector256<int>.Zero);
        is1 = Avx2.CompareEqual(low, Vector256<int>.One);
        isW = Avx2.CompareEqual(low, w);
        isW1 = Avx2.CompareEqual(low, w1);
        var inWindow = Avx2.Or(Avx2.Or(is0, is1), Avx2.Or(isW, isW1));
        invalid = Avx2.Or(invalid, Avx2.Or(high, Avx2.AndNot(inWindow, Vector256<int>.AllBitsSet)));
    }

    /// <summary>Scalar <see cref="Offsets"/>: the offset of one index, or −1 when it is outside its window.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Offset(long index, long corner, int w)
    {
        long d = index - corner;
        return d == 0 || d == 1 || d == w || d == w + 1 ? (int)d : -1;
    }

    /// <summary>
    /// Backward of one plane, 2×2 windows, stride 2: input rows 2i and 2i + 1 come from output row
    /// i alone; columns and rows past the last window get 0. False when an index is outside its window.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool Backward2x2Stride2(float* dy, long* index, float* dx, int h, int w, int oh, int ow)
    {
        var vw = Vector256.Create(w);
        var vw1 = Vector256.Create(w + 1);
        var evenColumns = Vector256.Create(0L, 2, 4, 6);
        var eight = Vector256.Create(8L);
        var invalid = Vector256<int>.Zero;
        bool scalarInvalid = false;
        for (int i = 0; i < oh; i++)
        {
            float* g = dy + (long)i * ow, d0 = dx + (long)2 * i * w, d1 = d0 + w;
            long* at = index + (long)i * ow;
            long rowBase = (long)2 * i * w; // flat index of input (2i, 0)
            int j = 0;
            for (; j <= ow - Lanes; j += Lanes)
            {
                Offsets(at + j, Avx2.Add(Vector256.Create(rowBase + 2 * j), evenColumns), eight, vw, vw1,
                    ref invalid, out var is0, out var is1, out var isW, out var isW1);
                var v = Avx.Add(Vector256<float>.Zero, Avx.LoadVector256(g + j));
                var q0 = Avx.And(is0.AsSingle(), v);
                var q1 = Avx.And(is1.AsSingle(), v);
                // Interleave (q0, q1) into input columns 2j … 2j + 15 of row 2i.
                var lo = Avx.UnpackLow(q0, q1);
                var hi = Avx.UnpackHigh(q0, q1);
                Avx.Store(d0 + 2 * j, Avx.Permute2x128(lo, hi, 0x20));
                Avx.Store(d0 + 2 * j + 8, Avx.Permute2x128(lo, hi, 0x31));
                q0 = Avx.And(isW.AsSingle(), v);
                q1 = Avx.And(isW1.AsSingle(), v);
                lo = Avx.UnpackLow(q0, q1);
                hi = Avx.UnpackHigh(q0, q1);
                Avx.Store(d1 + 2 * j, Avx.Permute2x128(lo, hi, 0x20));
                Avx.Store(d1 + 2 * j + 8, Avx.Permute2x128(lo, hi, 0x31));
            }
            for (; j < ow; j++)
            {
                int d = Offset(at[j], rowBase + 2 * j, w);
                scalarInvalid |= d < 0;
                float v = 0f + g[j];
                d0[2 * j] = d == 0 ? v : 0f;
                d0[2 * j + 1] = d == 1 ? v : 0f;
                d1[2 * j] = d == w ? v : 0f;
                d1[2 * j + 1] = d == w + 1 ? v : 0f;
            }
            for (int c = 2 * ow; c < w; c++)
            {
                d0[c] = 0f;
                d1[c] = 0f;
            }
        }
        new Span<float>(dx + (long)2 * oh * w, (h - 2 * oh) * w).Clear();
        return !scalarInvalid && Avx.TestZ(invalid, invalid);
    }

    /// <summary>
    /// Backward of one plane, 2×2 windows, stride 1 (H = OH + 1, W = OW + 1). Output row i is
    /// split by mask into four rows (dy where offset 0, 1, W, W + 1 won, else +0); input row h is
    /// then the sum of the W + 1 and W rows of output row h − 1 and the 1 and 0 rows of output row
    /// h, shifted so that each lands on the input column it picked. <paramref name="scratch"/>
    /// holds 6 rows of OW + 2 zeros: entry c + 1 is output column c, entries 0 and OW + 1 (columns
    /// −1 and OW) stay 0. False when an index is outside its window.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool Backward2x2Stride1(float* dy, long* index, float* dx, int w, int oh, int ow, float* scratch)
    {
        int stride = ow + 2;
        float* top0 = scratch, top1 = scratch + stride;  // output row h: offsets 0 and 1
        float* prev0 = top1 + stride, prev1 = prev0 + stride; // output row h − 1: offsets W and W + 1
        float* next0 = prev1 + stride, next1 = next0 + stride; // output row h: offsets W and W + 1
        new Span<float>(prev0, 2 * stride).Clear();

        var vw = Vector256.Create(w);
        var vw1 = Vector256.Create(w + 1);
        var columns = Vector256.Create(0L, 1, 2, 3);
        var four = Vector256.Create(4L);
        var invalid = Vector256<int>.Zero;
        bool scalarInvalid = false;
        for (int h = 0; h <= oh; h++)
        {
            if (h < oh)
            {
                float* g = dy + (long)h * ow;
                long* at = index + (long)h * ow;
                long rowBase = (long)h * w; // flat index of input (h, 0)
                int j = 0;
                for (; j <= ow - Lanes; j += Lanes)
                {
                    Offsets(at + j, Avx2.Add(Vector256.Create(rowBase + j), columns), four, vw, vw1,
                        ref invalid, out var is0, out var is1, out var isW, out var isW1);
                    var v = Avx.Add(Vector256<float>.Zero, Avx.LoadVector256(g + j));
                    Avx.Store(top0 + j + 1, Avx.And(is0.AsSingle(), v));
                    Avx.Store(top1 + j + 1, Avx.And(is1.AsSingle(), v));
                    Avx.Store(next0 + j + 1, Avx.And(isW.AsSingle(), v));
                    Avx.Store(next1 + j + 1, Avx.And(isW1.AsSingle(), v));
                }
                for (; j < ow; j++)
                {
                    int d = Offset(at[j], rowBase + j, w);
                    scalarInvalid |= d < 0;
                    float v = 0f + g[j];
                    top0[j + 1] = d == 0 ? v : 0f;
                    top1[j + 1] = d == 1 ? v : 0f;
                    next0[j + 1] = d == w ? v : 0f;
                    next1[j + 1] = d == w + 1 ? v : 0f;
                }
            }
            else
            {
                // Below the last output row: no window has input row OH as its top row.
                new Span<float>(top0, 2 * stride).Clear();
            }

            // Input (h, c) ← windows (h−1, c−1), (h−1, c), (h, c−1), (h, c): entries c, c + 1, c, c + 1.
            float* d0 = dx + (long)h * w;
            int c = 0;
            for (; c <= w - Lanes; c += Lanes)
            {
                var s = Avx.Add(Avx.LoadVector256(prev1 + c), Avx.LoadVector256(prev0 + c + 1));
                s = Avx.Add(s, Avx.LoadVector256(top1 + c));
                Avx.Store(d0 + c, Avx.Add(s, Avx.LoadVector256(top0 + c + 1)));
            }
            for (; c < w; c++) d0[c] = prev1[c] + prev0[c + 1] + top1[c] + top0[c + 1];

            float* t = prev0;
            prev0 = next0;
            next0 = t;
            t = prev1;
            prev1 = next1;
            next1 = t;
        }
        return !scalarInvalid && Avx.TestZ(invalid, invalid);
    }
}
