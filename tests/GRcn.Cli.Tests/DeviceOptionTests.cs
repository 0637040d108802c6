// --device on the commands that run the detector: a CUDA device that cannot be used here
// exits with code 2 and the reason on one line (no stack trace) before any work, on train,
// compare, eval, detect and bench train-step.
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
}
