// The --device option of the commands that run the detector (train, compare, eval, detect,
// bench train-step): a device name opened up front, so that a device that cannot be used
// (no NVIDIA driver, no GPU, an unsupported one) is reported as an invalid option value —
// exit code 2 with the reason on one line — before any data is read or any work is done.
using System.CommandLine;
using GRcn.Kernels;

namespace GRcn.Cli.Commands;

internal static class DeviceOption
{
    /// <summary>Help text of every --device option that runs the detector.</summary>
    public const string Help = "cpu, cuda, cuda:N or emulator (ILGPU's CPU emulation of an NVIDIA GPU: the CUDA kernels, slowly)";

    /// <summary>A new --device option defaulting to cpu.</summary>
    public static Option<string> Create() => new("--device") { Description = Help, DefaultValueFactory = _ => "cpu" };

    /// <summary>Opens the device named <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">The name is not a device, or the device cannot be used here (the message says why).</exception>
    public static Device Open(string name)
    {
        try
        {
            return Device.Parse(name);
        }
        catch (PlatformNotSupportedException e)
        {
            throw new ArgumentException($"--device {name}: {e.Message}", e);
        }
    }
}
