// grcn golden DIR... [--device cpu]: checks every golden fixture in the folders and prints one
// row per fixture (op, name, pass/fail, max abs error, worst error/tolerance ratio) with a row
// per tensor beneath it; exits 0 only if every fixture passes. Unreadable fixtures and unknown
// ops are failures.
using System.CommandLine;
using System.Globalization;
using GRcn.Kernels;
using GRcn.Kernels.Golden;

namespace GRcn.Cli.Commands;

internal static class GoldenCommand
{
    public static Command Create()
    {
        var dirs = new Argument<string[]>("dirs") { Description = "Folders (or files) of grcn-golden/1 fixtures", Arity = ArgumentArity.OneOrMore };
        var device = new Option<string>("--device") { Description = "Device to run on: cpu, cuda, cuda:N, emulator", DefaultValueFactory = _ => "cpu" };
        var quiet = new Option<bool>("--quiet") { Description = "Print only failures and the summary" };
        var command = new Command("golden", "Check golden fixtures against the kernels of a device") { dirs, device, quiet };
        command.SetAction(parse => Run(parse.GetValue(dirs)!, parse.GetValue(device)!, parse.GetValue(quiet)));
        return command;
    }

    private static int Run(string[] dirs, string deviceName, bool quiet)
    {
        Device device;
        IReadOnlyList<string> files;
        try
        {
            device = Device.Parse(deviceName);
            files = GoldenChecker.FindFixtures(dirs);
        }
        catch (Exception e) when (e is ArgumentException or PlatformNotSupportedException or DirectoryNotFoundException)
        {
            Console.Error.WriteLine($"grcn golden: {GrcnApp.Message(e)}");
            return 2;
        }
        if (files.Count == 0)
        {
            Console.Error.WriteLine($"grcn golden: no *.safetensors fixtures in {string.Join(", ", dirs)}");
            return 1;
        }

        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine($"device {device.Name}: {files.Count} fixtures");
        Console.WriteLine($"{"op",-18} {"fixture",-44} {"result",-6} {"max abs err",12} {"err/tol",9}");
        int failed = 0;
        foreach (var file in files)
        {
            var r = GoldenChecker.Check(file, device);
            if (!r.Passed) failed++;
            if (quiet && r.Passed) continue;
            Console.WriteLine(string.Format(inv, "{0,-18} {1,-44} {2,-6} {3,12:E2} {4,9:F3}",
                r.Op, r.Name, r.Passed ? "pass" : "FAIL", r.MaxAbsError, r.WorstRatio));
            if (r.Error is not null) Console.WriteLine($"    error: {r.Error}");
            foreach (var t in r.Tensors)
            {
                Console.WriteLine(string.Format(inv, "    {0,-60} {1,-6} {2,12:E2} {3,9:F3}{4}",
                    t.Name, t.Passed ? "pass" : "FAIL", t.MaxAbsError, t.WorstRatio, t.Message is null ? "" : "  " + t.Message));
            }
        }
        Console.WriteLine($"{files.Count - failed} passed, {failed} failed");
        return failed == 0 ? 0 : 1;
    }
}
