// Loads the torchvision reference values committed under Rpn/Fixtures (made by
// make_rpn_fixtures.py with torch 1.13 / torchvision 0.14) and compares values.
using System.Text.Json;

namespace GRcn.Detection.Tests.Rpn;

/// <summary>The JSON fixtures of the box and RPN tests, and value comparisons.</summary>
internal static class RpnFixtures
{
    private static readonly string Dir = Path.Combine(FindRoot(), "tests", "GRcn.Detection.Tests", "Rpn", "Fixtures");

    private static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "GRcn.Kernels.sln"))) return d.FullName;
        throw new DirectoryNotFoundException($"no GRcn.Kernels.sln above {AppContext.BaseDirectory}");
    }

    /// <summary>The root element of fixture <paramref name="name"/> (e.g. "anchors.json").</summary>
    public static JsonElement Load(string name)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, name)));
        return doc.RootElement.Clone();
    }

    /// <summary>The flattened data of a {"shape", "data"} tensor as floats (exact: the JSON holds float32 values).</summary>
    public static float[] Floats(this JsonElement tensor) =>
        [.. tensor.GetProperty("data").EnumerateArray().Select(v => (float)v.GetDouble())];

    /// <summary>The shape of a {"shape", "data"} tensor.</summary>
    public static int[] Shape(this JsonElement tensor) =>
        [.. tensor.GetProperty("shape").EnumerateArray().Select(v => v.GetInt32())];

    /// <summary>A JSON array of integers.</summary>
    public static int[] Ints(this JsonElement array) => [.. array.EnumerateArray().Select(v => v.GetInt32())];

    /// <summary>Asserts |got − want| ≤ atol + rtol·|want| elementwise.</summary>
    public static void AssertClose(ReadOnlySpan<float> want, ReadOnlySpan<float> got, double rtol, double atol, string what)
    {
        Assert.True(want.Length == got.Length, $"{what}: want {want.Length} values, got {got.Length}");
        for (int i = 0; i < want.Length; i++)
        {
            double err = Math.Abs((double)got[i] - want[i]);
            Assert.True(err <= atol + rtol * Math.Abs(want[i]), $"{what}[{i}]: want {want[i]}, got {got[i]} (error {err})");
        }
    }
}
