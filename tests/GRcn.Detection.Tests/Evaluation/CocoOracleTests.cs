using System.Globalization;
using System.Text.Json;
using GRcn.Detection.Evaluation;

namespace GRcn.Detection.Tests.Evaluation;

/// <summary>
/// CocoEvaluator against the numpy re-statement of pycocotools (cocoeval_oracle.py): every summary
/// number, per-class AP, and the whole recall [T, K, A, M] and mean-precision [T, K, A, M] arrays.
/// </summary>
public class CocoOracleTests
{
    /// <summary>
    /// Both sides do the same double operations; only the order of the final means differs
    /// (numpy's pairwise sums), so agreement is far tighter than the 1e-4 the metrics need.
    /// </summary>
    private const double OracleTolerance = 1e-12;

    [Fact]
    public void ThresholdsAreNumpysLinspaceDoubles()
    {
        var iou = OracleFixture.Root.GetProperty("iou_thresholds").EnumerateArray()
            .Select(e => double.Parse(e.GetString()!, CultureInfo.InvariantCulture)).ToArray();
        var rec = OracleFixture.Root.GetProperty("recall_thresholds").EnumerateArray()
            .Select(e => double.Parse(e.GetString()!, CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(iou, CocoParameters.IouThresholds.ToArray());    // exact, bit for bit
        Assert.Equal(rec, CocoParameters.RecallThresholds.ToArray());
        Assert.Equal(0.8999999999999999, CocoParameters.IouThresholds[8]);
        Assert.Equal(0.5, CocoParameters.IouThresholds[CocoParameters.Iou50]);
        Assert.Equal(0.7, CocoParameters.IouThresholds[CocoParameters.Iou70]);
        Assert.Equal(0.75, CocoParameters.IouThresholds[CocoParameters.Iou75]);
    }

    [Theory]
    [MemberData(nameof(OracleFixture.AllNames), MemberType = typeof(OracleFixture))]
    public void JsonPathMatchesOracle(string name)
    {
        var c = OracleFixture.Case(name);
        AssertMatches(c.GetProperty("expected"), OracleFixture.EvaluateJson(c), name);
    }

    [Theory]
    [MemberData(nameof(OracleFixture.InMemoryNames), MemberType = typeof(OracleFixture))]
    public void InMemoryPathMatchesOracle(string name)
    {
        var c = OracleFixture.Case(name);
        var (names, images) = OracleFixture.InMemory(c);
        var ev = new CocoEvaluator(names);
        foreach (var (gt, dt) in images) ev.AddImage(gt, dt);
        AssertMatches(c.GetProperty("expected"), ev.Evaluate(), name);
    }

    [Fact]
    public void FixtureCoversTheEdgeCases()
    {
        var names = OracleFixture.Cases.Select(c => c.GetProperty("name").GetString()).ToHashSet();
        foreach (var n in new[] { "crowd", "area_ranges", "score_ties", "more_than_100_dets", "no_gt_images_and_missing_categories",
                     "duplicates", "iou_exactly_at_thresholds", "gt_id_zero", "random_50_images" })
            Assert.Contains(n, names);
        var random = OracleFixture.Case("random_50_images");
        Assert.Equal(50, random.GetProperty("gt").GetProperty("images").GetArrayLength());
        Assert.True(random.GetProperty("in_memory").GetBoolean());
    }

    [Fact]
    public void UnknownCategoryResultsAreDroppedAndCounted()
    {
        var r = OracleFixture.EvaluateJson(OracleFixture.Case("unknown_category_and_empty_results_image"));
        Assert.Equal(1, r.DroppedDetections);
    }

    private static void AssertMatches(JsonElement expected, CocoEvaluationResult got, string name)
    {
        var stats = OracleFixture.Doubles(expected.GetProperty("stats"));
        var mine = got.Summary.ToPycocotoolsStats();
        string[] labels = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"];
        for (int i = 0; i < 12; i++)
            Assert.True(Math.Abs(stats[i] - mine[i]) <= OracleTolerance, $"{name}: {labels[i]} = {mine[i]}, oracle {stats[i]}");
        double ap70 = expected.GetProperty("ap70").GetDouble();
        Assert.True(Math.Abs(ap70 - got.Summary.AP70) <= OracleTolerance, $"{name}: AP70 = {got.Summary.AP70}, oracle {ap70}");

        var perClass = expected.GetProperty("per_class").EnumerateArray().ToArray();
        Assert.Equal(perClass.Length, got.PerClass.Count);
        for (int k = 0; k < perClass.Length; k++)
        {
            var e = perClass[k];
            var g = got.PerClass[k];
            foreach (var (key, v) in new[] { ("ap", g.AP), ("ap50", g.AP50), ("ap70", g.AP70), ("ap75", g.AP75), ("ar100", g.AR100) })
                Assert.True(Math.Abs(e.GetProperty(key).GetDouble() - v) <= OracleTolerance,
                    $"{name}: class {k} {key} = {v}, oracle {e.GetProperty(key).GetDouble()}");
        }

        var recall = expected.GetProperty("recall");
        var precMean = expected.GetProperty("precision_mean");
        int T = CocoParameters.IouThresholds.Length, R = CocoParameters.RecallThresholds.Length;
        int A = CocoParameters.AreaRanges.Length, M = CocoParameters.MaxDetections.Length;
        for (int t = 0; t < T; t++)
            for (int k = 0; k < perClass.Length; k++)
                for (int a = 0; a < A; a++)
                    for (int m = 0; m < M; m++)
                    {
                        double er = recall[t][k][a][m].GetDouble();
                        double gr = got.GetRecall(t, k, a, m);
                        Assert.True(Math.Abs(er - gr) <= OracleTolerance, $"{name}: recall[t={t},k={k},a={a},m={m}] = {gr}, oracle {er}");
                        double ep = precMean[t][k][a][m].GetDouble();
                        double gp = got.GetPrecision(t, 0, k, a, m) > -1
                            ? Enumerable.Range(0, R).Sum(r => got.GetPrecision(t, r, k, a, m)) / R
                            : -1;
                        Assert.True(Math.Abs(ep - gp) <= OracleTolerance, $"{name}: mean precision[t={t},k={k},a={a},m={m}] = {gp}, oracle {ep}");
                    }
    }
}
