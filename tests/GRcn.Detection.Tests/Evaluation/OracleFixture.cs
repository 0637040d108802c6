// Loads coco_oracle_cases.json (written by cocoeval_oracle.py next to it) and turns its cases
// into evaluator inputs: the COCO JSON path (ground truth and results re-serialized to streams)
// and, for cases whose numbers are float32-exact, the ObjectAnnotation/Detection path.
using System.Text.Json;
using GRcn.Detection.Data;
using GRcn.Detection.Evaluation;

namespace GRcn.Detection.Tests.Evaluation;

internal static class OracleFixture
{
    public static string RepoRoot { get; } = FindRoot();

    private static readonly Lazy<JsonDocument> s_doc = new(() =>
        JsonDocument.Parse(File.ReadAllBytes(Path.Combine(RepoRoot, "tests", "GRcn.Detection.Tests", "Evaluation", "coco_oracle_cases.json"))));

    public static JsonElement Root => s_doc.Value.RootElement;

    public static IEnumerable<JsonElement> Cases => Root.GetProperty("cases").EnumerateArray();

    public static JsonElement Case(string name) => Cases.Single(c => c.GetProperty("name").GetString() == name);

    public static TheoryData<string> AllNames() => [.. Cases.Select(c => c.GetProperty("name").GetString()!)];

    public static TheoryData<string> InMemoryNames() =>
        [.. Cases.Where(c => c.GetProperty("in_memory").GetBoolean()).Select(c => c.GetProperty("name").GetString()!)];

    public static TheoryData<string> VocNames() =>
        [.. Cases.Where(c => c.TryGetProperty("voc", out _)).Select(c => c.GetProperty("name").GetString()!)];

    private static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "GRcn.Kernels.sln"))) return d.FullName;
        throw new InvalidOperationException($"cannot find GRcn.Kernels.sln above {AppContext.BaseDirectory}");
    }

    public static MemoryStream ToStream(JsonElement e) => new(JsonSerializer.SerializeToUtf8Bytes(e));

    /// <summary>The case through CocoJson: ground truth + results streams.</summary>
    public static CocoEvaluationResult EvaluateJson(JsonElement c)
    {
        string name = c.GetProperty("name").GetString()!;
        var gt = CocoJson.ReadGroundTruth(ToStream(c.GetProperty("gt")), name + "/gt");
        var results = CocoJson.ReadResults(ToStream(c.GetProperty("results")), name + "/results");
        return CocoJson.Evaluate(gt, results, name + "/results");
    }

    /// <summary>
    /// The case as in-memory images: categories sorted by id are labels, images sorted by id are
    /// added in that order, each with its annotations and results in file order.
    /// </summary>
    public static (string[] Names, List<(List<ObjectAnnotation> Gt, List<DetectedObject> Dt)> Images) InMemory(JsonElement c)
    {
        var gt = c.GetProperty("gt");
        var cats = gt.GetProperty("categories").EnumerateArray()
            .Select(e => (Id: e.GetProperty("id").GetInt64(), Name: e.GetProperty("name").GetString()!)).OrderBy(e => e.Id).ToArray();
        var label = cats.Select((e, i) => (e.Id, i)).ToDictionary(e => e.Id, e => e.i);
        var imageIds = gt.GetProperty("images").EnumerateArray().Select(e => e.GetProperty("id").GetInt64()).Distinct().Order().ToArray();
        var index = imageIds.Select((id, i) => (id, i)).ToDictionary(e => e.id, e => e.i);
        var images = imageIds.Select(_ => (Gt: new List<ObjectAnnotation>(), Dt: new List<DetectedObject>())).ToList();
        foreach (var a in gt.GetProperty("annotations").EnumerateArray())
        {
            var b = Box(a.GetProperty("bbox"));
            images[index[a.GetProperty("image_id").GetInt64()]].Gt.Add(new ObjectAnnotation(b, label[a.GetProperty("category_id").GetInt64()],
                IsCrowd: a.GetProperty("iscrowd").GetInt32() != 0));
        }
        foreach (var r in c.GetProperty("results").EnumerateArray())
        {
            long cat = r.GetProperty("category_id").GetInt64();
            if (!label.TryGetValue(cat, out int l)) continue;
            images[index[r.GetProperty("image_id").GetInt64()]].Dt.Add(new DetectedObject(Box(r.GetProperty("bbox")), (float)r.GetProperty("score").GetDouble(), l));
        }
        return ([.. cats.Select(e => e.Name)], images);
    }

    private static Box Box(JsonElement bbox)
    {
        double x = bbox[0].GetDouble(), y = bbox[1].GetDouble(), w = bbox[2].GetDouble(), h = bbox[3].GetDouble();
        return new Box((float)x, (float)y, (float)(x + w), (float)(y + h));
    }

    public static double[] Doubles(JsonElement array) => [.. array.EnumerateArray().Select(e => e.GetDouble())];
}
