// Entry point of the grcn command.
using System.CommandLine;
using GRcn.Cli.Commands;

var root = new RootCommand("grcn: G-RCN detection kernels and engine")
{
    GoldenCommand.Create(),
    DevicesCommand.Create(),
    BenchCommand.Create(),
};
return root.Parse(args).Invoke();
