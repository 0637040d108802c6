// The measurement rule of the op suite (bench/torch_ops.py follows the same rule): allocate
// the inputs once, run `warmup` untimed iterations, then time iterations one by one until at
// least `MinRepeats` were timed and `MinSeconds` have passed, or `MaxRepeats` were timed.
// A case that throws (e.g. an op not implemented on the device) gives an error result.
// Managed allocation is measured over the timed iterations: the process-wide allocated-bytes
// counter (all threads, GC.GetTotalAllocatedBytes(precise: true)) before and after, divided by
// the iteration count.
using System.Diagnostics;
using System.Text.Json;
using GRcn.Kernels;

namespace GRcn.Bench.Cases;

/// <summary>How many iterations to run per case.</summary>
/// <param name="Warmup">Untimed iterations first (≥ 0).</param>
/// <param name="MinRepeats">Timed iterations at least (≥ 1).</param>
/// <param name="MinSeconds">Keep timing until this much time has passed (as well as <paramref name="MinRepeats"/>).</param>
/// <param name="MaxRepeats">Stop after this many timed iterations regardless of the time.</param>
public sealed record MeasureOptions(int Warmup = 2, int MinRepeats = 5, double MinSeconds = 1.0, int MaxRepeats = 200)
{
    /// <summary>Throws if an option is out of range.</summary>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfNegative(Warmup, nameof(Warmup));
        ArgumentOutOfRangeException.ThrowIfLessThan(MinRepeats, 1, nameof(MinRepeats));
        ArgumentOutOfRangeException.ThrowIfNegative(MinSeconds, nameof(MinSeconds));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRepeats, MinRepeats, nameof(MaxRepeats));
    }
}

/// <summary>The outcome of one case.</summary>
/// <param name="Name">Case name.</param>
/// <param name="MedianMs">Median iteration time in milliseconds, or null on error.</param>
/// <param name="MinMs">Fastest iteration in milliseconds, or null on error.</param>
/// <param name="Gflops">FLOP count / median time in GFLOP/s, or null where it does not apply or on error.</param>
/// <param name="Repeats">Timed iterations.</param>
/// <param name="Error">Why the case could not run, or null.</param>
/// <param name="Unsupported">Whether the error says the op is not implemented on the device (an expected gap, not a failure).</param>
/// <param name="AllocBytes">Managed bytes allocated per timed iteration (all threads), or null on error.</param>
public sealed record OpResult(string Name, double? MedianMs, double? MinMs, double? Gflops, int Repeats, string? Error,
    bool Unsupported = false, double? AllocBytes = null);

/// <summary>The timed iterations of one case.</summary>
/// <param name="Milliseconds">Each iteration's time.</param>
/// <param name="AllocatedBytes">Managed bytes allocated over all of them (every thread of the process).</param>
public sealed record Timings(List<double> Milliseconds, long AllocatedBytes)
{
    /// <summary>Allocated bytes per iteration.</summary>
    public double AllocBytesPerIteration => Milliseconds.Count == 0 ? 0 : (double)AllocatedBytes / Milliseconds.Count;
}

/// <summary>Runs cases by the measurement rule.</summary>
public static class OpRunner
{
    /// <summary>Times <paramref name="opCase"/> on <paramref name="device"/>; never throws for a failing case.</summary>
    public static OpResult Run(OpCase opCase, Device device, MeasureOptions options)
    {
        ArgumentNullException.ThrowIfNull(opCase);
        options.Validate();
        try
        {
            using var prepared = opCase.Prepare(device);
            var timings = Measure(prepared, options);
            var times = timings.Milliseconds;
            double median = Median(times);
            double min = times.Min();
            double? gflops = opCase.Flops is double f ? f / (median * 1e-3) / 1e9 : null;
            return new OpResult(opCase.Name, median, min, gflops, times.Count, null, AllocBytes: timings.AllocBytesPerIteration);
        }
        catch (Exception e)
        {
            return new OpResult(opCase.Name, null, null, null, 0, $"{e.GetType().Name}: {e.Message}", e is NotSupportedException);
        }
        finally
        {
            if (device is CpuDevice cpu) cpu.TrimCache();
        }
    }

    /// <summary>
    /// Runs the warm-up, then the timed iterations; returns each iteration's milliseconds and
    /// the managed bytes allocated while they ran (the list of times is sized up front so that
    /// it does not count).
    /// </summary>
    public static Timings Measure(PreparedCase prepared, MeasureOptions options)
    {
        ArgumentNullException.ThrowIfNull(prepared);
        for (int i = 0; i < options.Warmup; i++) prepared.Run();
        var times = new List<double>(options.MaxRepeats);
        long allocated0 = GC.GetTotalAllocatedBytes(precise: true);
        long start = Stopwatch.GetTimestamp();
        while (times.Count < options.MaxRepeats &&
               (times.Count < options.MinRepeats || Stopwatch.GetElapsedTime(start).TotalSeconds < options.MinSeconds))
        {
            long t0 = Stopwatch.GetTimestamp();
            prepared.Run();
            times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
        }
        long allocated1 = GC.GetTotalAllocatedBytes(precise: true);
        return new Timings(times, allocated1 - allocated0);
    }

    /// <summary>Median of <paramref name="values"/> (mean of the middle two for an even count).</summary>
    public static double Median(IReadOnlyCollection<double> values)
    {
        if (values.Count == 0) throw new ArgumentException("no values", nameof(values));
        var sorted = values.Order().ToArray();
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : 0.5 * (sorted[mid - 1] + sorted[mid]);
    }

    /// <summary>
    /// Writes <paramref name="results"/> as a JSON array of
    /// <c>{"name", "median_ms", "min_ms", "gflops", "repeats", "alloc_bytes", "error"}</c> (nulls where
    /// not applicable), the schema bench/torch_ops.py writes too (without <c>alloc_bytes</c>).
    /// </summary>
    public static void WriteJson(Stream stream, IEnumerable<OpResult> results)
    {
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        w.WriteStartArray();
        foreach (var r in results)
        {
            w.WriteStartObject();
            w.WriteString("name", r.Name);
            WriteNumber(w, "median_ms", r.MedianMs);
            WriteNumber(w, "min_ms", r.MinMs);
            WriteNumber(w, "gflops", r.Gflops);
            w.WriteNumber("repeats", r.Repeats);
            WriteNumber(w, "alloc_bytes", r.AllocBytes);
            if (r.Error is null) w.WriteNull("error");
            else w.WriteString("error", r.Error);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    private static void WriteNumber(Utf8JsonWriter w, string name, double? value)
    {
        if (value is double v) w.WriteNumber(name, Math.Round(v, 4));
        else w.WriteNull(name);
    }
}
