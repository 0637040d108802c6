// Line charts rendered to an RGB canvas: a frame with "nice" ticks (1, 2, 5 × 10^k) and tick
// labels on both axes, light grid lines, a title, axis labels, one coloured polyline per
// series (with square markers when a series has few points) and a legend in the upper right.
using System.Globalization;

namespace GRcn.Cli.Drawing;

/// <summary>One line of a plot.</summary>
internal sealed record PlotSeries(string Name, IReadOnlyList<(double X, double Y)> Points, Color Color);

internal static class LinePlot
{
    /// <summary>Renders the series; the y range is [yMin, yMax] when given, else the data's (from 0 when all values are positive).</summary>
    public static Canvas Render(string title, string xLabel, string yLabel, IReadOnlyList<PlotSeries> series,
        int width = 800, int height = 480, double? yMin = null, double? yMax = null)
    {
        var canvas = new Canvas(width, height, Color.White);
        const int left = 64, right = 16, top = 28, bottom = 44;
        int plotW = width - left - right, plotH = height - top - bottom;
        canvas.DrawText((width - BitmapFont.Measure(title, 2)) / 2, 6, title, Color.Black, 2);

        var points = series.SelectMany(s => s.Points).Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).ToArray();
        double x0 = points.Length > 0 ? points.Min(p => p.X) : 0, x1 = points.Length > 0 ? points.Max(p => p.X) : 1;
        double y0 = yMin ?? (points.Length > 0 ? Math.Min(0, points.Min(p => p.Y)) : 0);
        double y1 = yMax ?? (points.Length > 0 ? points.Max(p => p.Y) : 1);
        if (x1 <= x0) x1 = x0 + 1;
        if (y1 <= y0) y1 = y0 + 1;
        var xTicks = Ticks(x0, x1, Math.Max(2, plotW / 90));
        var yTicks = Ticks(y0, y1, Math.Max(2, plotH / 50));
        // widen the range to whole ticks when the data does not fix it
        if (yMax is null) y1 = Math.Max(y1, yTicks[^1]);
        int Px(double x) => left + (int)Math.Round((x - x0) / (x1 - x0) * (plotW - 1));
        int Py(double y) => top + plotH - 1 - (int)Math.Round((y - y0) / (y1 - y0) * (plotH - 1));

        foreach (double t in yTicks.Where(t => t >= y0 && t <= y1))
        {
            int y = Py(t);
            canvas.DrawLine(left, y, left + plotW - 1, y, Color.LightGray);
            canvas.DrawLine(left - 4, y, left - 1, y, Color.Black);
            string s = Format(t, yTicks);
            canvas.DrawText(left - 6 - BitmapFont.Measure(s), y - 3, s, Color.Black);
        }
        foreach (double t in xTicks.Where(t => t >= x0 && t <= x1))
        {
            int x = Px(t);
            canvas.DrawLine(x, top, x, top + plotH - 1, Color.LightGray);
            canvas.DrawLine(x, top + plotH, x, top + plotH + 3, Color.Black);
            string s = Format(t, xTicks);
            canvas.DrawText(x - BitmapFont.Measure(s) / 2, top + plotH + 6, s, Color.Black);
        }
        canvas.DrawRect(left - 1, top - 1, left + plotW, top + plotH, Color.Black);
        canvas.DrawText(left + (plotW - BitmapFont.Measure(xLabel)) / 2, height - 14, xLabel, Color.Black);
        canvas.DrawTextVertical(4, top + (plotH - BitmapFont.Measure(yLabel)) / 2, yLabel, Color.Black);

        foreach (var s in series)
        {
            var pts = s.Points.Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).ToArray();
            for (int i = 1; i < pts.Length; i++)
                canvas.DrawLine(Px(pts[i - 1].X), Clamp(Py(pts[i - 1].Y)), Px(pts[i].X), Clamp(Py(pts[i].Y)), s.Color, 2);
            if (pts.Length <= 24)
                foreach (var p in pts) canvas.FillRect(Px(p.X) - 2, Clamp(Py(p.Y)) - 2, Px(p.X) + 3, Clamp(Py(p.Y)) + 3, s.Color);
        }

        // legend
        int lx = left + plotW - 8 - series.Select(s => BitmapFont.Measure(s.Name) + 20).DefaultIfEmpty(0).Max();
        int ly = top + 8;
        if (series.Count > 0)
            canvas.FillRect(lx - 4, ly - 4, left + plotW - 4, ly + series.Count * 12 + 2, Color.White);
        foreach (var s in series)
        {
            canvas.FillRect(lx, ly + 2, lx + 14, ly + 5, s.Color);
            canvas.DrawText(lx + 20, ly, s.Name, Color.Black);
            ly += 12;
        }
        return canvas;

        int Clamp(int y) => Math.Clamp(y, top, top + plotH - 1);
    }

    /// <summary>Tick values at a 1, 2 or 5 × 10^k step giving about <paramref name="target"/> ticks over [lo, hi].</summary>
    public static double[] Ticks(double lo, double hi, int target)
    {
        double raw = (hi - lo) / Math.Max(1, target);
        double mag = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = (raw / mag) switch { < 1.5 => 1, < 3.5 => 2, < 7.5 => 5, _ => 10 } * mag;
        double first = Math.Ceiling(lo / step - 1e-9) * step;
        var ticks = new List<double>();
        for (double t = first; t <= hi + step * 1e-9 || ticks.Count == 0; t += step)
            ticks.Add(Math.Abs(t) < step * 1e-9 ? 0 : t);
        if (ticks[^1] < hi - step * 1e-9) ticks.Add(ticks[^1] + step);
        return [.. ticks];
    }

    /// <summary>A tick label with as many decimals as the step needs.</summary>
    private static string Format(double v, double[] ticks)
    {
        double step = ticks.Length > 1 ? ticks[1] - ticks[0] : 1;
        int decimals = Math.Clamp((int)Math.Ceiling(-Math.Log10(step) - 1e-9), 0, 6);
        if (Math.Abs(v) >= 10000 && decimals == 0)
            return (v / 1000).ToString("0.#", CultureInfo.InvariantCulture) + "K";
        return v.ToString("F" + decimals, CultureInfo.InvariantCulture);
    }
}
