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

    /// <summary>Sets the CPU threads of <paramref name="device"/> to <paramref name="threads"/> (null: leave the default; other devices ignore it).</summary>
    /// <exception cref="ArgumentException">--threads is outside [1, <see cref="CpuDevice.MaxThreads"/>].</exception>
    public static void SetThreads(Device device, int? threads)
    {
        CheckThreads(threads);
        if (threads is int t && device is CpuDevice cpu) cpu.Threads = t;
    }

    /// <summary>Checks a --threads value (null: the default).</summary>
    /// <exception cref="ArgumentException">It is outside [1, <see cref="CpuDevice.MaxThreads"/>].</exception>
    public static void CheckThreads(int? threads)
    {
        if (threads is < 1 || threads > CpuDevice.MaxThreads)
            throw new ArgumentException($"--threads must be in [1, {CpuDevice.MaxThreads}] (8 per logical core); got {threads}", "--threads");
    }

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
