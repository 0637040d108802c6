// 8×8 float32 transposes with AVX: eight row loads, unpack pairs of rows, shuffle pairs of
// pairs within 128-bit halves, swap halves. Used by the GEMM's transposed-B packing and by the
// RoI kernels' channel-block reordering.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GRcn.Kernels.Cpu;

internal static unsafe class Avx8x8
{
    /// <summary>Loads the 8×8 tile at <paramref name="src"/> (rows <paramref name="stride"/> floats apart) and returns its columns o0..o7.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Columns(float* src, long stride,
        out Vector256<float> o0, out Vector256<float> o1, out Vector256<float> o2, out Vector256<float> o3,
        out Vector256<float> o4, out Vector256<float> o5, out Vector256<float> o6, out Vector256<float> o7)
    {
        var r0 = Avx.LoadVector256(src);
        var r1 = Avx.LoadVector256(src + stride);
        var r2 = Avx.LoadVector256(src + 2 * stride);
        var r3 = Avx.LoadVector256(src + 3 * stride);
        var r4 = Avx.LoadVector256(src + 4 * stride);
        var r5 = Avx.LoadVector256(src + 5 * stride);
        var r6 = Avx.LoadVector256(src + 6 * stride);
        var r7 = Avx.LoadVector256(src + 7 * stride);
        // Interleave pairs of rows, then pairs of pairs (within 128-bit halves), then swap halves.
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5);
        var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7);
        var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44);
        var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44);
        var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44);
        var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44);
        var u7 = Avx.Shuffle(t5, t7, 0xEE);
        o0 = Avx.Permute2x128(u0, u4, 0x20);
        o1 = Avx.Permute2x128(u1, u5, 0x20);
        o2 = Avx.Permute2x128(u2, u6, 0x20);
        o3 = Avx.Permute2x128(u3, u7, 0x20);
        o4 = Avx.Permute2x128(u0, u4, 0x31);
        o5 = Avx.Permute2x128(u1, u5, 0x31);
        o6 = Avx.Permute2x128(u2, u6, 0x31);
        o7 = Avx.Permute2x128(u3, u7, 0x31);
    }

    /// <summary>dst[i·ldd + r] = src[r·lds + i] for r, i &lt; 8 (an 8×8 block transposed; unaligned loads and stores).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Transpose(float* src, long lds, float* dst, long ldd)
    {
        Columns(src, lds, out var o0, out var o1, out var o2, out var o3, out var o4, out var o5, out var o6, out var o7);
        Avx.Store(dst, o0);
        Avx.Store(dst + ldd, o1);
        Avx.Store(dst + 2 * ldd, o2);
        Avx.Store(dst + 3 * ldd, o3);
        Avx.Store(dst + 4 * ldd, o4);
        Avx.Store(dst + 5 * ldd, o5);
        Avx.Store(dst + 6 * ldd, o6);
        Avx.Store(dst + 7 * ldd, o7);
    }
}
