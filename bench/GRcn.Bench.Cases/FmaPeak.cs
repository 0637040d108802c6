// Measured peak float32 FMA throughput: each thread runs 12 independent Vector256 FMA chains
// (enough to cover the FMA latency × FMA ports of current x86 cores), every FMA being
// 8 lanes × 2 FLOP. The best of several trials is the machine's practical peak, the yardstick
// for the GEMM and convolution GFLOP/s of the op suite.
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GRcn.Bench.Cases;

/// <summary>One peak measurement.</summary>
/// <param name="Threads">Threads running chains at once.</param>
/// <param name="Gflops">Best total GFLOP/s over the trials.</param>
/// <param name="MedianGflops">Median total GFLOP/s over the trials.</param>
/// <param name="Trials">Trials run.</param>
public sealed record FmaPeakResult(int Threads, double Gflops, double MedianGflops, int Trials)
{
    /// <summary>Best GFLOP/s per thread.</summary>
    public double GflopsPerThread => Gflops / Threads;
}

/// <summary>Peak FMA micro-benchmark.</summary>
public static class FmaPeak
{
    /// <summary>Independent FMA chains per thread.</summary>
    public const int Chains = 12;

    /// <summary>FLOP per loop iteration of one thread: chains × 8 lanes × 2.</summary>
    public const double FlopsPerIteration = Chains * 8 * 2;

    /// <summary>Whether the processor has AVX and FMA3.</summary>
    public static bool IsSupported => Fma.IsSupported && Avx.IsSupported;

    /// <summary>Measures <paramref name="threads"/> threads of FMA chains, <paramref name="trials"/> trials of about <paramref name="secondsPerTrial"/> each.</summary>
    /// <exception cref="PlatformNotSupportedException">The processor has no FMA3.</exception>
    public static FmaPeakResult Measure(int threads, int trials = 5, double secondsPerTrial = 0.5)
    {
        if (!IsSupported) throw new PlatformNotSupportedException("the processor has no AVX/FMA3; the FMA peak cannot be measured");
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(trials, 1);

        // Calibrate on one thread (this also compiles the loop).
        long probe = 1 << 20;
        double probeSeconds;
        while (true)
        {
            long t0 = Stopwatch.GetTimestamp();
            Sink(Run(probe));
            probeSeconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            if (probeSeconds > 0.02) break;
            probe *= 4;
        }
        long iterations = Math.Max(1, (long)(probe * secondsPerTrial / probeSeconds));

        var rates = new double[trials];
        for (int t = 0; t < trials; t++)
        {
            double seconds = RunThreads(threads, iterations);
            rates[t] = threads * iterations * FlopsPerIteration / seconds / 1e9;
        }
        Array.Sort(rates);
        return new FmaPeakResult(threads, rates[^1], rates[trials / 2], trials);
    }

    private static double RunThreads(int threads, long iterations)
    {
        using var start = new Barrier(threads + 1);
        var workers = new Thread[threads];
        for (int i = 0; i < threads; i++)
        {
            workers[i] = new Thread(() =>
            {
                start.SignalAndWait();
                Sink(Run(iterations));
            }) { IsBackground = true };
            workers[i].Start();
        }
        start.SignalAndWait();
        long t0 = Stopwatch.GetTimestamp();
        foreach (var w in workers) w.Join();
        return Stopwatch.GetElapsedTime(t0).TotalSeconds;
    }

    private static float _sink;

    private static void Sink(float value) => Volatile.Write(ref _sink, value);

    /// <summary>12 independent chains a = a·m + c; they converge to c / (1 − m), never to denormals or infinity.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Run(long iterations)
    {
        var m = Vector256.Create(0.999f);
        var c = Vector256.Create(0.001f);
        var a0 = Vector256.Create(0.10f);
        var a1 = Vector256.Create(0.11f);
        var a2 = Vector256.Create(0.12f);
        var a3 = Vector256.Create(0.13f);
        var a4 = Vector256.Create(0.14f);
        var a5 = Vector256.Create(0.15f);
        var a6 = Vector256.Create(0.16f);
        var a7 = Vector256.Create(0.17f);
        var a8 = Vector256.Create(0.18f);
        var a9 = Vector256.Create(0.19f);
        var a10 = Vector256.Create(0.20f);
        var a11 = Vector256.Create(0.21f);
        for (long i = 0; i < iterations; i++)
        {
            a0 = Fma.MultiplyAdd(a0, m, c);
            a1 = Fma.MultiplyAdd(a1, m, c);
            a2 = Fma.MultiplyAdd(a2, m, c);
            a3 = Fma.MultiplyAdd(a3, m, c);
            a4 = Fma.MultiplyAdd(a4, m, c);
            a5 = Fma.MultiplyAdd(a5, m, c);
            a6 = Fma.MultiplyAdd(a6, m, c);
            a7 = Fma.MultiplyAdd(a7, m, c);
            a8 = Fma.MultiplyAdd(a8, m, c);
            a9 = Fma.MultiplyAdd(a9, m, c);
            a10 = Fma.MultiplyAdd(a10, m, c);
            a11 = Fma.MultiplyAdd(a11, m, c);
        }
        var sum = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11));
        return Vector256.Sum(sum);
    }
}
