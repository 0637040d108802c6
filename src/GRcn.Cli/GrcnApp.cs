// The grcn command tree and its entry point, shared by Program and the tests (which invoke it
// with their own output writers), plus Ctrl-C handling for long-running commands.
using System.CommandLine;
using GRcn.Cli.Commands;

namespace GRcn.Cli;

/// <summary>The grcn command line.</summary>
public static class GrcnApp
{
    /// <summary>The root command with every subcommand.</summary>
    public static RootCommand CreateRoot() => new("grcn: G-RCN detection kernels and engine")
    {
        TrainCommand.Create(),
        EvalCommand.Create(),
        DetectCommand.Create(),
        ShapesCommand.Create(),
        CompareCommand.Create(),
        GoldenCommand.Create(),
        DevicesCommand.Create(),
        CrossCheckCommand.Create(),
        BenchCommand.Create(),
    };

    /// <summary>Parses and runs <paramref name="args"/>; output and error default to the console.</summary>
    public static int Run(string[] args, TextWriter? output = null, TextWriter? error = null)
    {
        var config = new InvocationConfiguration { ProcessTerminationTimeout = null };
        if (output is not null) config.Output = output;
        if (error is not null) config.Error = error;
        return CreateRoot().Parse(args).Invoke(config);
    }

    /// <summary>
    /// Runs <paramref name="body"/> with a token that the first Ctrl-C cancels (the process
    /// keeps running so the command can save and exit cleanly); a second Ctrl-C kills it.
    /// </summary>
    internal static int WithCtrlC(Func<CancellationToken, int> body)
    {
        using var cts = new CancellationTokenSource();
        void Handler(object? sender, ConsoleCancelEventArgs e)
        {
            if (cts.IsCancellationRequested) return;
            e.Cancel = true;
            Console.Error.WriteLine("stopping after this step (Ctrl-C again to kill)…");
            cts.Cancel();
        }
        Console.CancelKeyPress += Handler;
        try
        {
            return body(cts.Token);
        }
        finally
        {
            Console.CancelKeyPress -= Handler;
        }
    }
}
