// The grcn command tree and its entry point, shared by Program and the tests (which invoke it
// with their own output writers): parse errors exit 2 with one line each, any exception a
// command lets escape becomes one line (never a stack trace) with its exit code, and Ctrl-C,
// SIGTERM and SIGHUP stop long-running commands cleanly. Exit codes: 0 done, 1 training
// diverged (or checks failed), 2 bad arguments or data, 70 internal error (a bug), 130
// interrupted by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP.
using System.CommandLine;
using System.CommandLine.Invocation;
using System.Runtime.InteropServices;
using GRcn.Cli.Commands;

namespace GRcn.Cli;

/// <summary>The grcn command line.</summary>
public static class GrcnApp
{
    /// <summary>Exit code of bad arguments or data.</summary>
    public const int BadInput = 2;

    /// <summary>Exit code of an unexpected failure (a bug in grcn).</summary>
    public const int InternalError = 70;

    /// <summary>Exit code of a run stopped by Ctrl-C (SIGINT): 128 + 2.</summary>
    public const int Interrupted = 130;

    /// <summary>The text of the exit codes, for --help and README.md.</summary>
    public const string ExitCodes =
        "Exit codes: 0 done; 1 training diverged or a check failed; 2 bad arguments or data; 70 internal error; " +
        "130 interrupted by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP (training writes its checkpoint first; continue with --resume).";

    /// <summary>The root command with every subcommand.</summary>
    public static RootCommand CreateRoot() => new("grcn: G-RCN detection kernels and engine. " + ExitCodes)
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
        var config = new InvocationConfiguration { ProcessTerminationTimeout = null, EnableDefaultExceptionHandler = false };
        if (output is not null) config.Output = output;
        if (error is not null) config.Error = error;
        var e = config.Error;
        var parse = CreateRoot().Parse(args);
        if (parse.Action is ParseErrorAction)
        {
            foreach (var err in parse.Errors) e.WriteLine($"grcn: {err.Message}");
            e.WriteLine(parse.CommandResult.Command is RootCommand ? "see grcn --help" : $"see grcn {parse.CommandResult.Command.Name} --help");
            return BadInput;
        }
        try
        {
            return parse.Invoke(config);
        }
        catch (Exception ex)
        {
            e.WriteLine(Describe(ex, out int code));
            return code;
        }
    }

    /// <summary>The message of <paramref name="ex"/> without .NET's " (Parameter 'NAME')" tail: the text names the option itself.</summary>
    internal static string Message(Exception ex) => ex is ArgumentException { ParamName: { } name } a
        ? a.Message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal)
        : ex.Message;

    /// <summary>One line for an exception that reached the top, and its exit code: 2 for bad input or a resource limit, 70 otherwise.</summary>
    internal static string Describe(Exception ex, out int code)
    {
        if (ex is AggregateException { InnerExceptions.Count: 1 } agg) ex = agg.InnerExceptions[0];
        switch (ex)
        {
            case ArgumentException or IOException or InvalidDataException or UnauthorizedAccessException or NotSupportedException
                or GRcn.Detection.Nn.StateDictException or System.Text.Json.JsonException:
                code = BadInput;
                return $"grcn: {Message(ex)}";
            case OutOfMemoryException or InsufficientExecutionStackException:
                code = BadInput;
                return $"grcn: out of memory ({ex.Message}); try smaller --size, --batch or --width";
            default:
                code = InternalError;
                return $"grcn: internal error: {ex.GetType().Name}: {ex.Message} (please report this with the command line)";
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/> with a token that the first Ctrl-C, SIGTERM or SIGHUP cancels (the process keeps
    /// running so the command can save and exit cleanly); a second one ends the process at once. When the body
    /// returns <see cref="Interrupted"/> after a SIGTERM or SIGHUP, the result is 128 + that signal (143, 129).
    /// </summary>
    internal static int WithCtrlC(Func<CancellationToken, int> body, TextWriter? error = null)
    {
        error ??= Console.Error;
        using var cts = new CancellationTokenSource();
        int signalCode = Interrupted;
        void Stop(string what, int code)
        {
            signalCode = code;
            error.WriteLine($"{what}: stopping after this step, the checkpoint is written first ({what} again to end at once)…");
            cts.Cancel();
        }
        void Handler(object? sender, ConsoleCancelEventArgs e)
        {
            if (cts.IsCancellationRequested) return;
            e.Cancel = true;
            Stop("Ctrl-C", Interrupted);
        }
        PosixSignalRegistration? Register(PosixSignal signal, string name, int code)
        {
            try
            {
                return PosixSignalRegistration.Create(signal, ctx =>
                {
                    // the second one keeps the default action: the process ends
                    if (cts.IsCancellationRequested) return;
                    ctx.Cancel = true;
                    Stop(name, code);
                });
            }
            catch (PlatformNotSupportedException)
            {
                return null;
            }
        }
        Console.CancelKeyPress += Handler;
        using var term = Register(PosixSignal.SIGTERM, "SIGTERM", 128 + 15);
        using var hup = Register(PosixSignal.SIGHUP, "SIGHUP", 128 + 1);
        try
        {
            int code = body(cts.Token);
            return code == Interrupted ? signalCode : code;
        }
        finally
        {
            Console.CancelKeyPress -= Handler;
        }
    }
}
