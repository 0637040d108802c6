// Detection pictures through SkiaSharp: not blank, boxes in class colours, label text actually
// drawn inside each label tab (the shipped font loads), tabs that never cover each other, sizes.
using GRcn.Cli.Drawing;
using GRcn.Detection.Data;
using SkiaSharp;

namespace GRcn.Cli.Tests;

public class DetectionPictureTests
{
    private static (byte R, byte G, byte B) At(RgbImage img, int x, int y)
    {
        int o = 3 * (y * img.Width + x);
        return (img.Pixels[o], img.Pixels[o + 1], img.Pixels[o + 2]);
    }

    private static RgbImage Background(int w, int h)
    {
        var img = new RgbImage(w, h);
        Array.Fill(img.Pixels, (byte)90);
        return img;
    }

    /// <summary>Pixels inside <paramref name="r"/> far from the tab's fill colour: the text's ink.</summary>
    private static int InkPixels(RgbImage img, SKRect r, SKColor fill)
    {
        int n = 0;
        for (int y = (int)MathF.Ceiling(r.Top) + 1; y < (int)r.Bottom - 1; y++)
            for (int x = (int)MathF.Ceiling(r.Left) + 1; x < (int)r.Right - 1; x++)
            {
                var (R, G, B) = At(img, x, y);
                if (Math.Abs(R - fill.Red) + Math.Abs(G - fill.Green) + Math.Abs(B - fill.Blue) > 150) n++;
            }
        return n;
    }

    [Theory]
    [InlineData(40, 0)]
    [InlineData(64, 256)]
    [InlineData(500, 0)]
    public void LabelsAreDrawnWithTheShippedFont(int size, int longSide)
    {
        var image = Background(size, size);
        float s = size / 40f;
        var dets = new[] { new DetectedObject(new Box(5 * s, 20 * s, 30 * s, 35 * s), 0.9f, 1), new DetectedObject(new Box(1, 1, 4, 4), 0.2f, 2) };
        var truth = new[] { new ObjectAnnotation(new Box(6 * s, 4 * s, 30 * s, 16 * s), 2) };
        var (img, labels) = DetectionPainter.DrawWithLabels(image, truth, dets, ["circle", "square", "ring"], 0.5f, longSide);
        Assert.Equal(longSide > 0 ? longSide : size, img.Width);
        Assert.Contains(labels, l => !l.GroundTruth && l.Text.StartsWith("square 0.90", StringComparison.Ordinal) || l.Text == "0.90");
        if (size * Math.Max(1, longSide / size) >= 64) // a 40-pixel picture may have room for one label only
            Assert.Contains(labels, l => l.GroundTruth && l.Text.Contains("ring", StringComparison.Ordinal));
        Assert.DoesNotContain(labels, l => l.Text.Contains("0.20", StringComparison.Ordinal)); // below the threshold
        foreach (var l in labels)
        {
            int ink = InkPixels(img, l.Rect, l.Fill);
            Assert.True(ink >= 8, $"{size}px: label '{l.Text}' at {l.Rect} has {ink} text pixels");
        }
        int notBackground = img.Pixels.Count(b => b != 90);
        Assert.True(notBackground > img.Pixels.Length / 50, $"only {notBackground} changed samples");
    }

    [Fact]
    public void DetectionBoxIsInItsClassColour()
    {
        var image = Background(200, 200);
        var dets = new[] { new DetectedObject(new Box(20, 80, 150, 180), 0.9f, 3) };
        RgbImage img = DetectionPainter.Draw(image, null, dets, ["a", "b", "c", "d"], 0.5f);
        SKColor c = DetectionPainter.Palette(3);
        var (R, G, B) = At(img, 20, 150); // the left edge, well below the label (anti-aliased: nearly the colour)
        Assert.True(Math.Abs(R - c.Red) + Math.Abs(G - c.Green) + Math.Abs(B - c.Blue) < 20, $"{(R, G, B)} is not {c}");
        Assert.Equal(((byte)90, (byte)90, (byte)90), At(img, 80, 130)); // inside: untouched
    }

    [Fact]
    public void CrowdedLabelsDoNotCoverEachOther()
    {
        var image = Background(120, 120);
        var dets = Enumerable.Range(0, 12).Select(i => new DetectedObject(new Box(10 + i, 40 + i, 60 + i, 90 + i), 0.5f + i * 0.04f, i % 3)).ToArray();
        var truth = Enumerable.Range(0, 3).Select(i => new ObjectAnnotation(new Box(12 + i, 42, 62, 92), i)).ToArray();
        var (img, labels) = DetectionPainter.DrawWithLabels(image, truth, dets, ["circle", "square", "triangle"], 0.5f);
        Assert.True(labels.Count >= 5, $"only {labels.Count} labels placed");
        for (int i = 0; i < labels.Count; i++)
        {
            Assert.True(new SKRect(0, 0, img.Width, img.Height).Contains(labels[i].Rect), $"{labels[i].Rect} leaves the picture");
            for (int j = i + 1; j < labels.Count; j++)
                Assert.False(labels[i].Rect.IntersectsWith(labels[j].Rect), $"'{labels[i].Text}' and '{labels[j].Text}' overlap");
        }
        // the best detection got its full label
        Assert.Contains(labels, l => l.Text == "triangle 0.94");
    }

    [Fact]
    public void GridPlacesCellsUnderACaption()
    {
        var red = new RgbImage(10, 10);
        for (int i = 0; i < red.Pixels.Length; i += 3) red.Pixels[i] = 255;
        var g = DetectionPainter.Grid([red, new RgbImage(10, 10), red], 2, "Caption text", gap: 2);
        Assert.True(g.Height > 2 * 10 + 3 * 2);
        var (R, G, B) = At(g, 2 + 5, g.Height - 2 - 10 + 5); // the third cell, bottom left
        Assert.Equal(((byte)255, (byte)0, (byte)0), (R, G, B));
        int ink = 0;
        for (int y = 0; y < 16; y++) for (int x = 0; x < g.Width; x++) if (At(g, x, y).R < 128) ink++;
        Assert.True(ink > 20, $"caption has {ink} dark pixels");
    }
}

/// <summary>Writes sample pictures for a person to look at when GRCN_PICTURES names a folder.</summary>
public class PictureSamples
{
    [Fact]
    public void WriteSamples()
    {
        string? dir = Environment.GetEnvironmentVariable("GRCN_PICTURES");
        if (string.IsNullOrEmpty(dir)) return;
        Directory.CreateDirectory(dir);
        var shapes = new ShapesDataset(new ShapesOptions { Count = 4 });
        var cells = new List<RgbImage>();
        for (int i = 0; i < 4; i++)
        {
            var s = shapes.Load(i);
            var dets = s.Objects.Select((o, k) => new DetectedObject(new Box(o.Box.X1 + 1, o.Box.Y1 - 1, o.Box.X2 + 2, o.Box.Y2), 0.95f - 0.1f * k, (o.Label + k) % 3)).ToList();
            cells.Add(DetectionPainter.Draw(s.Image, s.Objects, dets, shapes.ClassNames, 0.3f, longSide: 256));
            if (i == 0) File.WriteAllBytes(Path.Combine(dir, "small.png"), ImageFile.EncodePng(DetectionPainter.Draw(s.Image, s.Objects, dets, shapes.ClassNames, 0.3f)));
        }
        File.WriteAllBytes(Path.Combine(dir, "grid.png"), ImageFile.EncodePng(DetectionPainter.Grid(cells, 2, "sample grid: dashed ground truth, solid detections")));
    }
}
