// grcn devices: lists every device, with the reason for each one that cannot be used.
using System.CommandLine;
using GRcn.Kernels;

namespace GRcn.Cli.Commands;

internal static class DevicesCommand
{
    public static Command Create()
    {
        var command = new Command("devices", "List compute devices and whether each can be used");
        command.SetAction(_ =>
        {
            foreach (var d in Device.List())
                Console.WriteLine($"{d.Name,-8} {(d.Available ? "available  " : "unavailable")}  {d.Description}");
            return 0;
        });
        return command;
    }
}
