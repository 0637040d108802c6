// Staleness check of the committed PTX: every kernels/NAME.cu has kernels/ptx/NAME.ptx whose
// first line records the hash of the sources it was built from, no PTX lacks its .cu, and the
// assembly embeds exactly the PTX on disk. The hash is the one kernels/build.sh computes;
// a test runs build.sh --hashes on sample sources to prove the two agree.
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using GRcn.Kernels.Cuda;

namespace GRcn.Kernels.Tests;

/// <summary>The source hash that kernels/build.sh writes on the first line of each PTX file.</summary>
internal static class PtxSourceHash
{
    /// <summary>First-line prefix of a built PTX file.</summary>
    public const string HeaderPrefix = "// grcn-source-sha256: ";

    /// <summary>The .cu files of a kernels folder (not hidden), by file name in byte order.</summary>
    public static string[] Sources(string dir) => Listed(dir, ".cu");

    /// <summary>The .cuh headers of a kernels folder (not hidden), by file name in byte order.</summary>
    public static string[] Headers(string dir) => Listed(dir, ".cuh");

    /// <summary>
    /// Lower-case hex SHA-256 over the bytes of <paramref name="cuFile"/> followed by the bytes
    /// of every header of its folder, in byte order of their names.
    /// </summary>
    public static string Compute(string cuFile)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(File.ReadAllBytes(cuFile));
        foreach (var h in Headers(Path.GetDirectoryName(Path.GetFullPath(cuFile))!))
            sha.AppendData(File.ReadAllBytes(h));
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    private static string[] Listed(string dir, string extension) =>
        !Directory.Exists(dir) ? [] : Directory.GetFiles(dir)
            .Where(f => Path.GetExtension(f) == extension && !Path.GetFileName(f).StartsWith('.'))
            .Order(StringComparer.Ordinal) // names are ASCII (checked below), so this is byte order
            .ToArray();
}

public class PtxHashTests
{
    private static string KernelsDir => Path.Combine(GoldenFixtureTests.RepoRoot, "kernels");
    private static string PtxDir => Path.Combine(KernelsDir, "ptx");

    private static string[] PtxFiles() => Directory.Exists(PtxDir)
        ? Directory.GetFiles(PtxDir).Where(f => Path.GetExtension(f) == ".ptx").Order(StringComparer.Ordinal).ToArray()
        : [];

    [Fact]
    public void KernelsFolderHasTheBuildScriptAndAsciiNames()
    {
        Assert.True(File.Exists(Path.Combine(KernelsDir, "build.sh")), "kernels/build.sh is missing");
        foreach (var f in PtxSourceHash.Sources(KernelsDir).Concat(PtxSourceHash.Headers(KernelsDir)).Concat(PtxFiles()))
            Assert.Matches("^[A-Za-z0-9_][A-Za-z0-9_.-]*$", Path.GetFileName(f));
    }

    [Fact]
    public void EveryKernelSourceHasCurrentPtx()
    {
        foreach (var cu in PtxSourceHash.Sources(KernelsDir))
        {
            string name = Path.GetFileNameWithoutExtension(cu);
            string ptx = Path.Combine(PtxDir, name + ".ptx");
            Assert.True(File.Exists(ptx), $"kernels/{name}.cu has no kernels/ptx/{name}.ptx: run kernels/build.sh on a machine with nvcc");
            string first = File.ReadLines(ptx).FirstOrDefault() ?? "";
            string want = PtxSourceHash.HeaderPrefix + PtxSourceHash.Compute(cu);
            Assert.True(first == want,
                $"kernels/ptx/{name}.ptx is stale: its first line is '{first}', not '{want}'; run kernels/build.sh");
        }
    }

    [Fact]
    public void NoPtxWithoutItsSource()
    {
        foreach (var ptx in PtxFiles())
        {
            string name = Path.GetFileNameWithoutExtension(ptx);
            Assert.True(File.Exists(Path.Combine(KernelsDir, name + ".cu")), $"kernels/ptx/{name}.ptx has no kernels/{name}.cu");
        }
    }

    [Fact]
    public void AssemblyEmbedsExactlyThePtxOnDisk()
    {
        string[] onDisk = PtxFiles().Select(f => Path.GetFileNameWithoutExtension(f)).ToArray();
        Assert.Equal(onDisk, CudaModule.EmbeddedModules);
        foreach (var name in onDisk)
            Assert.Equal(File.ReadAllBytes(Path.Combine(PtxDir, name + ".ptx")), CudaModule.EmbeddedPtx(name));
    }

    [Fact]
    public void HashIsSha256OfTheSourceThenEveryHeaderInNameOrder()
    {
        string dir = Directory.CreateTempSubdirectory("grcn-ptx-hash-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "a.cu"), "// a\n#include \"z.cuh\"\n");
            File.WriteAllText(Path.Combine(dir, "z.cuh"), "// z\n");
            File.WriteAllText(Path.Combine(dir, "B.cuh"), "// B\n");
            File.WriteAllText(Path.Combine(dir, "notes.txt"), "not a source");
            File.WriteAllText(Path.Combine(dir, ".hidden.cuh"), "not counted");
            byte[] all = Encoding.ASCII.GetBytes("// a\n#include \"z.cuh\"\n// B\n// z\n"); // "B" sorts before "z" in byte order
            Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(all)), PtxSourceHash.Compute(Path.Combine(dir, "a.cu")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void BuildScriptComputesTheSameHashes()
    {
        if (OperatingSystem.IsWindows()) return; // build.sh needs bash and sha256sum
        string dir = Directory.CreateTempSubdirectory("grcn-ptx-build-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "roi_align.cu"), "#include \"common.cuh\"\nextern \"C\" __global__ void k() {}\n");
            File.WriteAllText(Path.Combine(dir, "nms.cu"), "extern \"C\" __global__ void n() {}\r\n");
            File.WriteAllBytes(Path.Combine(dir, "common.cuh"), [0xEF, 0xBB, 0xBF, (byte)'/', (byte)'/', 0xC3, 0xA9, (byte)'\n']);
            File.WriteAllText(Path.Combine(dir, "Zeta.cuh"), "// sorts first\n");
            File.WriteAllText(Path.Combine(dir, ".hidden.cuh"), "not counted");
            string want = string.Join("\n", PtxSourceHash.Sources(dir).Select(cu => $"{Path.GetFileName(cu)} {PtxSourceHash.Compute(cu)}"));
            Assert.Equal(want, RunBuildScript("--hashes", dir).Output.TrimEnd('\n'));

            // --check agrees: missing PTX fails; PTX headed with the C# hash passes; an orphan fails.
            Assert.NotEqual(0, RunBuildScript("--check", dir).ExitCode);
            Directory.CreateDirectory(Path.Combine(dir, "ptx"));
            foreach (var cu in PtxSourceHash.Sources(dir))
                File.WriteAllText(Path.Combine(dir, "ptx", Path.GetFileNameWithoutExtension(cu) + ".ptx"),
                    PtxSourceHash.HeaderPrefix + PtxSourceHash.Compute(cu) + "\n//\n.version 7.0\n");
            Assert.Equal(0, RunBuildScript("--check", dir).ExitCode);
            File.WriteAllText(Path.Combine(dir, "ptx", "gone.ptx"), "");
            Assert.NotEqual(0, RunBuildScript("--check", dir).ExitCode);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static (int ExitCode, string Output) RunBuildScript(params string[] args)
    {
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(KernelsDir, "build.sh"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        _ = stderr.Result;
        return (p.ExitCode, output);
    }
}
