// grcn crosscheck --device D [--large] [--filter NAME]... [--json FILE]: runs every op, forward
// and backward, on the CPU backend and on device D with the same seeded inputs, and prints one
// row per compared tensor (max absolute error, worst error/tolerance, time on the device).
// Exit 0 when every tensor agrees, 1 when one does not, 2 for bad arguments or no such device.
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using GRcn.Cli.Checks;
using GRcn.Kernels;

namespace GRcn.Cli.Commands;

internal static class CrossCheckCommand
{
    public static Command Create()
    {
        var device = new Option<string>("--device") { Description = "Device to check against the CPU backend: cuda, cuda:N, emulator", DefaultValueFactory = _ => "cuda" };
        var large = new Option<bool>("--large") { Description = "The detector's real sizes (VGG16 convolutions, 2000 RoIs, 12000 boxes) instead of small ones" };
        var filter = new Option<string[]>("--filter") { Description = "Run only cases whose name contains this text (repeatable)" };
        var json = new Option<string?>("--json") { Description = "Also write the rows to this JSON file" };
        var command = new Command("crosscheck", "Compare every op, forward and backward, on a device against the CPU backend")
        {
            device, large, filter, json,
        };
        command.SetAction(parse => Run(parse.GetValue(device)!, parse.GetValue(large), parse.GetValue(filter) ?? [], parse.GetValue(json),
            parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error));
        return command;
    }

    private static int Run(string deviceName, bool large, string[] filters, string? jsonPath, TextWriter output, TextWriter error)
    {
        Device device;
        try
        {
            device = Device.Parse(deviceName);
        }
        catch (Exception e) when (e is ArgumentException or PlatformNotSupportedException)
        {
            error.WriteLine($"grcn crosscheck: {GrcnApp.Message(e)}");
            return 2;
        }
        if (device.Kind == DeviceKind.Cpu)
        {
            error.WriteLine("grcn crosscheck: --device must be another device than the CPU backend it is compared with (cuda, cuda:N or emulator)");
            return 2;
        }
        if (filters.Length > 0 && !DeviceCrossCheck.CaseNames(large).Any(n => filters.Any(f => n.Contains(f, StringComparison.OrdinalIgnoreCase))))
        {
            error.WriteLine($"grcn crosscheck: no case matches {string.Join(", ", filters)}; the cases are {string.Join(", ", DeviceCrossCheck.CaseNames(large))}");
            return 2;
        }
        var inv = CultureInfo.InvariantCulture;
        output.WriteLine($"{device.Name} against cpu ({(large ? "large" : "small")} shapes; tolerance rtol {DeviceCrossCheck.Rtol}, atol {DeviceCrossCheck.AtolScale}·max|cpu|; integers exact)");
        output.WriteLine($"{"case",-36} {"tensor",-12} {"result",-6} {"max abs err",12} {"err/tol",9} {"device s",9}");
        var rows = new List<CrossCheckResult>();
        try
        {
            foreach (var r in DeviceCrossCheck.Run(device, large, filters))
            {
                rows.Add(r);
                output.WriteLine(string.Format(inv, "{0,-36} {1,-12} {2,-6} {3,12:0.###e+0} {4,9:0.###} {5,9:0.###}",
                    r.Case, r.Tensor, r.Passed ? "ok" : "FAIL", r.MaxAbsError, r.WorstRatio, r.Seconds));
            }
        }
        catch (Exception e) when (e is NotSupportedException or GpuException or OutOfMemoryException)
        {
            error.WriteLine($"grcn crosscheck: {GrcnApp.Message(e)}");
            return 1;
        }
        int failed = rows.Count(r => !r.Passed);
        if (device is GpuDevice gpu && gpu.CompiledKernels.Count > 0)
            output.WriteLine(string.Format(inv, "{0} kernels compiled on first use in {1:0.0} s (slowest: {2})", gpu.CompiledKernels.Count,
                gpu.CompiledKernels.Values.Sum(),
                string.Join(", ", gpu.CompiledKernels.OrderByDescending(k => k.Value).Take(3).Select(k => string.Format(inv, "{0} {1:0.00} s", k.Key, k.Value)))));
        output.WriteLine($"crosscheck: {rows.Count - failed} of {rows.Count} tensors agree with the CPU backend{(failed > 0 ? $", {failed} differ" : "")}");
        if (jsonPath is not null)
        {
            try
            {
                File.WriteAllText(jsonPath, JsonSerializer.Serialize(rows, new JsonSerializerOptions { WriteIndented = true }));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                error.WriteLine($"grcn crosscheck: cannot write {jsonPath}: {GrcnApp.Message(e)}");
                return 2;
            }
        }
        return failed == 0 ? 0 : 1;
    }
}
