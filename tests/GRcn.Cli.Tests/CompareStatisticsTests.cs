// grcn compare's paired statistics and the report built on them: the Student t quantile against
// tabulated values, the paired difference and its 95 % interval on hand-computed examples
// (pairs by seed, missing seeds and undefined values left out), and the paired-difference table
// in report.md, report.html and report.json.
using System.Text.Json;
using GRcn.Cli.Reporting;
using GRcn.Cli.Training;
using GRcn.Detection.Variants;

namespace GRcn.Cli.Tests;

public class CompareStatisticsTests
{
    [Theory]
    // two-sided 95 % (p = 0.975) from the usual t table, and a few other levels
    [InlineData(0.975, 1, 12.706205)]
    [InlineData(0.975, 2, 4.302653)]
    [InlineData(0.975, 3, 3.182446)]
    [InlineData(0.975, 4, 2.776445)]
    [InlineData(0.975, 10, 2.228139)]
    [InlineData(0.975, 30, 2.042272)]
    [InlineData(0.975, 1e7, 1.959964)]
    [InlineData(0.995, 5, 4.032143)]
    [InlineData(0.95, 3, 2.353363)]
    [InlineData(0.025, 2, -4.302653)]
    [InlineData(0.5, 7, 0.0)]
    public void StudentTQuantileMatchesTheTable(double p, double df, double expected) =>
        Assert.Equal(expected, PairedStatistics.StudentTQuantile(p, df), 5e-7);

    [Theory]
    [InlineData(0.0, 2)]
    [InlineData(1.0, 2)]
    [InlineData(0.975, 0)]
    [InlineData(0.975, double.NaN)]
    public void StudentTQuantileRejectsBadArguments(double p, double df) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => PairedStatistics.StudentTQuantile(p, df));

    [Fact]
    public void PairedDifferenceAndIntervalByHand()
    {
        // d = (0.05, 0.03, 0.09): mean 0.056667, sd 0.030551, half-width t_{0.975,2}·sd/√3 = 4.302653·0.017638 = 0.075892
        var d = PairedStatistics.Difference([(0UL, 0.50), (1UL, 0.55), (2UL, 0.60)], [(2UL, 0.51), (0UL, 0.45), (1UL, 0.52)])!;
        Assert.Equal([0UL, 1UL, 2UL], d.Seeds);
        Assert.Equal(0.0566667, d.Mean, 1e-6);
        Assert.Equal(0.0305505, d.Std, 1e-6);
        Assert.Equal(4.302653, d.T, 1e-6);
        Assert.Equal(-0.0192250, d.Lower, 1e-6);
        Assert.Equal(0.1325583, d.Upper, 1e-6);
        Assert.False(d.ExcludesZero);

        // d = (0.10, 0.11, 0.09, 0.13): mean 0.1075, sd 0.017078, t_{0.975,3} = 3.182446: [0.080325, 0.134675]
        var e = PairedStatistics.Difference([(0UL, 0.60), (1UL, 0.62), (2UL, 0.61), (3UL, 0.63)], [(0UL, 0.50), (1UL, 0.51), (2UL, 0.52), (3UL, 0.50)])!;
        Assert.Equal(0.1075, e.Mean, 1e-9);
        Assert.Equal(0.0803247, e.Lower, 1e-6);
        Assert.Equal(0.1346753, e.Upper, 1e-6);
        Assert.True(e.ExcludesZero);
        var negative = PairedStatistics.Difference([(0UL, 0.50), (1UL, 0.51), (2UL, 0.52), (3UL, 0.50)], [(0UL, 0.60), (1UL, 0.62), (2UL, 0.61), (3UL, 0.63)])!;
        Assert.Equal(-0.1346753, negative.Lower, 1e-6);
        Assert.True(negative.ExcludesZero);
    }

    [Fact]
    public void OnlySeedsBothHaveArePaired()
    {
        // seed 1 missing for the baseline, seed 3 undefined (−1) for the variant, seed 4 only the variant's: pairs 0 and 2
        var d = PairedStatistics.Difference([(0UL, 0.30), (1UL, 0.9), (2UL, 0.36), (3UL, -1), (4UL, 0.5)], [(0UL, 0.26), (2UL, 0.30), (3UL, 0.2)])!;
        Assert.Equal([0UL, 2UL], d.Seeds);
        // d = (0.04, 0.06): mean 0.05, sd 0.014142, t_{0.975,1} = 12.706205: half-width 0.127062
        Assert.Equal(0.05, d.Mean, 1e-9);
        Assert.Equal(-0.0770620, d.Lower, 1e-6);
        Assert.Equal(0.1770620, d.Upper, 1e-6);
        var one = PairedStatistics.Difference([(0UL, 0.30)], [(0UL, 0.25), (1UL, 0.3)])!;
        Assert.Equal(1, one.Pairs);
        Assert.True(double.IsNaN(one.Lower));
        Assert.False(one.ExcludesZero);
        Assert.Null(PairedStatistics.Difference([(0UL, 0.30)], [(1UL, 0.25)]));
    }

    [Fact]
    public void DifferenceCellsInPercentagePoints()
    {
        var d = PairedStatistics.Difference([(0UL, 0.60), (1UL, 0.62), (2UL, 0.61), (3UL, 0.63)], [(0UL, 0.50), (1UL, 0.51), (2UL, 0.52), (3UL, 0.50)]);
        Assert.Equal("+10.8 [+8.0, +13.5] *", CompareReport.DifferenceCell(d));
        var e = PairedStatistics.Difference([(0UL, 0.45), (1UL, 0.52), (2UL, 0.51)], [(0UL, 0.50), (1UL, 0.55), (2UL, 0.60)]);
        Assert.Equal("−5.7 [−13.3, +1.9]", CompareReport.DifferenceCell(e));
        Assert.Equal("+2.0 (1 seed)", CompareReport.DifferenceCell(PairedStatistics.Difference([(0UL, 0.3)], [(0UL, 0.28)])));
        Assert.Equal("-", CompareReport.DifferenceCell(null));
    }

    private static CompareRun RunOf(ulong seed, double ap) =>
        new(seed, new MetricsSummary(ap, ap + 0.2, ap + 0.1, ap - 0.05, ap - 0.1, ap + 0.05, -1, ap + 0.21),
            Enumerable.Range(0, 10).Select(i => ap + 0.2 - 0.04 * i).ToArray(), [], 60);

    [Fact]
    public void ReportsShowThePairedDifferencesBesideTheMeans()
    {
        using var tmp = new TempDir();
        var variants = new List<CompareVariant>
        {
            new("-pool/loc", [RunOf(0, 0.60), RunOf(1, 0.62), RunOf(2, 0.61), RunOf(3, 0.63)], []),
            new("faster-rcnn", [RunOf(0, 0.50), RunOf(1, 0.51), RunOf(2, 0.52), RunOf(3, 0.50)], []),
            new("g-rcn", [RunOf(0, 0.52), RunOf(2, 0.49), RunOf(3, 0.53)], ["seed 1: training diverged"]),
        };
        string md = CompareReport.Write(tmp.Path, "t", "s", BackboneKind.Vgg16, variants, "faster-rcnn");
        Assert.Equal(md, File.ReadAllText(Path.Combine(tmp.Path, "report.md")));
        Assert.Contains("| -pool/loc | 4 | 61.5 ± 1.3 |", md);   // the mean ± std table stays
        Assert.Contains("## Paired differences to faster-rcnn", md);
        Assert.Contains("| variant | pairs | ΔAP | ΔAP50 | ΔAP70 | ΔAP75 | ΔAPs | ΔAPm |", md);
        // every metric of RunOf moves with AP, so every column has AP's difference
        Assert.Contains("| -pool/loc | 4 | +10.8 [+8.0, +13.5] * | +10.8 [+8.0, +13.5] * |", md);
        Assert.Contains("| g-rcn | 3 |", md);
        Assert.DoesNotContain("| faster-rcnn | 4 | +", md);
        Assert.Contains("g-rcn: pairs seeds 0, 2, 3 only (seed 1 missing for g-rcn)", md);
        var partial = new CompareVariant("x", [RunOf(3, 0.5), RunOf(4, 0.5), RunOf(5, 0.5)], []);
        Assert.Equal("x: pairs seed 3 only (seeds 0, 1, 2 missing for x; seeds 4, 5 missing for faster-rcnn)", CompareReport.PairingNote(partial, variants[1]));
        Assert.Equal("x: pairs no seed (seeds 0, 1, 2, 3 missing for x; seed 7 missing for faster-rcnn)",
            CompareReport.PairingNote(new CompareVariant("x", [RunOf(7, 0.5)], []), variants[1]));
        Assert.Null(CompareReport.PairingNote(variants[0], variants[1]));

        // the interval plot: one panel per paired metric, a row per other variant, labelled with its name
        Assert.Contains("![paired differences](paired.png) ([SVG](paired.svg))", md);
        using (var png = SkiaSharp.SKBitmap.Decode(Path.Combine(tmp.Path, "paired.png")))
            Assert.Equal((900, CompareReport.PairedColumns.Length * (80 + 34 * 2)), (png.Width, png.Height));
        string svg = File.ReadAllText(Path.Combine(tmp.Path, "paired.svg"));
        foreach (string text in new[] { "-pool/loc", "g-rcn", "ΔAP50 to faster-rcnn", "ΔAPm to faster-rcnn" }) Assert.Contains(text, svg);

        string html = File.ReadAllText(Path.Combine(tmp.Path, "report.html"));
        Assert.Contains("<h2>Paired differences to faster-rcnn</h2>", html);
        Assert.Contains("<img alt=\"paired differences\"", html);
        Assert.Contains("<th>ΔAPm</th>", html);
        Assert.Contains("<td class=\"sig\">+10.8 [+8.0, +13.5] *</td>", html);

        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(tmp.Path, "report.json")));
        var root = doc.RootElement;
        Assert.Equal("faster-rcnn", root.GetProperty("baseline").GetString());
        Assert.Equal(0.95, root.GetProperty("confidence").GetDouble());
        var v = root.GetProperty("variants");
        Assert.Equal(3, v.GetArrayLength());
        Assert.Equal(JsonValueKind.Null, v[1].GetProperty("paired").ValueKind);
        var ap = v[0].GetProperty("paired").GetProperty("AP");
        Assert.Equal(0.1075, ap.GetProperty("mean").GetDouble(), 1e-6);
        Assert.Equal(0.080325, ap.GetProperty("lower").GetDouble(), 1e-6);
        Assert.Equal(3.182446, ap.GetProperty("t").GetDouble(), 1e-6);
        Assert.True(ap.GetProperty("excludes_zero").GetBoolean());
        Assert.Equal(4, ap.GetProperty("seeds").GetArrayLength());
        foreach (string k in CompareReport.PairedColumns) Assert.Equal(JsonValueKind.Object, v[2].GetProperty("paired").GetProperty(k).ValueKind);
        Assert.Equal(3, v[2].GetProperty("paired").GetProperty("APm").GetProperty("seeds").GetArrayLength());
        Assert.Equal("seed 1: training diverged", v[2].GetProperty("failures")[0].GetString());
        var run = v[0].GetProperty("runs")[0];
        Assert.Equal(0.6, run.GetProperty("metrics").GetProperty("AP").GetDouble(), 1e-9);
        Assert.Equal(JsonValueKind.Null, run.GetProperty("metrics").GetProperty("APl").ValueKind);
        Assert.Equal(10, run.GetProperty("ap_by_iou").GetArrayLength());
        Assert.Equal(0.615, v[0].GetProperty("summary").GetProperty("AP").GetProperty("mean").GetDouble(), 1e-9);
        Assert.Equal(4, v[0].GetProperty("summary").GetProperty("AP").GetProperty("n").GetInt32());
        Assert.Equal(0.213, v[1].GetProperty("paper").GetProperty("AP").GetDouble(), 1e-9);
    }

    [Fact]
    public void PaperRowsLookThroughThePoolerModifiersOnly()
    {
        Assert.Equal(21.3, PaperResults.For("faster-rcnn+roi-align-v2", BackboneKind.Vgg16)!.AP);
        Assert.Equal(34.6, PaperResults.For("-pool/loc+roi-align", BackboneKind.Vgg16)!.APl);
        Assert.Equal(22.1, PaperResults.For("context/cls", BackboneKind.Vgg16)!.AP);
        Assert.Null(PaperResults.For("g-rcn+double-head", BackboneKind.Vgg16));
        Assert.Null(PaperResults.For("g-rcn+roi-align-v2+frozen-backbone", BackboneKind.Vgg16));
        Assert.Null(PaperResults.For("-pool/cls+roi-align-v2", BackboneKind.ResNet50));
    }

    [Fact]
    public void ABaselineAloneHasNoPairedPlot()
    {
        using var tmp = new TempDir();
        string md = CompareReport.Write(tmp.Path, "t", "s", BackboneKind.Vgg16, [new("faster-rcnn", [RunOf(0, 0.5), RunOf(1, 0.52)], [])], "faster-rcnn");
        Assert.Contains("(no other variant)", md);
        Assert.DoesNotContain("paired.png", md);
        Assert.False(File.Exists(Path.Combine(tmp.Path, "paired.png")));
    }

    [Fact]
    public void ABaselineThatIsNoVariantIsAnError() =>
        Assert.Throws<ArgumentException>(() => CompareReport.Write(Path.GetTempPath(), "t", "s", BackboneKind.Vgg16, [new("g-rcn", [], [])], "faster-rcnn"));
}
