// BenchmarkDotNet entry point: `dotnet run -c Release --project bench/GRcn.Benchmarks -- --filter '*gemm*'`
// (any BenchmarkDotNet arguments: --list flat, --job short, --memory, --disasm, ...).
using BenchmarkDotNet.Running;

BenchmarkSwitcher.FromAssembly(typeof(GRcn.Benchmarks.OpBenchmarks).Assembly).Run(args);
