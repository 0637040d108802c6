// Every golden fixture of tests/golden and ../shared/golden-examples, run on the emulator (and on
// cuda:0 where present) through the same checker as `grcn golden --device emulator`. Filter one
// op with: dotnet test --filter "FullyQualifiedName~GoldenTests&DisplayName~roi_align".
using GRcn.Kernels.Golden;

namespace GRcn.Kernels.GpuTests;

public class GoldenTests
{
    public static string RepoRoot { get; } = FindRoot();

    public static TheoryData<string, string> Fixtures()
    {
        var data = new TheoryData<string, string>();
        string[] dirs = [Path.Combine(RepoRoot, "tests", "golden"), Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "golden-examples"))];
        foreach (var device in GpuDevices.Names)
            foreach (var dir in dirs.Where(Directory.Exists))
                foreach (var f in GoldenChecker.FindFixtures([dir]))
                    data.Add(device, Path.GetRelativePath(RepoRoot, f));
        return data;
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void FixturePasses(string device, string fixture)
    {
        var r = GoldenChecker.Check(Path.Combine(RepoRoot, fixture), GpuDevices.Get(device));
        var detail = string.Join("; ", r.Tensors.Where(t => !t.Passed).Select(t => $"{t.Name}: {t.Message}"));
        Assert.True(r.Passed, $"{fixture} ({r.Op}) on {device} failed: {r.Error}{detail}");
    }

    private static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "GRcn.Kernels.sln"))) return d.FullName;
        throw new InvalidOperationException($"cannot find GRcn.Kernels.sln above {AppContext.BaseDirectory}");
    }
}
