// Plots through ScottPlot: each picture is not blank, has its text drawn (the shipped font
// registered: dark pixels in the title band) and its lines in their colours.
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

    [Fact]
    public void LossPlotHasAPanelPerTermWithTitles()
    {
        byte[] png = TrainSession.LossPlot("test training loss", Losses());
        AssertDrawn(png, 800);
        for (int k = 1; k < 5; k++) AssertDrawn(png, 800, titleBandTop: k * 260);
        Assert.Equal(5 * 260, ImageFile.Decode(png).Height);
    }

    [Fact]
    public void LearningRatePlotIsDrawn() => AssertDrawn(TrainSession.LearningRatePlot("schedule", Losses()), 800);

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
        File.WriteAllBytes(Path.Combine(dir, "loss.png"), TrainSession.LossPlot("g-rcn training loss", Losses()));
        File.WriteAllBytes(Path.Combine(dir, "lr.png"), TrainSession.LearningRatePlot("g-rcn learning-rate schedule", Losses()));
        double[] iou = [.. Enumerable.Range(0, 10).Select(i => 0.5 + 0.05 * i)];
        File.WriteAllBytes(Path.Combine(dir, "ap_iou.png"), Plots.Png("AP against IoU threshold", "IoU threshold", "AP",
            [new PlotSeries("faster-rcnn", [.. iou.Select(t => (t, 0.9 - t * 0.8))], DetectionPainter.Palette(0)),
             new PlotSeries("g-rcn", [.. iou.Select(t => (t, 0.95 - t * 0.7))], DetectionPainter.Palette(1))], yMin: 0, yMax: 1));
    }
}
