// A golden fixture (format grcn-golden/1): one test case of one op in a safetensors file,
// holding inputs (input.*), attributes (metadata "attrs"), expected outputs (output.*), the
// upstream gradients (grad_output.*), expected input gradients (grad_input.*) and per-tensor
// tolerances (metadata "tolerance": name → [rtol, atol]).
using System.Text.Json;
using GRcn.Kernels.Serialization;

namespace GRcn.Kernels.Golden;

/// <summary>One parsed golden fixture.</summary>
public sealed class GoldenFixture
{
    /// <summary>The format tag this reader understands.</summary>
    public const string Format = "grcn-golden/1";

    private GoldenFixture(string path, SafeTensorsFile file, string op, JsonElement attrs, Dictionary<string, (double Rtol, double Atol)> tolerances)
    {
        Path = path;
        File = file;
        Op = op;
        Attrs = attrs;
        Tolerances = tolerances;
    }

    /// <summary>File path.</summary>
    public string Path { get; }

    /// <summary>Fixture name (file name without extension).</summary>
    public string Name => System.IO.Path.GetFileNameWithoutExtension(Path);

    /// <summary>The op under test (<c>conv2d</c>, <c>roi_align</c>, ...).</summary>
    public string Op { get; }

    /// <summary>The op's attributes.</summary>
    public JsonElement Attrs { get; }

    /// <summary>Tolerance per tensor name (<c>output.y</c>, <c>grad_input.x</c>).</summary>
    public IReadOnlyDictionary<string, (double Rtol, double Atol)> Tolerances { get; }

    /// <summary>The underlying safetensors file.</summary>
    public SafeTensorsFile File { get; }

    /// <summary>Whether the fixture checks the backward pass (has any <c>grad_output.*</c>).</summary>
    public bool HasBackward => File.Tensors.Any(t => t.Name.StartsWith("grad_output.", StringComparison.Ordinal));

    /// <summary>Names of the tensors with a prefix (<c>output.</c>, <c>grad_input.</c>), prefix included.</summary>
    public IEnumerable<string> Names(string prefix) =>
        File.Tensors.Select(t => t.Name).Where(n => n.StartsWith(prefix, StringComparison.Ordinal));

    /// <summary>Reads and validates a fixture.</summary>
    /// <exception cref="InvalidDataException">Not a grcn-golden/1 fixture; the message says why.</exception>
    /// <exception cref="SafeTensorsFormatException">The file is not valid safetensors.</exception>
    public static GoldenFixture Load(string path)
    {
        var file = SafeTensorsFile.Read(path);
        var meta = file.Metadata;
        if (!meta.TryGetValue("format", out var format) || format != Format)
            throw new InvalidDataException($"{path}: metadata 'format' is '{format ?? "(missing)"}', expected '{Format}'");
        if (!meta.TryGetValue("op", out var op) || string.IsNullOrWhiteSpace(op))
            throw new InvalidDataException($"{path}: metadata 'op' is missing");
        JsonElement attrs = ParseJson(path, "attrs", meta.GetValueOrDefault("attrs", "{}"));
        if (attrs.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{path}: metadata 'attrs' must be a JSON object");
        var tol = new Dictionary<string, (double, double)>(StringComparer.Ordinal);
        var tolJson = ParseJson(path, "tolerance", meta.GetValueOrDefault("tolerance", "{}"));
        if (tolJson.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{path}: metadata 'tolerance' must be a JSON object");
        foreach (var p in tolJson.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.Array || p.Value.GetArrayLength() != 2 ||
                p.Value[0].ValueKind != JsonValueKind.Number || p.Value[1].ValueKind != JsonValueKind.Number ||
                !p.Value[0].TryGetDouble(out double rtol) || !p.Value[1].TryGetDouble(out double atol) || rtol < 0 || atol < 0)
                throw new InvalidDataException($"{path}: tolerance of '{p.Name}' must be [rtol, atol] with non-negative numbers");
            tol[p.Name] = (rtol, atol);
        }
        return new GoldenFixture(path, file, op, attrs, tol);
    }

    /// <summary>Loads tensor <paramref name="name"/> onto a device.</summary>
    /// <exception cref="InvalidDataException">The fixture lacks it.</exception>
    public Tensor Load(string name, Device device)
    {
        if (!File.Contains(name)) throw new InvalidDataException($"{Path}: missing tensor '{name}'");
        return File.Load(name, device);
    }

    /// <summary>Loads an optional tensor (null when absent).</summary>
    public Tensor? LoadOptional(string name, Device device) => File.Contains(name) ? File.Load(name, device) : null;

    /// <summary>An integer attribute.</summary>
    public int Int(string name) => Attr(name) is { ValueKind: JsonValueKind.Number } e && e.TryGetInt32(out int v) ? v : throw BadAttr(name, "an integer");

    /// <summary>A number attribute.</summary>
    public double Double(string name) => Attr(name) is { ValueKind: JsonValueKind.Number } e && e.TryGetDouble(out double v) ? v : throw BadAttr(name, "a number");

    /// <summary>A boolean attribute.</summary>
    public bool Bool(string name) => Attr(name).ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw BadAttr(name, "true or false"),
    };

    /// <summary>A pair attribute ([a, b]; a single integer means [a, a]).</summary>
    public (int A, int B) Pair(string name)
    {
        var e = Attr(name);
        if (e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int s)) return (s, s);
        if (e.ValueKind == JsonValueKind.Array && e.GetArrayLength() == 2 && e[0].ValueKind == JsonValueKind.Number && e[1].ValueKind == JsonValueKind.Number
            && e[0].TryGetInt32(out int a) && e[1].TryGetInt32(out int b))
            return (a, b);
        throw BadAttr(name, "[a, b] integers");
    }

    /// <summary>Whether an attribute is present.</summary>
    public bool HasAttr(string name) => Attrs.TryGetProperty(name, out _);

    private JsonElement Attr(string name) =>
        Attrs.TryGetProperty(name, out var v) ? v : throw new InvalidDataException($"{Path}: attribute '{name}' of {Op} is missing");

    private InvalidDataException BadAttr(string name, string what) =>
        new($"{Path}: attribute '{name}' of {Op} must be {what}; got {Attrs.GetProperty(name).GetRawText()}");

    private static JsonElement ParseJson(string path, string key, string text)
    {
        try
        {
            using var doc = JsonDocument.Parse(text);
            return doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: metadata '{key}' is not valid JSON ({e.Message})", e);
        }
    }
}
