// grcn bench: performance measurement. `bench ops` times the op suite of bench/GRcn.Bench.Cases
// (the cases bench/torch_ops.py mirrors) and prints median / min milliseconds, GFLOP/s and the
// managed bytes allocated per iteration per case as an aligned table, optionally as JSON too; a case that cannot run (an op not yet
// implemented on the device) is an error row, never a crash. `bench peak` measures the
// float32 FMA peak of this machine on 1 and on all cores.
using System.CommandLine;
using System.Globalization;
using GRcn.Bench.Cases;
using GRcn.Kernels;

namespace GRcn.Cli.Commands;

internal static class BenchCommand
{
    public static Command Create() => new("bench", "Measure kernel performance")
    {
        CreateOps(),
        CreatePeak(),
        BenchTrainStep.Create(),
    };

    private static Command CreateOps()
    {
        var device = new Option<string>("--device") { Description = "Device to run on: cpu, cuda, cuda:N, emulator", DefaultValueFactory = _ => "cpu" };
        var json = new Option<string?>("--json") { Description = "Also write the results to this JSON file" };
        var filter = new Option<string[]>("--filter") { Description = "Run only cases whose name contains this text (repeatable)" };
        var repeats = new Option<int>("--repeats") { Description = "Timed iterations per case, at least", DefaultValueFactory = _ => 5 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed iterations per case first", DefaultValueFactory = _ => 2 };
        var minTime = new Option<double>("--min-time") { Description = "Keep timing a case until this many seconds have passed", DefaultValueFactory = _ => 1.0 };
        var maxRepeats = new Option<int>("--max-repeats") { Description = "Timed iterations per case, at most", DefaultValueFactory = _ => 200 };
        var threads = new Option<int?>("--threads") { Description = "CPU threads for the kernels (default: all logical cores)" };
        var list = new Option<bool>("--list") { Description = "List the cases and exit" };
        var command = new Command("ops", "Time the op benchmark suite (the cases of bench/torch_ops.py)")
        {
            device, json, filter, repeats, warmup, minTime, maxRepeats, threads, list,
        };
        command.SetAction(parse => RunOps(
            parse.GetValue(device)!, parse.GetValue(json), parse.GetValue(filter) ?? [],
            new MeasureOptions(parse.GetValue(warmup), parse.GetValue(repeats), parse.GetValue(minTime), parse.GetValue(maxRepeats)),
            parse.GetValue(threads), parse.GetValue(list)));
        return command;
    }

    private static Command CreatePeak()
    {
        var threads = new Option<int[]>("--threads") { Description = "Thread counts to measure (repeatable; default: 1 and all logical cores)" };
        var trials = new Option<int>("--trials") { Description = "Trials per thread count; the best is reported", DefaultValueFactory = _ => 5 };
        var seconds = new Option<double>("--seconds") { Description = "Length of one trial in seconds", DefaultValueFactory = _ => 0.5 };
        var command = new Command("peak", "Measure the float32 FMA peak (independent Vector256 FMA chains per thread)") { threads, trials, seconds };
        command.SetAction(parse => RunPeak(parse.GetValue(threads) ?? [], parse.GetValue(trials), parse.GetValue(seconds)));
        return command;
    }

    private static int RunOps(string deviceName, string? jsonPath, string[] filters, MeasureOptions options, int? threads, bool list)
    {
        var inv = CultureInfo.InvariantCulture;
        Device device;
        IReadOnlyList<OpCase> cases;
        try
        {
            options.Validate();
            device = Device.Parse(deviceName);
            DeviceOption.SetThreads(device, threads);
            cases = OpSuite.Select(filters);
        }
        catch (Exception e) when (e is ArgumentException or PlatformNotSupportedException)
        {
            Console.Error.WriteLine($"grcn bench ops: {GrcnApp.Message(e)}");
            return 2;
        }
        if (cases.Count == 0)
        {
            Console.Error.WriteLine($"grcn bench ops: no case matches {string.Join(", ", filters)}; the cases are {string.Join(", ", OpSuite.All.Select(c => c.Name))}");
            return 2;
        }
        if (list)
        {
            foreach (var c in cases) Console.WriteLine($"{c.Name,-32} {c.Description}");
            return 0;
        }

        string threadText = device is CpuDevice cd ? $" ({cd.Threads} threads)" : "";
        Console.WriteLine(string.Format(inv, "device {0}{1}: {2} cases; warmup {3}, then at least {4} repeats and {5} s per case (at most {6} repeats)",
            device.Name, threadText, cases.Count, options.Warmup, options.MinRepeats, options.MinSeconds, options.MaxRepeats));
        Console.WriteLine($"{"case",-32} {"median ms",11} {"min ms",11} {"GFLOP/s",9} {"repeats",7} {"alloc B/iter",12}");
        var results = new List<OpResult>();
        foreach (var c in cases)
        {
            var r = OpRunner.Run(c, device, options);
            results.Add(r);
            if (r.Error is not null)
                Console.WriteLine($"{r.Name,-32} {(r.Unsupported ? "not supported" : "ERROR")}: {r.Error}");
            else
                Console.WriteLine(string.Format(inv, "{0,-32} {1,11:F3} {2,11:F3} {3,9} {4,7} {5,12:F0}",
                    r.Name, r.MedianMs, r.MinMs, r.Gflops is double g ? g.ToString("F1", inv) : "-", r.Repeats, r.AllocBytes));
        }

        if (jsonPath is not null)
        {
            try
            {
                string? dir = Path.GetDirectoryName(Path.GetFullPath(jsonPath));
                if (dir is not null) Directory.CreateDirectory(dir);
                using var stream = File.Create(jsonPath);
                OpRunner.WriteJson(stream, results);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"grcn bench ops: cannot write {jsonPath}: {GrcnApp.Message(e)}");
                return 2;
            }
        }
        int failed = results.Count(r => r.Error is not null && !r.Unsupported);
        int unsupported = results.Count(r => r.Unsupported);
        Console.WriteLine($"{results.Count - failed - unsupported} measured, {unsupported} not supported on {device.Name}, {failed} failed");
        return failed == 0 ? 0 : 1;
    }

    private static int RunPeak(int[] threads, int trials, double seconds)
    {
        var inv = CultureInfo.InvariantCulture;
        if (!FmaPeak.IsSupported)
        {
            Console.Error.WriteLine("grcn bench peak: this processor has no AVX/FMA3");
            return 2;
        }
        if (threads.Length == 0) threads = Environment.ProcessorCount > 1 ? [1, Environment.ProcessorCount] : [1];
        if (threads.Any(t => t < 1 || t > CpuDevice.MaxThreads) || trials < 1 || !(seconds > 0))
        {
            Console.Error.WriteLine($"grcn bench peak: --threads must be in [1, {CpuDevice.MaxThreads}], --trials at least 1 and --seconds positive");
            return 2;
        }
        Console.WriteLine(string.Format(inv, "float32 FMA peak: {0} independent Vector256 FMA chains per thread, best of {1} trials of {2} s",
            FmaPeak.Chains, trials, seconds));
        Console.WriteLine($"{"threads",7} {"GFLOP/s",9} {"median",9} {"per thread",10}");
        foreach (int t in threads)
        {
            var r = FmaPeak.Measure(t, trials, seconds);
            Console.WriteLine(string.Format(inv, "{0,7} {1,9:F1} {2,9:F1} {3,10:F1}", r.Threads, r.Gflops, r.MedianGflops, r.GflopsPerThread));
        }
        return 0;
    }
}
