// The rasteriser, font and plot helpers: box outlines on exactly the pixels a box covers,
// dashes, text that marks pixels inside its measured extent, clipping, grids and tick choice.
using GRcn.Cli.Drawing;
using GRcn.Detection.Data;

namespace GRcn.Cli.Tests;

using Detection = GRcn.Detection.Data.Detection;

public class DrawingTests
{
    private static readonly Color Red = new(255, 0, 0);

    [Fact]
    public void BoxOutlineCoversTheBoxsEdgePixelsOnly()
    {
        var c = new Canvas(50, 60, Color.Black);
        c.DrawBox(new Box(10, 20, 30, 40), Red);
        // a box covers columns 10..29 and rows 20..39; the outline is their border
        for (int x = 10; x <= 29; x++)
        {
            Assert.Equal(Red, c[x, 20]);
            Assert.Equal(Red, c[x, 39]);
        }
        for (int y = 20; y <= 39; y++)
        {
            Assert.Equal(Red, c[10, y]);
            Assert.Equal(Red, c[29, y]);
        }
        int marked = 0;
        for (int y = 0; y < 60; y++)
            for (int x = 0; x < 50; x++)
                if (c[x, y] == Red) marked++;
        Assert.Equal(2 * 20 + 2 * 18, marked);
        Assert.Equal(Color.Black, c[11, 21]);
        Assert.Equal(Color.Black, c[9, 20]);
        Assert.Equal(Color.Black, c[30, 40]);
    }

    [Fact]
    public void FractionalBoxesCoverEveryTouchedPixelAndThicknessGrowsInwards()
    {
        var c = new Canvas(20, 20, Color.Black);
        c.DrawBox(new Box(2.5f, 3.2f, 9.1f, 12f), Red, thickness: 2);
        Assert.Equal(Red, c[2, 3]);    // floor(x1), floor(y1)
        Assert.Equal(Red, c[9, 11]);   // ceil(x2) − 1, ceil(y2) − 1
        Assert.Equal(Red, c[3, 4]);    // second ring
        Assert.Equal(Red, c[8, 10]);
        Assert.Equal(Color.Black, c[4, 5]);
        Assert.Equal(Color.Black, c[10, 7]);
    }

    [Fact]
    public void DashedOutlineAlternatesColours()
    {
        var c = new Canvas(20, 10, Color.Gray);
        c.DrawRect(0, 0, 19, 9, Color.White, dash: 3, dashColor: Color.Black);
        Assert.Equal(Color.White, c[0, 0]);
        Assert.Equal(Color.White, c[2, 0]);
        Assert.Equal(Color.Black, c[3, 0]);
        Assert.Equal(Color.Black, c[5, 0]);
        Assert.Equal(Color.White, c[6, 0]);
    }

    [Fact]
    public void DrawingOutsideTheCanvasIsClipped()
    {
        var c = new Canvas(8, 8, Color.Black);
        c.DrawBox(new Box(-5, -5, 20, 20), Red);
        c.FillRect(-3, -3, 2, 2, Red);
        c.DrawLine(-10, 3, 20, 3, Red);
        c.DrawText(6, 6, "WWW", Red);
        Assert.Equal(Red, c[0, 0]);
        Assert.Equal(Red, c[7, 3]);
        Assert.Equal(Color.Black, c[5, 5]);
    }

    [Fact]
    public void TextMarksPixelsWithinItsMeasuredExtent()
    {
        var c = new Canvas(80, 20, Color.Black);
        c.DrawText(3, 4, "RING 0.97", Color.White, scale: 1);
        int minX = int.MaxValue, maxX = -1, minY = int.MaxValue, maxY = -1, count = 0;
        for (int y = 0; y < 20; y++)
            for (int x = 0; x < 80; x++)
                if (c[x, y] == Color.White)
                {
                    count++;
                    (minX, maxX, minY, maxY) = (Math.Min(minX, x), Math.Max(maxX, x), Math.Min(minY, y), Math.Max(maxY, y));
                }
        Assert.True(count > 40, $"only {count} pixels drawn");
        Assert.Equal(3, minX);                                       // 'R' starts in its first column
        Assert.True(maxX < 3 + BitmapFont.Measure("RING 0.97"));
        Assert.Equal(4, minY);
        Assert.Equal(4 + BitmapFont.GlyphHeight - 1, maxY);
    }

    [Fact]
    public void LowerCaseDrawsAsCapitalsAndUnknownCharactersAsQuestionMarks()
    {
        Assert.True(BitmapFont.Glyph('a').SequenceEqual(BitmapFont.Glyph('A')));
        Assert.True(BitmapFont.Glyph('\u2603').SequenceEqual(BitmapFont.Glyph('?')));
        Assert.Equal(0, BitmapFont.Measure(""));
        Assert.Equal(2 * (3 * BitmapFont.Advance - 1), BitmapFont.Measure("abc", 2));
    }

    [Fact]
    public void VerticalTextIsTheHorizontalTextRotated()
    {
        var h = new Canvas(30, 10, Color.Black);
        var v = new Canvas(10, 30, Color.Black);
        h.DrawText(0, 0, "AB1", Color.White);
        v.DrawTextVertical(0, 0, "AB1", Color.White);
        int length = BitmapFont.Measure("AB1");
        // rotating 90° counter-clockwise sends (x, y) to (y, length − 1 − x)
        for (int y = 0; y < BitmapFont.GlyphHeight; y++)
            for (int x = 0; x < length; x++)
                Assert.Equal(h[x, y], v[y, length - 1 - x]);
    }

    [Fact]
    public void LabelFillsItsBackgroundAndContrastsTheText()
    {
        var c = new Canvas(60, 20, Color.Black);
        int height = c.DrawLabel(2, 2, "AB", new Color(255, 255, 0));
        Assert.Equal(BitmapFont.GlyphHeight + 2, height);
        Assert.Equal(new Color(255, 255, 0), c[2, 2]);
        bool dark = false;
        for (int x = 3; x < 3 + BitmapFont.Measure("AB"); x++)
            for (int y = 3; y < 3 + BitmapFont.GlyphHeight; y++)
                dark |= c[x, y] == Color.Black;
        Assert.True(dark, "yellow labels get black text");
    }

    [Theory]
    [InlineData(0, 1, 5, 0.2)]
    [InlineData(0, 2.7, 5, 0.5)]
    [InlineData(0, 1500, 8, 200)]
    [InlineData(0.5, 0.95, 5, 0.1)]
    public void TicksUseOneTwoFiveSteps(double lo, double hi, int target, double step)
    {
        var t = LinePlot.Ticks(lo, hi, target);
        Assert.True(t.Length >= 2);
        for (int i = 1; i < t.Length; i++) Assert.Equal(step, t[i] - t[i - 1], 1e-9);
        Assert.True(t[0] >= lo - 1e-9 && t[0] < lo + step);
        Assert.True(t[^1] >= hi - 1e-9);
    }

    [Fact]
    public void PlotDrawsEachSeriesInItsColour()
    {
        var blue = Color.Palette(0);
        var c = LinePlot.Render("T", "x", "y", [new PlotSeries("s", [(0, 0), (10, 1)], blue)], 300, 200);
        int n = 0;
        for (int y = 0; y < c.Height; y++)
            for (int x = 0; x < c.Width; x++)
                if (c[x, y] == blue) n++;
        Assert.True(n > 100, $"only {n} series pixels");
    }
}
