// Work splitting for the CPU kernels: a range of independent items [0, count) is cut into up to
// ChunksPerThread × Threads (or as many per thread as the call asks) contiguous chunks that Threads threads claim one at a time from a
// shared counter: the calling thread and Threads − 1 threads of a persistent pool. A thread that
// is slow to wake, or loses its core to another process for a while, then simply claims fewer
// chunks instead of stalling the call.
// In steady state a call allocates nothing: the chunk body is a static lambda over a state value
// that stays on the caller's stack, and the pool's threads, semaphore and event are made once.
// Kernels such as context attention run many short calls back to back, so a worker that finds no
// work spins for a short while (SpinTime) watching for the next job before it sleeps, and the
// caller spins as long waiting for the last chunk: waking a sleeping thread costs tens of µs.
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;

namespace GRcn.Kernels.Cpu;

internal static unsafe class Parallelism
{
    private static int _threads = Environment.ProcessorCount;

    /// <summary>1 while a call owns the pool; a call that finds it taken (nested or concurrent) uses Parallel.For.</summary>
    private static int _busy;

    /// <summary>Below this many operations (count × costPerItem) a call runs inline.</summary>
    private const long InlineCost = 32_768;

    /// <summary>Chunks per thread (when there are enough items), for balance when threads progress unevenly.</summary>
    public const int ChunksPerThread = 4;

    /// <summary>How long (in Stopwatch ticks, 50 µs) a worker watches for the next job, and the caller for the end of the current one, before blocking.</summary>
    private static readonly long SpinTime = Stopwatch.Frequency / 20_000;

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
    /// Runs <paramref name="body"/>(start, end) over [0, count) in contiguous chunks (at most
    /// <see cref="ChunksPerThread"/> × <see cref="Threads"/>) on <see cref="Threads"/> threads; runs
    /// inline when there is too little work to split (<paramref name="count"/> ×
    /// <paramref name="costPerItem"/> under about 32k operations). Chunks run in no fixed order
    /// and on any thread, so a body must not depend on which items share a chunk.
    /// A lambda that captures variables allocates a closure per call: hot paths use the
    /// overload with an explicit state and a static lambda.
    /// </summary>
    public static void For(int count, long costPerItem, Action<int, int> body) =>
        For(count, costPerItem, body, static (b, start, end) => b(start, end));

    /// <summary>
    /// Runs <paramref name="body"/>(<paramref name="state"/>, start, end) over [0, count) in
    /// contiguous chunks, the same way as the other overload; with a static lambda nothing is
    /// allocated. Every chunk gets its own copy of <paramref name="state"/>.
    /// <paramref name="chunksPerThread"/> (default <see cref="ChunksPerThread"/>) sets how finely
    /// the items are cut: more, smaller chunks leave a shorter tail when one thread falls behind.
    /// </summary>
    public static void For<TState>(int count, long costPerItem, TState state, Action<TState, int, int> body,
        int chunksPerThread = ChunksPerThread)
    {
        if (count <= 0) return;
        int threads = Threads;
        int parts = Math.Min(threads, count);
        if (parts <= 1 || count * Math.Max(1, costPerItem) < InlineCost)
        {
            body(state, 0, count);
            return;
        }
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            OnThreadPool(count, parts, state, body);
            return;
        }
        try
        {
            // The state stays in this frame until Run returns, after every chunk has finished.
            int chunks = (int)Math.Min(count, (long)threads * Math.Max(1, chunksPerThread));
            Pool.Run(&Invoke<TState>, body, Unsafe.AsPointer(ref state), count, chunks, parts);
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>
    /// The path of a call that finds the pool taken: the same chunks on the .NET thread pool.
    /// (A separate method: a lambda capturing For's parameters would allocate its closure on
    /// every call of For, whichever path runs.)
    /// </summary>
    private static void OnThreadPool<TState>(int count, int parts, TState state, Action<TState, int, int> body) =>
        Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = parts }, w =>
        {
            var (start, end) = Chunk(count, parts, w);
            if (start < end) body(state, start, end);
        });

    /// <summary>Chunk <paramref name="part"/> of <paramref name="parts"/>: [count·part/parts, count·(part+1)/parts).</summary>
    private static (int Start, int End) Chunk(int count, int parts, int part) =>
        ((int)((long)count * part / parts), (int)((long)count * (part + 1) / parts));

    private static void Invoke<TState>(object body, void* state, int start, int end) =>
        ((Action<TState, int, int>)body)(Unsafe.Read<TState>(state), start, end);

    private static readonly WorkerPool Pool = new();

    /// <summary>
    /// The worker threads and the one job they share. <see cref="_claim"/> packs the job's
    /// generation (bits 40..63), its part count (bits 20..39) and the next unclaimed part (bits
    /// 0..19), so a worker can only claim a part of the job it read the part count of: a worker
    /// woken late (after its job was finished by others) sees next ≥ parts, or a newer generation
    /// whose fields were written before the claim word was published.
    /// </summary>
    private sealed class WorkerPool
    {
        private const int PartBits = 20;
        private const long PartMask = (1L << PartBits) - 1;

        private readonly SemaphoreSlim _wake = new(0);
        private readonly ManualResetEventSlim _done = new(false);
        private readonly object _grow = new();
        private int _workers;

        private long _claim;
        private int _pending;
        private delegate*<object, void*, int, int, void> _invoke;
        private object? _body;
        private void* _state;
        private int _count;
        private Exception? _error;

        /// <summary>
        /// Runs every one of <paramref name="parts"/> chunks of one job on the caller and
        /// <paramref name="threads"/> − 1 workers; returns when all have finished.
        /// </summary>
        public void Run(delegate*<object, void*, int, int, void> invoke, object body, void* state, int count, int parts, int threads)
        {
            EnsureWorkers(threads - 1);
            _invoke = invoke;
            _body = body;
            _state = state;
            _count = count;
            _error = null;
            _done.Reset();
            Volatile.Write(ref _pending, parts);
            long generation = (Volatile.Read(ref _claim) >>> (2 * PartBits)) + 1;
            Interlocked.Exchange(ref _claim, (generation << (2 * PartBits)) | ((long)parts << PartBits));
            _wake.Release(threads - 1);
            Help();
            if (!SpinUntil(forJob: false)) _done.Wait();
            // Wake-ups not taken yet belong to a finished job; drop them so no worker spins for nothing.
            while (_wake.CurrentCount > 0 && _wake.Wait(0)) { }
            _body = null;
            _state = null;
            if (_error is { } error)
            {
                _error = null;
                ExceptionDispatchInfo.Throw(error);
            }
        }

        /// <summary>Claims and runs parts of the current job until none is left.</summary>
        private void Help()
        {
            while (true)
            {
                long word = Volatile.Read(ref _claim);
                int parts = (int)((word >> PartBits) & PartMask), part = (int)(word & PartMask);
                if (part >= parts) return;
                if (Interlocked.CompareExchange(ref _claim, word + 1, word) != word) continue;
                try
                {
                    var (start, end) = Chunk(_count, parts, part);
                    if (start < end) _invoke(_body!, _state, start, end);
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref _error, e, null);
                }
                if (Interlocked.Decrement(ref _pending) == 0) _done.Set();
            }
        }

        private void EnsureWorkers(int needed)
        {
            if (Volatile.Read(ref _workers) >= needed) return;
            lock (_grow)
            {
                while (_workers < needed)
                {
                    var thread = new Thread(WorkerLoop) { IsBackground = true, Name = $"GRcn.Kernels worker {_workers + 1}" };
                    thread.Start();
                    _workers++;
                }
            }
        }

        private void WorkerLoop()
        {
            while (true)
            {
                // A job published while this worker spins is joined without its wake-up; the
                // unused wake-up is dropped by Run or, at worst, wakes this worker once for nothing.
                if (!SpinUntil(forJob: true)) _wake.Wait();
                Help();
            }
        }

        /// <summary>
        /// Spins until a job has an unclaimed part (<paramref name="forJob"/>) or every part of the
        /// current job has finished (otherwise); false when <see cref="SpinTime"/> passed first.
        /// </summary>
        private bool SpinUntil(bool forJob)
        {
            long until = Stopwatch.GetTimestamp() + SpinTime;
            // (the caller watches the event, not _pending: the event is set after the last decrement,
            // and a Set arriving after the next job's Reset would end that job early)
            while (forJob ? !HasUnclaimedPart() : !_done.IsSet)
            {
                if (Stopwatch.GetTimestamp() > until) return false;
                Thread.SpinWait(8);
            }
            return true;
        }

        private bool HasUnclaimedPart()
        {
            long word = Volatile.Read(ref _claim);
            return (word & PartMask) < ((word >> PartBits) & PartMask);
        }
    }
}
