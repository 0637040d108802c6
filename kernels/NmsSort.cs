// The score order of nms / batched_nms: indices by descending score, ties in index order, NaN
// first (all NaN equal), −0 equal to +0 — torch's stable sort, as NmsCpu.SortDescending.
//
// Each box i gets the 64-bit key DescendingKey(score) << 32 | i (padding to a power of two n2
// with ulong.MaxValue); the keys are distinct, so sorting them ascending gives exactly the
// stable order, and the low word of sorted key p is the index at position p.
//
// Up to RankSortMaxBoxes boxes (torchvision's pre-NMS sizes: 6000 .. 12000), Rank: thread i
// counts the keys below its own (a warp reads the same key at once: one broadcast load) and
// writes its key to that rank: K² integer compares in one launch, no barriers, below the K²/2
// float64 IoUs of the mask.
//
// Above, a bitonic sort of the n2 keys:
//   - Local: each group of C/2 threads sorts (or merges) one chunk of C ≤ MaxChunk keys in
//     shared memory, thread t owning the compare-exchange pairs of its step; a Barrier between
//     steps. Stage 0 runs the whole bitonic network of the chunk (k = 2 .. C); stage k > C runs
//     the steps j = C/2 .. 1 of merge stage k (the direction from the key's global position).
//   - Global: one step (k, j) with j ≥ C across the whole array, one thread per pair.
// n2 / C groups; with C = 2048, 12000 boxes take 1 + 3 local and 6 global launches.
using ILGPU;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

/// <summary>A bitonic launch: Count keys (power of two), Chunk keys per group, Stage 0 (full local sort) or the merge stage k; Step j for the global step.</summary>
internal readonly record struct BitonicStep(int Count, int Chunk, int Stage, int Step);

internal static class NmsSortKernels
{
    /// <summary>Most keys one group sorts in shared memory (16 KiB, 1024 threads).</summary>
    public const int MaxChunk = 2048;

    /// <summary>
    /// Order key of a score: ascending keys give descending scores, every NaN first and equal
    /// (key 0), −0 equal to +0 (NmsCpu.DescendingKey).
    /// </summary>
    public static uint DescendingKey(float score)
    {
        if (float.IsNaN(score)) return 0;
        uint bits = Interop.FloatAsInt(score);
        if ((bits & 0x7FFF_FFFFu) == 0) bits = 0;  // −0 → +0
        uint ascending = (bits & 0x8000_0000u) != 0 ? ~bits : bits | 0x8000_0000u;
        return ~ascending;
    }

    /// <summary>keys[i] = DescendingKey(scores[i]) &lt;&lt; 32 | i for i &lt; k, ulong.MaxValue up to the padded count.</summary>
    [Kernel]
    public static void Keys(Index1D i, int k, ArrayView<float> scores, ArrayView<ulong> keys)
    {
        keys[i] = i < k ? ((ulong)DescendingKey(scores[i]) << 32) | (uint)(int)i : ulong.MaxValue;
    }

    /// <summary>sorted[rank of keys[i]] = keys[i], for the first k (distinct) keys.</summary>
    [Kernel]
    public static void Rank(Index1D i, int k, ArrayView<ulong> keys, ArrayView<ulong> sorted)
    {
        if (i >= k) return;
        ulong key = keys[i];
        int rank = 0;
        for (int j = 0; j < k; j++) rank += keys[j] < key ? 1 : 0;
        sorted[rank] = key;
    }

    /// <summary>Pair t of step (k, j): positions i &lt; i + j; exchanged when out of the order of block k (ascending where i &amp; k = 0).</summary>
    private static void Exchange(ArrayView<ulong> v, long baseIndex, int t, int k, int j)
    {
        int i = 2 * t - (t & (j - 1));  // (t / j)·2j + t mod j
        ulong a = v[i], b = v[i + j];
        bool ascending = ((baseIndex + i) & k) == 0;
        if (ascending ? a > b : a < b)
        {
            v[i] = b;
            v[i + j] = a;
        }
    }

    /// <summary>The local sort or merge tail of one chunk in shared memory (see the file comment).</summary>
    [Kernel]
    public static void Local(BitonicStep s, ArrayView<ulong> keys)
    {
        var shared = SharedMemory.Allocate<ulong>(MaxChunk);
        int t = Group.IdxX, half = s.Chunk / 2;
        long baseIndex = (long)Grid.IdxX * s.Chunk;
        if (t >= half) return;  // groups are launched with exactly Chunk / 2 threads
        shared[t] = keys[baseIndex + t];
        shared[t + half] = keys[baseIndex + t + half];
        Group.Barrier();
        if (s.Stage == 0)
        {
            for (int k = 2; k <= s.Chunk; k <<= 1)
            {
                for (int j = k >> 1; j > 0; j >>= 1)
                {
                    Exchange(shared, baseIndex, t, k, j);
                    Group.Barrier();
                }
            }
        }
        else
        {
            for (int j = half; j > 0; j >>= 1)
            {
                Exchange(shared, baseIndex, t, s.Stage, j);
                Group.Barrier();
            }
        }
        keys[baseIndex + t] = shared[t];
        keys[baseIndex + t + half] = shared[t + half];
    }

    /// <summary>One global step (Stage, Step) of the network: thread t exchanges pair t of the Count keys.</summary>
    [Kernel]
    public static void Global(Index1D t, BitonicStep s, ArrayView<ulong> keys)
    {
        if (t >= s.Count / 2) return;
        Exchange(keys, 0, t, s.Stage, s.Step);
    }
}
