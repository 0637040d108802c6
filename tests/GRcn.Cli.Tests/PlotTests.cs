// Plots through ScottPlot: each picture is not blank, has its text drawn (the shipped font
// registered: dark pixels in the title band) and its lines in their colours; the SVG twins are
// well-formed SVG documents whose titles and labels are text elements.
using System.Xml.Linq;
using GRcn.Cli.Drawing;
using GRcn.Cli.Training;
using GRcn.Detection.Data;
using GRcn.Detection.Model;

namespace GRcn.Cli.Tests;

public class PlotTests
{
    internal static IReadOnlyList<LossRecord> Losses(int n = 400)
    {
        var rng = new Random(3);
        return Enumerable.Range(1, n).Select(i => new LossRecord(i,
            new LossTerms(0.05 / Math.Sqrt(i) + 0.01 * rng.NextDouble(), 0.02 / Math.Sqrt(i) + 0.005 * rng.NextDouble(),
                1.5 / Math.Sqrt(i) + 0.2 * rng.NextDouble(), 0.8 / Math.Sqrt(i) + 0.1 * rng.NextDouble()),
            0.002 * 0.5 * (1 + Math.Cos(Math.PI * i / n)))).ToList();
    }

    private static void AssertDrawn(byte[] png, int width, int titleBandTop = 0, int minTextPixels = 40)
    {
        RgbImage img = ImageFile.Decode(png, "plot.png");
        Assert.Equal(width, img.Width);
        int dark = 0, notWhite = 0;
        for (int y = titleBandTop; y < titleBandTop + 30; y++)
            for (int x = 0; x < img.Width; x++)
            {
                int o = 3 * (y * img.Width + x);
                if (img.Pixels[o] + img.Pixels[o + 1] + img.Pixels[o + 2] < 300) dark++;
            }
        for (int i = 0; i < img.Pixels.Length; i++) if (img.Pixels[i] < 250) notWhite++;
        Assert.True(dark >= minTextPixels, $"only {dark} dark pixels in the title band at y = {titleBandTop}: is text drawn?");
        Assert.True(notWhite > img.Pixels.Length / 100, $"only {notWhite} non-white samples");
    }

    /// <summary>An SVG document (root svg in the SVG namespace) with text elements, one of which contains <paramref name="text"/>.</summary>
    internal static void AssertSvgWithText(string svg, string text)
    {
        XNamespace ns = "http://www.w3.org/2000/svg";
        var doc = XDocument.Parse(svg);
        Assert.Equal(ns + "svg", doc.Root!.Name);
        var texts = doc.Descendants(ns + "text").Select(t => t.Value).ToArray();
        Assert.True(texts.Length >= 5, $"only {texts.Length} text elements");
        Assert.Contains(texts, t => t.Contains(text, StringComparison.Ordinal));
        Assert.All(doc.Descendants(ns + "text"), t => Assert.Contains("DejaVu Sans", (string?)t.Attribute("font-family") ?? ""));
        Assert.True(doc.Descendants(ns + "path").Count() >= 5, "no lines drawn");
    }

    [Fact]
    public void LossPlotHasAPanelPerTermWithTitles()
    {
        var plot = TrainSession.LossPlot("test training loss", Losses());
        AssertDrawn(plot.Png, 800);
        for (int k = 1; k < 5; k++) AssertDrawn(plot.Png, 800, titleBandTop: k * 260);
        Assert.Equal(5 * 260, ImageFile.Decode(plot.Png).Height);
        AssertSvgWithText(plot.Svg, "test training loss: total (sum)");
        foreach (var title in new[] { "rpn objectness", "rpn box", "classifier", "box regression", "moving average" })
            AssertSvgWithText(plot.Svg, title);
        Assert.Equal("1300", XDocument.Parse(plot.Svg).Root!.Attribute("height")?.Value);
    }

    [Fact]
    public void LearningRatePlotIsDrawn()
    {
        var plot = TrainSession.LearningRatePlot("schedule", Losses());
        AssertDrawn(plot.Png, 800);
        AssertSvgWithText(plot.Svg, "schedule");
        AssertSvgWithText(plot.Svg, "learning rate");
    }

    [Fact]
    public void GroupedLossPlotNamesEachGroupAndAveragesItsRuns()
    {
        var a = Losses(100);
        var b = a.Select(l => l with { Losses = new LossTerms(l.Losses.RpnObjectness + 1, l.Losses.RpnBox, l.Losses.Classifier, l.Losses.BoxRegression) }).ToList();
        var plot = TrainSession.LossPlot("compare", [("faster-rcnn", [a, b]), ("g-rcn", [a])]);
        AssertDrawn(plot.Png, 800);
        AssertSvgWithText(plot.Svg, "faster-rcnn");
        AssertSvgWithText(plot.Svg, "g-rcn");
        Assert.DoesNotContain("moving average", plot.Svg);
    }

    [Fact]
    public void ALongLineIsDecimatedKeepingEachColumnsExtremes()
    {
        var rng = new Random(5);
        var points = Enumerable.Range(0, 20003).Select(i => ((double)i, rng.NextDouble() + (i == 7777 ? 5 : i == 12345 ? -5 : 0))).ToList();
        var kept = Plots.Decimate(points, 100);
        Assert.InRange(kept.Count, 300, 400);
        Assert.Equal(points[0], kept[0]);
        Assert.Equal(points[^1], kept[^1]);
        Assert.Contains(points[7777], kept);
        Assert.Contains(points[12345], kept);
        Assert.True(kept.Zip(kept.Skip(1)).All(p => p.First.X < p.Second.X), "the kept points are not in x order, or repeat");
        // per column (200 or 201 points), the kept points span the same y range as all its points
        for (int c = 0; c < 100; c++)
        {
            int start = c * 20003 / 100, end = (c + 1) * 20003 / 100;
            var all = points.Skip(start).Take(end - start).Select(p => p.Item2).ToArray();
            var some = kept.Where(p => p.X >= start && p.X < end).Select(p => p.Y).ToArray();
            Assert.Equal((all.Min(), all.Max()), (some.Min(), some.Max()));
        }
        var shortLine = points.Take(400).ToList();
        Assert.Same(shortLine, Plots.Decimate(shortLine, 100));
    }

    [Fact]
    public void ALossPlotOfALongRunStaysSmall()
    {
        // 40000 iterations: without decimation 10 lines of 40000 points, over 10 MB of SVG
        var plot = TrainSession.LossPlot("long", Losses(40000));
        Assert.InRange(plot.Svg.Length, 1, 2_000_000);
        AssertDrawn(plot.Png, 800);
    }

    [Fact]
    public void FontsReachScottPlotFromMemory()
    {
        Plots.Build("T", "x", "y", []);
        Assert.IsType<EmbeddedFontResolver>(ScottPlot.Fonts.FontResolvers[0]);
        Assert.Equal(Fonts.Family, ScottPlot.Fonts.Default);
        Assert.False(Directory.Exists(Path.Combine(Path.GetTempPath(), "grcn-fonts-" + Environment.ProcessId)), "font files written to a temp folder");
        var resolver = new EmbeddedFontResolver();
        using var regular = resolver.CreateTypeface("DejaVu Sans", ScottPlot.FontWeight.Normal, ScottPlot.FontSlant.Upright, ScottPlot.FontSpacing.Normal);
        using var bold = resolver.CreateTypeface("dejavu sans", bold: true, italic: false);
        Assert.Equal(("DejaVu Sans", 400), (regular!.FamilyName, regular.FontStyle.Weight));
        Assert.Equal(("DejaVu Sans", 700), (bold!.FamilyName, bold.FontStyle.Weight));
        Assert.Null(resolver.CreateTypeface("Arial", bold: false, italic: false));
    }

    [Fact]
    public void WriteSavesPngAndSvg()
    {
        using var tmp = new TempDir();
        var plot = Plots.Image("T", "x", "y", [new PlotSeries("s", [(0, 0), (10, 1)], DetectionPainter.Palette(0))], 300, 200);
        string png = plot.Write(tmp.Path, "p");
        Assert.Equal(Path.Combine(tmp.Path, "p.png"), png);
        Assert.Equal(plot.Png, File.ReadAllBytes(png));
        AssertSvgWithText(File.ReadAllText(Path.Combine(tmp.Path, "p.svg")), "T");
    }

    [Fact]
    public void PlotDrawsTheSeriesInItsColour()
    {
        var blue = DetectionPainter.Palette(0);
        RgbImage img = ImageFile.Decode(Plots.Png("T", "x", "y", [new PlotSeries("s", [(0, 0), (10, 1)], blue)], 300, 200));
        int n = 0;
        for (int i = 0; i < img.Pixels.Length; i += 3)
            if (img.Pixels[i] == blue.Red && img.Pixels[i + 1] == blue.Green && img.Pixels[i + 2] == blue.Blue) n++;
        Assert.True(n > 100, $"only {n} series pixels");
    }

    [Fact]
    public void WriteSamplePlots()
    {
        string? dir = Environment.GetEnvironmentVariable("GRCN_PICTURES");
        if (string.IsNullOrEmpty(dir)) return;
        Directory.CreateDirectory(dir);
        TrainSession.LossPlot("g-rcn training loss", Losses()).Write(dir, "loss");
        TrainSession.LearningRatePlot("g-rcn learning-rate schedule", Losses()).Write(dir, "lr");
        var slower = Losses().Select(l => l with { Losses = new LossTerms(l.Losses.RpnObjectness * 1.5, l.Losses.RpnBox, l.Losses.Classifier * 1.2, l.Losses.BoxRegression) }).ToList();
        TrainSession.LossPlot("Training loss (mean over seeds)", [("faster-rcnn", [slower]), ("g-rcn", [Losses()])]).Write(dir, "compare_loss");
        double[] iou = [.. Enumerable.Range(0, 10).Select(i => 0.5 + 0.05 * i)];
        Plots.Image("AP against IoU threshold", "IoU threshold", "AP",
            [new PlotSeries("faster-rcnn", [.. iou.Select(t => (t, 0.9 - t * 0.8))], DetectionPainter.Palette(0)),
             new PlotSeries("g-rcn", [.. iou.Select(t => (t, 0.95 - t * 0.7))], DetectionPainter.Palette(1))], yMin: 0, yMax: 1).Write(dir, "ap_iou");
    }
}
