// Plots through ScottPlot 5 (on SkiaSharp), in the shipped DejaVu Sans: line plots with a title,
// labelled axes and a legend, as PNG and SVG; and stacks of such panels in one picture, so that a
// small term (the RPN losses) gets its own y range instead of a flat line on a shared axis. The
// fonts reach ScottPlot through a font resolver that makes typefaces from the embedded bytes (no
// font file is written anywhere). SVG keeps its text as <text> elements in the "DejaVu Sans"
// family (a viewer without it substitutes a sans-serif font). Interval plots put labelled rows on
// the y axis, each with its single values (faint dots), their mean and an interval bar. A line of
// more points than the plot has columns is drawn from each column's first, lowest, highest and last
// point (Decimate), so a 40000-iteration loss keeps its look and its SVG stays small.
using System.Text;
using SkiaSharp;

namespace GRcn.Cli.Drawing;

/// <summary>One line: its name, points and colour; a thin, faded line when <paramref name="Faint"/>. An empty name keeps it out of the legend.</summary>
internal sealed record PlotSeries(string Name, IReadOnlyList<(double X, double Y)> Points, SKColor Color, bool Faint = false);

/// <summary>
/// One row of an interval plot: its label, the single values (faint dots), their mean (a dot) and the interval
/// [<paramref name="Lower"/>, <paramref name="Upper"/>] (a bar; NaN for none). A NaN mean draws no dot.
/// </summary>
internal sealed record IntervalRow(string Label, IReadOnlyList<double> Values, double Mean, double Lower, double Upper, SKColor Color);

/// <summary>One picture as PNG bytes and as an SVG document.</summary>
internal sealed record PlotImage(byte[] Png, string Svg)
{
    /// <summary>Writes <paramref name="name"/>.png and <paramref name="name"/>.svg into <paramref name="dir"/>; returns the PNG's path.</summary>
    public string Write(string dir, string name)
    {
        string png = Path.Combine(dir, name + ".png");
        File.WriteAllBytes(png, Png);
        File.WriteAllText(Path.Combine(dir, name + ".svg"), Svg, new UTF8Encoding(false));
        return png;
    }
}

/// <summary>Gives ScottPlot the embedded DejaVu Sans (regular and bold) by family name, from memory.</summary>
internal sealed class EmbeddedFontResolver : ScottPlot.IFontResolver
{
    public SKTypeface? CreateTypeface(string fontName, bool bold, bool italic) =>
        string.Equals(fontName, Fonts.Family, StringComparison.OrdinalIgnoreCase)
            ? SKTypeface.FromData(SKData.CreateCopy(Fonts.File(bold)))
            : null;

    public SKTypeface? CreateTypeface(string fontName, ScottPlot.FontWeight weight, ScottPlot.FontSlant slant, ScottPlot.FontSpacing spacing) =>
        CreateTypeface(fontName, (int)weight >= (int)ScottPlot.FontWeight.SemiBold, slant != ScottPlot.FontSlant.Upright);
}

internal static class Plots
{
    private static readonly Lazy<string> FontName = new(RegisterFonts);

    /// <summary>Puts the embedded-font resolver first in ScottPlot's list and makes DejaVu Sans its default.</summary>
    private static string RegisterFonts()
    {
        lock (ScottPlot.Fonts.FontResolvers)
        {
            if (!ScottPlot.Fonts.FontResolvers.OfType<EmbeddedFontResolver>().Any())
                ScottPlot.Fonts.FontResolvers.Insert(0, new EmbeddedFontResolver());
        }
        ScottPlot.Fonts.Default = Fonts.Family;
        return Fonts.Family;
    }

    /// <summary>The number of columns <see cref="Build"/> reduces a long line to: about one per pixel of a panel's data area.</summary>
    internal const int LineColumns = 800;

    /// <summary>
    /// <paramref name="points"/> (in x order) reduced for drawing <paramref name="columns"/> columns wide: unchanged when there are
    /// at most 4 per column; otherwise the points split into <paramref name="columns"/> runs of consecutive points, and of each run
    /// its first, lowest, highest and last point are kept, in their order (once each). The line through them covers the same
    /// vertical extent in every column as the line through all points, so the drawing looks the same.
    /// </summary>
    internal static IReadOnlyList<(double X, double Y)> Decimate(IReadOnlyList<(double X, double Y)> points, int columns)
    {
        int n = points.Count;
        if (n <= 4 * columns) return points;
        var kept = new List<(double X, double Y)>(4 * columns);
        Span<int> pick = stackalloc int[4];
        for (int c = 0; c < columns; c++)
        {
            // run c holds points [c·n/columns, (c+1)·n/columns): every point in exactly one run, runs differ by at most one point
            int start = (int)((long)c * n / columns), end = (int)((long)(c + 1) * n / columns);
            int lo = start, hi = start;
            for (int i = start + 1; i < end; i++)
            {
                if (points[i].Y < points[lo].Y || double.IsNaN(points[lo].Y)) lo = i;
                if (points[i].Y > points[hi].Y || double.IsNaN(points[hi].Y)) hi = i;
            }
            pick[0] = start; pick[1] = Math.Min(lo, hi); pick[2] = Math.Max(lo, hi); pick[3] = end - 1;
            for (int k = 0; k < 4; k++)
                if (k == 0 || pick[k] != pick[k - 1]) kept.Add(points[pick[k]]);
        }
        return kept;
    }

    /// <summary>A ScottPlot plot of <paramref name="series"/> with title, axis labels and legend.</summary>
    public static ScottPlot.Plot Build(string title, string xLabel, string yLabel, IReadOnlyList<PlotSeries> series, double? yMin = null, double? yMax = null)
    {
        string font = FontName.Value;
        var plot = new ScottPlot.Plot();
        plot.Font.Set(font);
        foreach (var s in series)
        {
            if (s.Points.Count == 0) continue;
            var points = Decimate(s.Points, LineColumns);
            var line = plot.Add.Scatter(points.Select(p => p.X).ToArray(), points.Select(p => p.Y).ToArray());
            if (s.Name.Length > 0) line.LegendText = s.Name;
            line.MarkerSize = s.Points.Count <= 12 ? 5 : 0;
            line.LineWidth = s.Faint ? 1 : 2;
            line.Color = new ScottPlot.Color(s.Color.Red, s.Color.Green, s.Color.Blue, s.Faint ? (byte)70 : (byte)255);
        }
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        plot.Font.Set(font);
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        plot.Axes.AutoScale();
        if (yMin is not null || yMax is not null)
        {
            var limits = plot.Axes.GetLimits();
            plot.Axes.SetLimitsY(yMin ?? limits.Bottom, yMax ?? limits.Top);
        }
        return plot;
    }

    /// <summary>
    /// An interval plot: <paramref name="rows"/> top to bottom on the y axis, labelled with their names, values along x,
    /// and a dashed line at x = 0 (the interval plots show differences).
    /// </summary>
    public static ScottPlot.Plot Intervals(string title, string xLabel, IReadOnlyList<IntervalRow> rows)
    {
        string font = FontName.Value;
        var plot = new ScottPlot.Plot();
        plot.Add.VerticalLine(0, 1, ScottPlot.Colors.Gray, ScottPlot.LinePattern.Dashed);
        var positions = new double[rows.Count];
        var labels = new string[rows.Count];
        for (int i = 0; i < rows.Count; i++)
        {
            var r = rows[i];
            double y = rows.Count - 1 - i; // the first row at the top
            positions[i] = y;
            labels[i] = r.Label;
            var solid = new ScottPlot.Color(r.Color.Red, r.Color.Green, r.Color.Blue);
            if (r.Values.Count > 0)
                plot.Add.Markers(r.Values.ToArray(), Enumerable.Repeat(y, r.Values.Count).ToArray(), ScottPlot.MarkerShape.FilledCircle, 6,
                    new ScottPlot.Color(r.Color.Red, r.Color.Green, r.Color.Blue, 90));
            if (double.IsFinite(r.Mean) && double.IsFinite(r.Lower) && double.IsFinite(r.Upper))
                plot.Add.Plottable(new ScottPlot.Plottables.ErrorBar([r.Mean], [y], [r.Upper - r.Mean], [r.Mean - r.Lower], null, null)
                    { LineWidth = 2, CapSize = 6, Color = solid });
            if (double.IsFinite(r.Mean)) plot.Add.Marker(r.Mean, y, ScottPlot.MarkerShape.FilledCircle, 9, solid);
        }
        plot.Axes.Left.SetTicks(positions, labels);
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.Font.Set(font);
        plot.Axes.AutoScale();
        plot.Axes.SetLimitsY(-0.6, rows.Count - 0.4);
        return plot;
    }

    /// <summary>One plot as PNG bytes.</summary>
    public static byte[] Png(string title, string xLabel, string yLabel, IReadOnlyList<PlotSeries> series,
        int width = 800, int height = 450, double? yMin = null, double? yMax = null) =>
        Build(title, xLabel, yLabel, series, yMin, yMax).GetImageBytes(width, height, ScottPlot.ImageFormat.Png);

    /// <summary>One plot as PNG and SVG.</summary>
    public static PlotImage Image(string title, string xLabel, string yLabel, IReadOnlyList<PlotSeries> series,
        int width = 800, int height = 450, double? yMin = null, double? yMax = null) =>
        Stacked([Build(title, xLabel, yLabel, series, yMin, yMax)], width, height);

    /// <summary>Plots stacked top to bottom, each <paramref name="width"/> × <paramref name="panelHeight"/>, as PNG and SVG.</summary>
    public static PlotImage Stacked(IReadOnlyList<ScottPlot.Plot> panels, int width = 800, int panelHeight = 260) =>
        new(StackedPng(panels, width, panelHeight), StackedSvg(panels, width, panelHeight));

    /// <summary>Plots stacked top to bottom into one PNG, each <paramref name="width"/> × <paramref name="panelHeight"/>.</summary>
    public static byte[] StackedPng(IReadOnlyList<ScottPlot.Plot> panels, int width = 800, int panelHeight = 260)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(width, panelHeight * panels.Count, SKColorType.Rgba8888, SKAlphaType.Premul));
        using var canvas = new SKCanvas(bitmap);
        canvas.Clear(SKColors.White);
        for (int i = 0; i < panels.Count; i++)
        {
            byte[] png = panels[i].GetImageBytes(width, panelHeight, ScottPlot.ImageFormat.Png);
            using var panel = SKBitmap.Decode(png);
            canvas.DrawBitmap(panel, 0, i * panelHeight, new SKSamplingOptions(SKFilterMode.Nearest), null);
        }
        canvas.Flush();
        using SKData data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    /// <summary>Plots stacked top to bottom into one SVG document (vector lines, text as text), each <paramref name="width"/> × <paramref name="panelHeight"/>.</summary>
    public static string StackedSvg(IReadOnlyList<ScottPlot.Plot> panels, int width = 800, int panelHeight = 260)
    {
        using var stream = new MemoryStream();
        using (var managed = new SKManagedWStream(stream))
        {
            using var canvas = SKSvgCanvas.Create(SKRect.Create(width, panelHeight * panels.Count), managed);
            for (int i = 0; i < panels.Count; i++)
            {
                // Each panel in its own translated layer: ScottPlot lays out a figure from (0, 0).
                canvas.Save();
                canvas.Translate(0, i * panelHeight);
                canvas.ClipRect(SKRect.Create(width, panelHeight));
                panels[i].Render(canvas, width, panelHeight);
                canvas.Restore();
            }
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }
}
