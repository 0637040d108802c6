// Work splitting for the CPU kernels: a range of independent items is cut into contiguous
// chunks, one per worker, and run on the thread pool (the caller runs one chunk itself).
namespace GRcn.Kernels.Cpu;

internal static class Parallelism
{
    private static int _threads = Environment.ProcessorCount;

    /// <summary>Worker count used by every CPU kernel.</summary>
    public static int Threads
    {
        get => _threads;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1, nameof(value));
            _threads = value;
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/>(start, end) over [0, count) in at most <see cref="Threads"/>
    /// contiguous chunks; runs inline when there is too little work to split
    /// (<paramref name="count"/> × <paramref name="costPerItem"/> under about 32k operations).
    /// </summary>
    public static void For(int count, long costPerItem, Action<int, int> body)
    {
        if (count <= 0) return;
        int workers = Math.Min(Threads, count);
        if (workers <= 1 || count * Math.Max(1, costPerItem) < 32_768)
        {
            body(0, count);
            return;
        }
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, w =>
        {
            int start = (int)((long)count * w / workers);
            int end = (int)((long)count * (w + 1) / workers);
            if (start < end) body(start, end);
        });
    }
}
