// --device on the commands that run the detector: a CUDA device that cannot be used here
// exits with code 2 and the reason on one line (no stack trace) before any work, on train,
// compare, eval, detect and bench train-step; and a tiny grcn train runs on the emulator.
using GRcn.Kernels;

namespace GRcn.Cli.Tests;

public class DeviceOptionTests
{
    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = GrcnApp.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    /// <summary>A CUDA device name that cannot be opened on this machine, and why (Device.Cuda's own message).</summary>
    private static (string Name, string Reason) UnusableCuda()
    {
        try
        {
            _ = Device.Cuda(0);
            // on a GPU machine plain "cuda" opens: ask for an ordinal that is not there
            return ("cuda:64", "CUDA device 64 requested");
        }
        catch (PlatformNotSupportedException e)
        {
            return ("cuda", e.Message);
        }
    }

    public static TheoryData<string> Commands() => ["train", "compare", "eval", "detect", "bench train-step"];

    [Theory]
    [MemberData(nameof(Commands))]
    public void AnUnusableCudaDeviceExitsWithTwoAndTheReason(string command)
    {
        var (name, reason) = UnusableCuda();
        using var tmp = new TempDir();
        string[] args = command switch
        {
            "train" => ["train", "--out", tmp.Path],
            "compare" => ["compare", "--variants", "g-rcn", "--out", tmp.Path],
            "eval" => ["eval", "--checkpoint", Path.Combine(tmp.Path, "none.safetensors")],
            "detect" => ["detect", "--checkpoint", Path.Combine(tmp.Path, "none.safetensors"), "--out", tmp.Path, Path.Combine(tmp.Path, "none.png")],
            _ => ["bench", "train-step"],
        };
        var (code, output, err) = Run([.. args, "--device", name]);
        Assert.True(code == 2, $"{command}: exit {code}\n{output}{err}");
        string line = Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"grcn {command}: --device {name}: ", line);
        Assert.Contains(reason, line);
        Assert.DoesNotContain(" at ", line);
        Assert.Empty(Directory.GetFileSystemEntries(tmp.Path));
    }

    [Fact]
    public void TrainRunsOnTheEmulator()
    {
        using var tmp = new TempDir();
        string run = Path.Combine(tmp.Path, "run");
        var (code, output, err) = Run("train", "--device", "emulator", "--iters", "1", "--out", run, "--width", "0.0625", "--size", "64",
            "--batch", "1", "--train-images", "2", "--test-images", "1", "--anchors", "16", "32");
        Assert.True(code == 0, output + err);
        Assert.Contains("emulator", output);
        Assert.True(File.Exists(Path.Combine(run, "checkpoint.safetensors")));
        Assert.Single(GRcn.Cli.Training.TrainSession.ReadLosses(Path.Combine(run, "losses.csv")));
    }
}
