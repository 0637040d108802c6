// Faults a user can cause, each a clear one-line error with the documented exit code or a safe
// outcome: parse errors and missing options exit 2; options have upper bounds; endless streams
// are refused; train never replaces a checkpoint without --resume or --overwrite, checks options
// against the checkpoint on --resume, keeps the loss history through a torn last line, removes
// orphaned checkpoint temporaries and stops on SIGTERM with a checkpoint (exit 143), on SIGHUP
// (129) unless started under nohup, which leaves SIGHUP ignored; detect never
// writes over an input and goes on past a bad image; a COCO set with a corrupt image or other
// evaluation classes is refused before training; golden goes on past an unreadable fixture.
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using GRcn.Cli.Training;
using GRcn.Detection.Data;
using GRcn.Kernels;
using GRcn.Kernels.Golden;
using GRcn.Kernels.Serialization;

namespace GRcn.Cli.Tests;

/// <summary>A 2-iteration tiny run (checkpoint and losses.csv) made once for the tests that copy it.</summary>
public sealed class TinyRun : IDisposable
{
    public static readonly string[] Tiny =
        ["--width", "0.0625", "--size", "64", "--batch", "2", "--train-images", "8", "--test-images", "2", "--threads", "2", "--eval-every", "0"];

    private readonly TempDir _tmp = new();

    public TinyRun()
    {
        Folder = Path.Combine(_tmp.Path, "run");
        var (code, output, err) = ReliabilityTests.Run(["train", "--iters", "2", "--checkpoint-every", "1", "--out", Folder, .. Tiny]);
        Assert.True(code == 0, output + err);
    }

    public string Folder { get; }

    public string Checkpoint => Path.Combine(Folder, TrainSession.CheckpointFile);

    /// <summary>A new folder holding a copy of the run's checkpoint and losses.csv.</summary>
    public string CopyTo(string dir)
    {
        Directory.CreateDirectory(dir);
        foreach (var f in new[] { TrainSession.CheckpointFile, "losses.csv" }) File.Copy(Path.Combine(Folder, f), Path.Combine(dir, f));
        return dir;
    }

    public void Dispose() => _tmp.Dispose();
}

public sealed class ReliabilityTests(TinyRun run) : IClassFixture<TinyRun>
{
    internal static (int Code, string Out, string Err) Run(params string[] args) => CommandTests.Run(args);

    /// <summary>Exit code 2 and an error naming <paramref name="words"/>, on lines that are no stack trace.</summary>
    private static string AssertBadInput((int Code, string Out, string Err) r, params string[] words)
    {
        Assert.True(r.Code == 2, $"exit {r.Code}: {r.Out}{r.Err}");
        foreach (var w in words) Assert.Contains(w, r.Err);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.DoesNotContain("internal error", r.Err);
        Assert.DoesNotContain("(Parameter '", r.Err);
        return r.Err;
    }

    [Theory]
    [InlineData("train --bogus", "--bogus")]
    [InlineData("train --iters many", "many")]
    [InlineData("detect image.png", "--checkpoint")]
    [InlineData("eval --limit", "--limit")]
    [InlineData("nosuchcommand", "nosuchcommand")]
    public void ParseErrorsAndMissingRequiredOptionsExitWithTwo(string args, string named) =>
        AssertBadInput(Run(args.Split(' ')), named, "--help");

    [Fact]
    public void ExceptionsThatEscapeACommandBecomeOneLineWithTheirExitCode()
    {
        Assert.Equal("grcn: --size must be in [1, 2]", GrcnApp.Describe(new ArgumentException("--size must be in [1, 2]", "--size"), out int code));
        Assert.Equal(2, code);
        Assert.Contains("out of memory", GrcnApp.Describe(new OutOfMemoryException(), out code));
        Assert.Equal(2, code);
        Assert.Equal("grcn: internal error: InvalidOperationException: broken (please report this with the command line)",
            GrcnApp.Describe(new AggregateException(new InvalidOperationException("broken")), out code));
        Assert.Equal(70, code);
    }

    [Theory]
    [InlineData("--threads", "100000")]
    [InlineData("--size", "100000")]
    [InlineData("--size", "2147483647")]
    [InlineData("--train-sizes", "1000000")]
    [InlineData("--batch", "100000")]
    [InlineData("--train-images", "2000000000")]
    [InlineData("--test-images", "2000000000")]
    [InlineData("--log-every", "0")]
    [InlineData("--anchors", "1e30")]
    [InlineData("--seeds", "100000000")]
    [InlineData("--lr", "1e300")]
    public void TrainOptionsHaveUpperBounds(string option, string value)
    {
        using var tmp = new TempDir();
        string[] command = option == "--seeds" ? ["compare", "--variants", "g-rcn"] : ["train"];
        AssertBadInput(Run([.. command, option, value, "--out", tmp.Path]), option);
        Assert.Empty(Directory.GetFiles(tmp.Path));
    }

    [Theory]
    [InlineData("detect", "--threads", "100000")]
    [InlineData("detect", "--size", "1000000")]
    [InlineData("eval", "--threads", "100000")]
    [InlineData("eval", "--size", "1000000")]
    public void DetectAndEvalOptionsHaveUpperBounds(string command, string option, string value)
    {
        var args = command == "detect" ? new[] { "detect", "x.png", "--checkpoint", run.Checkpoint } : ["eval", "--checkpoint", run.Checkpoint];
        AssertBadInput(Run([.. args, option, value]), option);
    }

    [Fact]
    public void TrainRefusesToReplaceACheckpointWithoutResumeOrOverwrite()
    {
        using var tmp = new TempDir();
        string dir = run.CopyTo(Path.Combine(tmp.Path, "run"));
        string ckpt = Path.Combine(dir, TrainSession.CheckpointFile);
        var before = File.ReadAllBytes(ckpt);
        AssertBadInput(Run(["train", "--iters", "1", "--out", dir, .. TinyRun.Tiny]), ckpt, "--resume", "--overwrite");
        Assert.Equal(before, File.ReadAllBytes(ckpt));
        AssertBadInput(Run(["train", "--iters", "1", "--out", dir, "--resume", "--overwrite", .. TinyRun.Tiny]), "--overwrite");
        var (code, output, err) = Run(["train", "--iters", "1", "--out", dir, "--overwrite", .. TinyRun.Tiny]);
        Assert.True(code == 0, output + err);
        Assert.Equal([1], TrainSession.ReadLosses(Path.Combine(dir, "losses.csv")).Select(l => l.Iteration));
    }

    [Theory]
    [InlineData("--width", "0.125", "0.0625")]
    [InlineData("--variant", "faster-rcnn", "g-rcn+roi-align-v2")]
    [InlineData("--size", "96", "64")]
    [InlineData("--seed", "7", "0")]
    [InlineData("--backbone", "resnet50", "vgg16")]
    public void ResumeWithOtherNetworkOptionsNamesBothValues(string option, string value, string saved)
    {
        using var tmp = new TempDir();
        string dir = run.CopyTo(Path.Combine(tmp.Path, "run"));
        var args = TinyRun.Tiny.Where((a, i) => a != option && (i == 0 || TinyRun.Tiny[i - 1] != option)).ToArray();
        var err = AssertBadInput(Run(["train", "--iters", "3", "--out", dir, "--resume", option, value, .. args]), option, value, saved);
        Assert.Contains("checkpoint", err);
    }

    [Fact]
    public void ATornLastLossLineNeitherBlocksResumeNorSurvivesIt()
    {
        using var tmp = new TempDir();
        string dir = run.CopyTo(Path.Combine(tmp.Path, "run"));
        string losses = Path.Combine(dir, "losses.csv");
        File.AppendAllText(losses, "3,0.001,0.69");
        // an orphaned temporary of a killed checkpoint write (no such process) and one of this process's own name pattern
        string orphan = Path.Combine(dir, $".{TrainSession.CheckpointFile}.{int.MaxValue - 1}.{Guid.NewGuid():N}.tmp");
        File.WriteAllBytes(orphan, [1, 2, 3]);
        var (code, output, err) = Run(["train", "--iters", "3", "--out", dir, "--resume", .. TinyRun.Tiny]);
        Assert.True(code == 0, output + err);
        Assert.Contains("incomplete", err);
        Assert.Contains("removed", output);
        Assert.False(File.Exists(orphan));
        Assert.Equal([1, 2, 3], TrainSession.ReadLosses(losses).Select(l => l.Iteration));

        // a malformed line before the last is an error naming the file and line, not an exception
        var lines = File.ReadAllLines(losses);
        lines[1] = "garbage";
        File.WriteAllLines(losses, lines);
        AssertBadInput(Run(["train", "--iters", "4", "--out", dir, "--resume", .. TinyRun.Tiny]), "losses.csv", "line 2");
    }

    [Fact]
    public void ACheckpointTensorOfAnotherDtypeIsRefusedOnResume()
    {
        using var tmp = new TempDir();
        string dir = run.CopyTo(Path.Combine(tmp.Path, "run"));
        string ckpt = Path.Combine(dir, TrainSession.CheckpointFile);
        var bytes = File.ReadAllBytes(ckpt);
        int n = (int)BitConverter.ToUInt64(bytes, 0);
        var header = JsonNode.Parse(bytes.AsSpan(8, n))!.AsObject();
        string name = header.First(p => p.Key.StartsWith("model.", StringComparison.Ordinal)).Key;
        header[name]!["dtype"] = "I32";
        var json = System.Text.Encoding.UTF8.GetBytes(header.ToJsonString());
        File.WriteAllBytes(ckpt, [.. BitConverter.GetBytes((ulong)json.Length), .. json, .. bytes.AsSpan(8 + n)]);
        AssertBadInput(Run(["train", "--iters", "3", "--out", dir, "--resume", .. TinyRun.Tiny]), name, "I32");
        AssertBadInput(Run("eval", "--checkpoint", ckpt), name);
    }

    [Fact]
    public void EndlessStreamsAreRefusedAsCheckpointsAndImages()
    {
        if (!File.Exists("/dev/zero")) return;
        AssertBadInput(Run("eval", "--checkpoint", "/dev/zero"), "/dev/zero");
        AssertBadInput(Run("eval", "--coco-gt", "/dev/zero", "--coco-results", "/dev/zero"), "/dev/zero", "not JSON");
        using var tmp = new TempDir();
        string voc = Directory.CreateDirectory(Path.Combine(tmp.Path, "voc", "ImageSets", "Main")).FullName;
        File.CreateSymbolicLink(Path.Combine(voc, "trainval.txt"), "/dev/zero");
        AssertBadInput(Run("train", "--data", "voc:" + Path.Combine(tmp.Path, "voc"), "--out", Path.Combine(tmp.Path, "out")), "trainval.txt", "not a text file");
        string image = Path.Combine(tmp.Path, "shape.png");
        File.WriteAllBytes(image, ImageFile.EncodePng(new ShapesDataset(new ShapesOptions { Count = 1 }).Load(0).Image));
        var r = Run("detect", "/dev/zero", image, "--checkpoint", run.Checkpoint, "--out", Path.Combine(tmp.Path, "out"));
        AssertBadInput(r, "/dev/zero", "1 of 2 images");
        Assert.True(File.Exists(Path.Combine(tmp.Path, "out", "shape.png")));
    }

    [Fact]
    public void DetectNeverWritesOverAnInputAndGoesOnPastABadImage()
    {
        using var tmp = new TempDir();
        string image = Path.Combine(tmp.Path, "shape.png"), bad = Path.Combine(tmp.Path, "bad.png");
        File.WriteAllBytes(image, ImageFile.EncodePng(new ShapesDataset(new ShapesOptions { Count = 1 }).Load(0).Image));
        File.WriteAllBytes(bad, [0x89, (byte)'P', (byte)'N', (byte)'G', 1, 2, 3]);
        var before = File.ReadAllBytes(image);
        // the output folder is the input's own: the picture takes another name
        var (code, output, err) = Run("detect", image, "--checkpoint", run.Checkpoint, "--out", tmp.Path);
        Assert.True(code == 0, output + err);
        Assert.Equal(before, File.ReadAllBytes(image));
        Assert.True(File.Exists(Path.Combine(tmp.Path, "shape-2.png")));
        // nor through a symbolic link in the output folder that points at an input
        string linked = Path.Combine(tmp.Path, "linked");
        Directory.CreateDirectory(linked);
        File.CreateSymbolicLink(Path.Combine(linked, "shape.png"), image);
        (code, output, err) = Run("detect", image, "--checkpoint", run.Checkpoint, "--out", linked);
        Assert.True(code == 0, output + err);
        Assert.Equal(before, File.ReadAllBytes(image));
        Assert.True(File.Exists(Path.Combine(linked, "shape-2.png")));

        string outDir = Path.Combine(tmp.Path, "out");
        var r = Run("detect", bad, image, "--checkpoint", run.Checkpoint, "--out", outDir, "--json");
        AssertBadInput(r, bad, "1 of 2 images");
        Assert.True(File.Exists(Path.Combine(outDir, "shape.png")));
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "detections.json")));
        Assert.Equal(1, doc.RootElement.GetProperty("images").GetArrayLength());
    }

    /// <summary>A COCO folder of shapes images: train/ with one box reaching outside its image, val/ as given.</summary>
    private static string CocoFolder(string root, string valCategory, bool corruptVal)
    {
        var shapes = new ShapesDataset(new ShapesOptions { Count = 3 });
        string Images(string split, int count)
        {
            string dir = Path.Combine(root, split);
            Directory.CreateDirectory(dir);
            for (int i = 0; i < count; i++) File.WriteAllBytes(Path.Combine(dir, $"{i}.png"), ImageFile.EncodePng(shapes.Load(i).Image));
            return dir;
        }
        int size = shapes.Load(0).Image.Width;
        object Json(int count, string category, double x) => new
        {
            images = Enumerable.Range(0, count).Select(i => new { id = i + 1, file_name = $"{i}.png", width = size, height = size }),
            categories = new[] { new { id = 1, name = category } },
            annotations = Enumerable.Range(0, count).Select(i => new { id = i + 1, image_id = i + 1, category_id = 1, bbox = new[] { i == 0 ? x : 10, 10, 40, 40 }, iscrowd = 0 }),
        };
        Directory.CreateDirectory(Path.Combine(root, "annotations"));
        Images("train2017", 2);
        string val = Images("val2017", 1);
        if (corruptVal) File.WriteAllBytes(Path.Combine(val, "0.png"), [0xFF, 0xD8, 0xFF, 0xE0, 0, 0]);
        File.WriteAllText(Path.Combine(root, "annotations", "instances_train2017.json"), JsonSerializer.Serialize(Json(2, "square", size - 20)));
        File.WriteAllText(Path.Combine(root, "annotations", "instances_val2017.json"), JsonSerializer.Serialize(Json(1, valCategory, 10)));
        return root;
    }

    [Fact]
    public void ACocoSetWithACorruptImageOrOtherEvaluationClassesIsRefusedBeforeTraining()
    {
        using var tmp = new TempDir();
        string[] args = ["train", "--iters", "1", "--width", "0.0625", "--size", "64", "--batch", "2", "--threads", "2", "--eval-every", "0"];
        string corrupt = CocoFolder(Path.Combine(tmp.Path, "a"), "square", corruptVal: true), outA = Path.Combine(tmp.Path, "outA");
        AssertBadInput(Run([.. args, "--data", "coco:" + corrupt, "--out", outA]), Path.Combine("val2017", "0.png"), "before training");
        Assert.False(File.Exists(Path.Combine(outA, TrainSession.CheckpointFile)));

        string other = CocoFolder(Path.Combine(tmp.Path, "b"), "circle", corruptVal: false);
        AssertBadInput(Run([.. args, "--data", "coco:" + other, "--out", Path.Combine(tmp.Path, "outB")]), "evaluation classes", "circle", "square");

        // a box reaching outside its image is clipped, and the log says so
        string good = CocoFolder(Path.Combine(tmp.Path, "c"), "square", corruptVal: false);
        var (code, output, err) = Run([.. args, "--data", "coco:" + good, "--out", Path.Combine(tmp.Path, "outC")]);
        Assert.True(code == 0, output + err);
        Assert.Contains("1 training boxes reach outside their image and are clipped", output);
    }

    [Fact]
    public void GoldenGoesOnPastAFixtureWithNonNumericTolerances()
    {
        string repo = AppContext.BaseDirectory;
        while (!Directory.Exists(Path.Combine(repo, "tests", "golden"))) repo = Path.GetDirectoryName(repo)!;
        string good = new DirectoryInfo(Path.Combine(repo, "tests", "golden")).GetFiles("*.safetensors").OrderBy(f => f.Length).First().FullName;
        using var tmp = new TempDir();
        File.Copy(good, Path.Combine(tmp.Path, "good.safetensors"));
        string bad = Path.Combine(tmp.Path, "bad.safetensors");
        CommandTests.WriteWithMetadata(good, bad, meta => meta["tolerance"] = """{"output.y": ["tight", "loose"]}""");

        var r = GoldenChecker.Check(bad, Device.Cpu);
        Assert.False(r.Passed);
        Assert.Contains("tolerance", r.Error);
        Assert.True(GoldenChecker.Check(Path.Combine(tmp.Path, "good.safetensors"), Device.Cpu).Passed);
        // one fixture fails, the other is still checked: exit 1, not a crash
        Assert.Equal(1, GrcnApp.Run(["golden", tmp.Path, "--quiet"], new StringWriter(), new StringWriter()));
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    /// <summary>
    /// Runs grcn in its own process, sends <paramref name="signal"/> once a stdout line starts with
    /// <paramref name="trigger"/>, and returns the exit code, stdout and stderr.
    /// </summary>
    private static Task<(int Code, string Out, string Err)> SignalWhen(string trigger, int signal, params string[] args) =>
        Signal(args, ignoreHangup: false, (trigger, 1, signal));

    /// <summary>
    /// Runs grcn in its own process with SIGHUP at its default action, or ignored as under nohup
    /// (<paramref name="ignoreHangup"/>; set through env, whatever the test host's own disposition is: a process
    /// started under nohup passes SIG_IGN on, and .NET leaves a signal ignored at start ignored). Each step sends its
    /// signal once <c>Lines</c> stdout lines in all have started with its trigger; returns the exit code, stdout and stderr.
    /// </summary>
    private static async Task<(int Code, string Out, string Err)> Signal(string[] args, bool ignoreHangup,
        params (string Trigger, int Lines, int Signal)[] steps)
    {
        string grcn = Path.Combine(AppContext.BaseDirectory, "grcn.dll");
        Assert.True(File.Exists(grcn), grcn);
        // env execs dotnet, so the process id stays the one to signal
        var start = new ProcessStartInfo("env")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(ignoreHangup ? "--ignore-signal=HUP" : "--default-signal=HUP");
        start.ArgumentList.Add(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet");
        foreach (var a in args.Prepend(grcn)) start.ArgumentList.Add(a);
        using var p = Process.Start(start)!;
        var output = new System.Text.StringBuilder();
        var seen = new int[steps.Length];
        var reached = steps.Select(_ => new ManualResetEventSlim()).ToArray();
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (output)
            {
                output.AppendLine(e.Data);
                for (int k = 0; k < steps.Length; k++)
                    if (e.Data.StartsWith(steps[k].Trigger, StringComparison.Ordinal) && ++seen[k] >= steps[k].Lines) reached[k].Set();
            }
        };
        p.BeginOutputReadLine();
        var err = p.StandardError.ReadToEndAsync();
        try
        {
            for (int k = 0; k < steps.Length; k++)
            {
                var (trigger, lines, signal) = steps[k];
                // the output is read under its lock, and only on failure: the reader thread may be appending to it
                if (!reached[k].Wait(TimeSpan.FromSeconds(120)))
                    lock (output) Assert.Fail($"no {lines} '{trigger}' lines within 120 s: {output}");
                Assert.Equal(0, Kill(p.Id, signal));
            }
            Assert.True(p.WaitForExit(TimeSpan.FromSeconds(60)), $"no exit within 60 s of signal {steps[^1].Signal}");
        }
        finally
        {
            if (!p.HasExited) p.Kill();
        }
        p.WaitForExit();
        string errText = await err;
        lock (output) return (p.ExitCode, output.ToString(), errText);
    }

    [Fact]
    public async Task SigtermStopsTrainingWithACheckpointAndExitCode143ThenResumeContinues()
    {
        if (OperatingSystem.IsWindows()) return;
        using var tmp = new TempDir();
        string dir = Path.Combine(tmp.Path, "run");
        var (exit, text, errText) = await SignalWhen("it ", 15,
            ["train", "--iters", "100000", "--checkpoint-every", "100000", "--plain", "--log-every", "1", "--out", dir, .. TinyRun.Tiny]);
        Assert.True(exit == 143, $"exit {exit}: {text}{errText}");
        Assert.Contains("SIGTERM", errText);
        Assert.Contains("interrupted at iteration", text);
        var losses = TrainSession.ReadLosses(Path.Combine(dir, "losses.csv"));
        Assert.NotEmpty(losses);

        var (code, resumed, rerr) = Run(["train", "--iters", (losses[^1].Iteration + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), "--out", dir, "--resume", .. TinyRun.Tiny]);
        Assert.True(code == 0, resumed + rerr);
        Assert.Contains($"resuming {Path.Combine(dir, TrainSession.CheckpointFile)} at iteration {losses[^1].Iteration}", resumed);
        Assert.Equal(Enumerable.Range(1, losses[^1].Iteration + 1), TrainSession.ReadLosses(Path.Combine(dir, "losses.csv")).Select(l => l.Iteration));
    }

    [Fact]
    public async Task SighupDuringTheFinalEvaluationStopsItWithTheCheckpointWrittenAndExitCode129()
    {
        if (OperatingSystem.IsWindows()) return;
        using var tmp = new TempDir();
        string dir = Path.Combine(tmp.Path, "run");
        var args = (string[])TinyRun.Tiny.Clone();
        int at = Array.IndexOf(args, "--test-images");
        args[at + 1] = "5000";
        var (exit, text, errText) = await SignalWhen("trained to iteration", 1, ["train", "--iters", "1", "--plain", "--out", dir, .. args]);
        Assert.True(exit == 129, $"exit {exit}: {text}{errText}");
        Assert.Contains("interrupted during the final evaluation", text);
        Assert.Contains("SIGHUP", errText);
        Assert.False(File.Exists(Path.Combine(dir, "metrics.json")));
        using var d = GRcn.Detection.Model.Detector.Load(Path.Combine(dir, TrainSession.CheckpointFile));
        Assert.Equal(1, d.Iteration);
    }

    [Fact]
    public async Task UnderNohupSighupIsIgnoredAndTrainingGoesOn()
    {
        if (OperatingSystem.IsWindows()) return;
        using var tmp = new TempDir();
        string dir = Path.Combine(tmp.Path, "run");
        // SIGHUP at the first step; two steps later training still runs (a handled SIGHUP stops it after one), and
        // SIGTERM stops it
        var (exit, text, errText) = await Signal(
            ["train", "--iters", "100000", "--checkpoint-every", "100000", "--plain", "--log-every", "1", "--out", dir, .. TinyRun.Tiny],
            ignoreHangup: true, ("it ", 1, 1), ("it ", 4, 15));
        Assert.True(exit == 143, $"exit {exit}: {text}{errText}");
        Assert.DoesNotContain("SIGHUP", errText);
        Assert.Contains("SIGTERM", errText);
        Assert.True(TrainSession.ReadLosses(Path.Combine(dir, "losses.csv")).Count >= 4);
    }
}
