using GRcn.Kernels.Golden;
using GRcn.Kernels.Serialization;

namespace GRcn.Kernels.Tests;

/// <summary>Every golden fixture of tests/golden and ../shared/golden-examples, run on the CPU.</summary>
public class GoldenFixtureTests
{
    public static string RepoRoot { get; } = FindRoot();

    public static string CommittedDir => Path.Combine(RepoRoot, "tests", "golden");

    public static string SharedDir => Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "golden-examples"));

    public static TheoryData<string> Fixtures()
    {
        var data = new TheoryData<string>();
        foreach (var dir in new[] { CommittedDir, SharedDir }.Where(Directory.Exists))
            foreach (var f in GoldenChecker.FindFixtures([dir]))
                data.Add(Path.GetRelativePath(RepoRoot, f));
        return data;
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void FixturePassesOnCpu(string fixture)
    {
        var r = GoldenChecker.Check(Path.Combine(RepoRoot, fixture), Device.Cpu);
        var detail = string.Join("; ", r.Tensors.Where(t => !t.Passed).Select(t => $"{t.Name}: {t.Message}"));
        Assert.True(r.Passed, $"{fixture} ({r.Op}) failed: {r.Error}{detail}");
    }

    [Fact]
    public void CommittedSetCoversEveryOpWithAtLeastSixtyCases()
    {
        var files = GoldenChecker.FindFixtures([CommittedDir]);
        Assert.True(files.Count >= 60, $"tests/golden holds {files.Count} fixtures; at least 60 expected");
        var ops = files.Select(f => GoldenFixture.Load(f).Op).ToHashSet();
        foreach (var op in GoldenChecker.KnownOps) Assert.Contains(op, ops);
    }

    [Fact]
    public void SharedExamplesArePresentInCi()
    {
        if (Environment.GetEnvironmentVariable("CI") == "true")
            Assert.True(Directory.Exists(SharedDir), $"CI must run with shared/ beside the clone: {SharedDir} is missing");
    }

    private static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "GRcn.Kernels.sln"))) return d.FullName;
        throw new InvalidOperationException($"cannot find GRcn.Kernels.sln above {AppContext.BaseDirectory}");
    }
}

/// <summary>The checker fails loudly: unknown ops, missing tensors, shape mismatches, unreadable files.</summary>
public sealed class GoldenCheckerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("grcn-golden-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string op, string attrs, params (string Name, Tensor Tensor)[] tensors)
    {
        string path = Path.Combine(_dir, name + ".safetensors");
        SafeTensorsWriter.Write(path, tensors.Select(t => new KeyValuePair<string, Tensor>(t.Name, t.Tensor)),
            new Dictionary<string, string> { ["format"] = GoldenFixture.Format, ["op"] = op, ["attrs"] = attrs, ["tolerance"] = "{}" });
        foreach (var (_, t) in tensors) t.Dispose();
        return path;
    }

    private static (string, Tensor) Boxes() =>
        ("input.boxes", Tensor.FromArray(new float[] { 0, 0, 10, 10, 1, 1, 11, 11, 20, 20, 30, 30 }, 3, 4));

    private static (string, Tensor) Scores() => ("input.scores", Tensor.FromArray(new float[] { 0.9f, 0.8f, 0.7f }, 3));

    [Fact]
    public void AGoodFixturePasses()
    {
        var path = Write("ok", "nms", """{"iou_threshold": 0.5}""", Boxes(), Scores(), ("output.keep", Tensor.FromArray(new long[] { 0, 2 }, 2)));
        var r = GoldenChecker.Check(path, Device.Cpu);
        Assert.True(r.Passed, r.Error);
    }

    [Fact]
    public void WrongKeepListFails()
    {
        var path = Write("bad", "nms", """{"iou_threshold": 0.5}""", Boxes(), Scores(), ("output.keep", Tensor.FromArray(new long[] { 0, 1 }, 2)));
        var r = GoldenChecker.Check(path, Device.Cpu);
        Assert.False(r.Passed);
        Assert.Contains("differ", r.Tensors.Single().Message);
    }

    [Fact]
    public void UnknownOpFails()
    {
        var path = Write("unknown", "deform_conv", "{}", Boxes());
        var r = GoldenChecker.Check(path, Device.Cpu);
        Assert.False(r.Passed);
        Assert.Contains("unknown op 'deform_conv'", r.Error);
    }

    [Fact]
    public void MissingInputFails()
    {
        var path = Write("noscores", "nms", """{"iou_threshold": 0.5}""", Boxes(), ("output.keep", Tensor.FromArray(new long[] { 0 }, 1)));
        var r = GoldenChecker.Check(path, Device.Cpu);
        Assert.False(r.Passed);
        Assert.Contains("input.scores", r.Error);
    }

    [Fact]
    public void ShapeMismatchFails()
    {
        var path = Write("shape", "nms", """{"iou_threshold": 0.5}""", Boxes(), Scores(), ("output.keep", Tensor.FromArray(new long[] { 0, 2, 1 }, 3)));
        var r = GoldenChecker.Check(path, Device.Cpu);
        Assert.False(r.Passed);
        Assert.Contains("shape mismatch", r.Tensors.Single().Message);
    }

    [Fact]
    public void UnreadableFileAndWrongFormatFail()
    {
        string junk = Path.Combine(_dir, "junk.safetensors");
        File.WriteAllBytes(junk, [1, 2, 3]);
        Assert.Contains("cannot read", GoldenChecker.Check(junk, Device.Cpu).Error);
        string other = Path.Combine(_dir, "other.safetensors");
        using (var t = Tensor.Zeros(Device.Cpu, 1))
            SafeTensorsWriter.Write(other, [new("x", t)], new Dictionary<string, string> { ["format"] = "something-else" });
        Assert.Contains("grcn-golden/1", GoldenChecker.Check(other, Device.Cpu).Error);
    }

    [Fact]
    public void FloatComparisonUsesAtolPlusRtolTimesWant()
    {
        var pass = GoldenChecker.CompareFloats("t", [1.0f, 100.0f + 0.0105f], [1.0f, 100.0f], 1e-4, 1e-3);
        Assert.True(pass.Passed);
        Assert.InRange(pass.WorstRatio, 0.9, 1.0);
        var fail = GoldenChecker.CompareFloats("t", [1.0f, 100.02f], [1.0f, 100.0f], 1e-4, 1e-3);
        Assert.False(fail.Passed);
        Assert.False(GoldenChecker.CompareFloats("t", [float.NaN], [0f], 1, 1).Passed);
        Assert.True(GoldenChecker.CompareFloats("t", [float.NaN, float.NegativeInfinity], [float.NaN, float.NegativeInfinity], 0, 0).Passed);
        Assert.False(GoldenChecker.CompareFloats("t", [float.PositiveInfinity], [float.NegativeInfinity], 1, 1).Passed);
    }
}
