// Runs torchvision_parity.py with Debian's /usr/bin/python3 (torch 1.13, torchvision 0.14) into a
// temporary directory and opens what it wrote: weights.safetensors (a torchvision state dict) and
// io.safetensors (the input and the reference feature maps).
using System.Diagnostics;
using GRcn.Kernels;
using GRcn.Kernels.Serialization;

namespace GRcn.Detection.Tests.Backbones;

/// <summary>Reference outputs of a torchvision backbone, generated on demand.</summary>
internal sealed class TorchvisionReference : IDisposable
{
    /// <summary>The interpreter with Debian's torch (not the python3 on PATH).</summary>
    public const string Python = "/usr/bin/python3";

    private const string InstallHint = "install them with: apt-get install python3-torch python3-torchvision";

    private TorchvisionReference(string directory)
    {
        Directory = directory;
        WeightsPath = Path.Combine(directory, "weights.safetensors");
        Io = SafeTensorsFile.Read(Path.Combine(directory, "io.safetensors"));
    }

    /// <summary>The temporary directory (deleted on dispose).</summary>
    public string Directory { get; }

    /// <summary>The torchvision state dict.</summary>
    public string WeightsPath { get; }

    /// <summary>"input" and the reference outputs.</summary>
    public SafeTensorsFile Io { get; }

    /// <summary>A tensor of io.safetensors on the CPU.</summary>
    public Tensor Load(string name) => Io.Load(name, Device.Cpu);

    /// <summary>Runs the script for <paramref name="arch"/>; fails the test (never skips) when torch is unavailable.</summary>
    public static TorchvisionReference Generate(string arch)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"grcn-tv-{arch}-{Environment.ProcessId}-{Guid.NewGuid():N}");
        System.IO.Directory.CreateDirectory(dir);
        try
        {
            RunScript(Path.Combine("Backbones", "torchvision_parity.py"), [arch, dir]);
            return new TorchvisionReference(dir);
        }
        catch
        {
            TryDelete(dir);
            throw;
        }
    }

    /// <summary>
    /// Runs <paramref name="relativeScript"/> (copied to the test output) with Debian's python and
    /// <paramref name="args"/>; returns its stdout. Fails the test (never skips) when torch is
    /// unavailable (the scripts exit 3), the script fails or runs past 5 minutes.
    /// </summary>
    public static string RunScript(string relativeScript, IReadOnlyList<string> args)
    {
        if (!File.Exists(Python))
            Assert.Fail($"{Python} not found: the torchvision parity tests need Debian's python3 with torch and torchvision; {InstallHint}");
        string script = Path.Combine(AppContext.BaseDirectory, relativeScript);
        Assert.True(File.Exists(script), $"parity script missing from the test output: {script}");
        var psi = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(script);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["OMP_NUM_THREADS"] = "4";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        string what = $"{script} {string.Join(' ', args)}";
        if (!p.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{what} did not finish in 5 minutes");
        }
        p.WaitForExit();
        if (p.ExitCode == 3)
            Assert.Fail($"{Python} cannot import torch/torchvision: {InstallHint}. ({stderr.Result.Trim()})");
        if (p.ExitCode != 0)
            Assert.Fail($"{what} exited with {p.ExitCode}:\n{stderr.Result}\n{stdout.Result}");
        return stdout.Result;
    }

    public void Dispose() => TryDelete(Directory);

    internal static void TryDelete(string dir)
    {
        try { System.IO.Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
