// The op suite of GRcn.Bench.Cases under BenchmarkDotNet: one parameterised benchmark whose
// parameter is the case name, so the cases stay defined in one place. Inputs are allocated
// in the global setup; each invocation runs one iteration of the case (which disposes its
// outputs). `grcn bench ops` is the quick, comparable measurement; this is for profiling.
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using GRcn.Bench.Cases;
using GRcn.Kernels;

namespace GRcn.Benchmarks;

/// <summary>Every case of <see cref="OpSuite"/> on the CPU device.</summary>
[Config(typeof(Config))]
public class OpBenchmarks
{
    /// <summary>Shows the case names in full in the summary table.</summary>
    public sealed class Config : ManualConfig
    {
        /// <summary>Creates the configuration.</summary>
        public Config() => SummaryStyle = SummaryStyle.Default.WithMaxParameterColumnWidth(40);
    }

    private PreparedCase? _prepared;

    /// <summary>The case names, BenchmarkDotNet's parameter values.</summary>
    public static IEnumerable<string> CaseNames => OpSuite.All.Select(c => c.Name);

    /// <summary>Name of the case being measured.</summary>
    [ParamsSource(nameof(CaseNames))]
    public string Case { get; set; } = "";

    /// <summary>Allocates the case's inputs.</summary>
    [GlobalSetup]
    public void Setup() => _prepared = OpSuite.Get(Case).Prepare(Device.Cpu);

    /// <summary>One iteration of the case.</summary>
    [Benchmark]
    public void Run() => _prepared!.Run();

    /// <summary>Releases the inputs.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _prepared?.Dispose();
        _prepared = null;
    }
}
