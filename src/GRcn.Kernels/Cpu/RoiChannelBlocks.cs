// Channel-blocked copies of (N, C, H, W) maps for the vectorised paths of the RoI kernels:
// the blocked layout is (N, ⌈C/32⌉, H, W, 32) float32, so the 32 channels of one cell are one
// 128-byte run and a RoI's cells are processed 32 channels at a time with four AVX2 vectors
// (channels past C in the last block are zero). Packing and unpacking are split across
// workers by (image, channel block); the 8×8 transposes here also reorder per-bin results
// (bins, 32) into the (channels, bins) runs of the RoI outputs and back.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GRcn.Kernels.Cpu;

/// <summary>Which implementation a RoI kernel runs; tests pin one to cover both.</summary>
internal enum RoiKernelPath
{
    /// <summary>The blocked path where AVX2 is available and the work pays for packing, else scalar.</summary>
    Auto,
    /// <summary>The plain per-channel loops on (N, C, H, W).</summary>
    Scalar,
    /// <summary>The channel-blocked AVX2 path (scalar where AVX2 is missing).</summary>
    Blocked,
}

/// <summary>The (N, ⌈C/32⌉, H, W, 32) layout and the transposes in and out of it.</summary>
internal static unsafe class RoiChannelBlocks
{
    /// <summary>Channels per block: four AVX2 vectors.</summary>
    public const int Width = 32;

    public static int Blocks(int channels) => (channels + Width - 1) / Width;

    /// <summary>True when the blocked path can run here: AVX2, and a non-empty plane whose cell indices fit in int32.</summary>
    public static bool Supported(int h, int w) => Avx2.IsSupported && h > 0 && w > 0 && (long)h * w <= int.MaxValue;

    /// <summary>A scratch map in the blocked layout from the CPU device's caching allocator (uninitialised).</summary>
    public static Tensor Rent(int n, int c, int h, int w) => Tensor.Empty(Device.Cpu, DataType.Float32, n, Blocks(c), h * w, Width);

    /// <summary>Returns <paramref name="array"/>, replaced by a larger one first when it holds fewer than <paramref name="length"/> elements.</summary>
    public static T[] Grow<T>(ref T[]? array, long length)
    {
        if (array == null || array.Length < length) array = new T[checked((int)Math.Max(length, 64))];
        return array;
    }

    /// <summary>Packs x (N, C, H, W) into <paramref name="blocked"/>, in parallel over (image, block).</summary>
    public static void Pack(float* x, float* blocked, int n, int c, int h, int w)
    {
        int blocks = Blocks(c);
        long plane = (long)h * w;
        Parallelism.For(n * blocks, plane * Width, (px: (nint)x, pb: (nint)blocked, c, blocks, plane), static (s, start, end) =>
        {
            var (px, pb, c, blocks, plane) = s;
            for (int i = start; i < end; i++)
            {
                int b = i / blocks, cb = i % blocks;
                int c0 = cb * Width, count = Math.Min(Width, c - c0);
                float* src = (float*)px + ((long)b * c + c0) * plane;
                float* dst = (float*)pb + (long)i * plane * Width;
                PackBlock(src, dst, count, plane);
            }
        });
    }

    /// <summary>dst[p·32 + l] = src[l·plane + p] for l &lt; count, 0 for the other lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackBlock(float* src, float* dst, int count, long plane)
    {
        int full = count & ~7;
        long p8 = plane & ~7L;
        for (int l0 = 0; l0 < full; l0 += 8)
        {
            for (long p = 0; p < p8; p += 8)
                Avx8x8.Transpose(src + l0 * plane + p, plane, dst + p * Width + l0, Width);
            for (long p = p8; p < plane; p++)
                for (int l = l0; l < l0 + 8; l++) dst[p * Width + l] = src[l * plane + p];
        }
        for (long p = 0; p < plane; p++)
        {
            float* d = dst + p * Width;
            for (int l = full; l < count; l++) d[l] = src[l * plane + p];
            for (int l = count; l < Width; l++) d[l] = 0f;
        }
    }

    /// <summary>Unpacks block <paramref name="src"/> (plane, 32) into channels [0, count) of dst (count, plane).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void UnpackBlock(float* src, float* dst, int count, long plane)
    {
        int full = count & ~7;
        long p8 = plane & ~7L;
        for (int l0 = 0; l0 < full; l0 += 8)
        {
            for (long p = 0; p < p8; p += 8)
                Avx8x8.Transpose(src + p * Width + l0, Width, dst + l0 * plane + p, plane);
            for (long p = p8; p < plane; p++)
                for (int l = l0; l < l0 + 8; l++) dst[l * plane + p] = src[p * Width + l];
        }
        for (int l = full; l < count; l++)
            for (long p = 0; p < plane; p++) dst[l * plane + p] = src[p * Width + l];
    }

    /// <summary>dst[l·bins + j] = src[j·32 + l] for l &lt; count, j &lt; bins: per-bin results to a (channels, bins) output run.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void BinsOut(float* src, float* dst, int count, int bins)
    {
        int full = count & ~7, b8 = bins & ~7;
        for (int l0 = 0; l0 < full; l0 += 8)
        {
            for (int j = 0; j < b8; j += 8)
                Avx8x8.Transpose(src + j * Width + l0, Width, dst + (long)l0 * bins + j, bins);
            for (int j = b8; j < bins; j++)
                for (int l = l0; l < l0 + 8; l++) dst[(long)l * bins + j] = src[j * Width + l];
        }
        for (int l = full; l < count; l++)
            for (int j = 0; j < bins; j++) dst[(long)l * bins + j] = src[j * Width + l];
    }

    /// <summary>As <see cref="BinsOut(float*, float*, int, int)"/>, widening int32 to int64.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void BinsOut(int* src, long* dst, int count, int bins)
    {
        int full = count & ~7, b8 = bins & ~7;
        for (int l0 = 0; l0 < full; l0 += 8)
        {
            for (int j = 0; j < b8; j += 8)
                Transpose8Widen(src + j * Width + l0, Width, dst + (long)l0 * bins + j, bins);
            for (int j = b8; j < bins; j++)
                for (int l = l0; l < l0 + 8; l++) dst[(long)l * bins + j] = src[j * Width + l];
        }
        for (int l = full; l < count; l++)
            for (int j = 0; j < bins; j++) dst[(long)l * bins + j] = src[j * Width + l];
    }

    /// <summary>dst[j·32 + l] = src[l·bins + j] for l &lt; count, 0 for the other lanes: a (channels, bins) run to per-bin vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void BinsIn(float* src, float* dst, int count, int bins)
    {
        int full = count & ~7, b8 = bins & ~7;
        for (int l0 = 0; l0 < full; l0 += 8)
        {
            for (int j = 0; j < b8; j += 8)
                Avx8x8.Transpose(src + (long)l0 * bins + j, bins, dst + j * Width + l0, Width);
            for (int j = b8; j < bins; j++)
                for (int l = l0; l < l0 + 8; l++) dst[j * Width + l] = src[(long)l * bins + j];
        }
        for (int j = 0; j < bins; j++)
        {
            float* d = dst + j * Width;
            for (int l = full; l < count; l++) d[l] = src[(long)l * bins + j];
            for (int l = count; l < Width; l++) d[l] = 0f;
        }
    }

    /// <summary>
    /// Copies <paramref name="bytes"/> from <paramref name="src"/> to <paramref name="dst"/> with
    /// non-temporal stores where dst is 32-byte aligned (outputs far larger than the caches
    /// skip the read-for-ownership); the caller fences (<see cref="Sse.StoreFence"/>) before
    /// other threads read dst.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Stream(byte* src, byte* dst, long bytes)
    {
        long head = Math.Min(bytes, (32 - ((long)dst & 31)) & 31);
        Buffer.MemoryCopy(src, dst, head, head);
        long i = head;
        for (; i + 32 <= bytes; i += 32)
            Avx.StoreAlignedNonTemporal(dst + i, Avx.LoadVector256(src + i));
        Buffer.MemoryCopy(src + i, dst + i, bytes - i, bytes - i);
    }

    /// <summary>As <see cref="Avx8x8.Transpose"/> on int32, each output row widened to eight int64.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8Widen(int* src, long srcStride, long* dst, long dstStride)
    {
        Avx8x8.Columns((float*)src, srcStride, out var o0, out var o1, out var o2, out var o3, out var o4, out var o5, out var o6, out var o7);
        Widen(o0, dst);
        Widen(o1, dst + dstStride);
        Widen(o2, dst + 2 * dstStride);
        Widen(o3, dst + 3 * dstStride);
        Widen(o4, dst + 4 * dstStride);
        Widen(o5, dst + 5 * dstStride);
        Widen(o6, dst + 6 * dstStride);
        Widen(o7, dst + 7 * dstStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Widen(Vector256<float> v, long* dst)
    {
        var i = v.AsInt32();
        Avx.Store(dst, Avx2.ConvertToVector256Int64(i.GetLower()));
        Avx.Store(dst + 4, Avx2.ConvertToVector256Int64(i.GetUpper()));
    }
}
