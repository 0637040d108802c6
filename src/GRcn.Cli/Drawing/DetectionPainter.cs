// Pictures of detections: an image scaled to a target size (nearest-neighbour up, bilinear
// down) with its ground truth as dashed black/white outlines and its detections at or above a
// score threshold as class-coloured outlines under a filled "name 0.97" label; and grids of
// such pictures with a caption.
using System.Globalization;
using GRcn.Detection.Data;

namespace GRcn.Cli.Drawing;

using Detection = GRcn.Detection.Data.Detection;

internal static class DetectionPainter
{
    /// <summary>
    /// Draws <paramref name="image"/> scaled so its longer side is <paramref name="longSide"/>
    /// (0: unscaled) with <paramref name="truth"/> (may be null) and the detections scoring at
    /// least <paramref name="threshold"/>.
    /// </summary>
    public static Canvas Draw(RgbImage image, IReadOnlyList<ObjectAnnotation>? truth, IReadOnlyList<Detection> detections,
        IReadOnlyList<string> classNames, float threshold, int longSide = 0)
    {
        double scale = longSide > 0 ? (double)longSide / Math.Max(image.Width, image.Height) : 1;
        var canvas = new Canvas(Scale(image, scale));
        foreach (var t in truth ?? [])
            canvas.DrawBox(ScaleBox(t.Box, scale), Color.White, 1, dash: 3, dashColor: Color.Black);
        // lowest score first, so the best detections end on top
        foreach (var d in detections.Where(d => d.Score >= threshold).OrderBy(d => d.Score))
        {
            var color = Color.Palette(d.Label);
            var box = ScaleBox(d.Box, scale);
            canvas.DrawBox(box, color, 2);
            string name = (uint)d.Label < (uint)classNames.Count ? classNames[d.Label] : d.Label.ToString(CultureInfo.InvariantCulture);
            string text = string.Create(CultureInfo.InvariantCulture, $"{name} {d.Score:0.00}");
            int labelHeight = BitmapFont.GlyphHeight + 2;
            int x = Math.Clamp((int)MathF.Floor(box.X1), 0, Math.Max(0, canvas.Width - BitmapFont.Measure(text) - 2));
            int y = (int)MathF.Floor(box.Y1) - labelHeight;
            if (y < 0) y = (int)MathF.Floor(box.Y1) + 2; // no room above: inside the box
            canvas.DrawLabel(x, y, text, color);
        }
        return canvas;
    }

    /// <summary>Pictures in a grid of <paramref name="columns"/> columns on white, each cell its picture's size, under a caption.</summary>
    public static Canvas Grid(IReadOnlyList<Canvas> cells, int columns, string caption, int gap = 6)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(columns, 1);
        if (cells.Count == 0) throw new ArgumentException("no pictures to arrange", nameof(cells));
        int cellW = cells.Max(c => c.Width), cellH = cells.Max(c => c.Height);
        int cols = Math.Min(columns, cells.Count), rows = (cells.Count + cols - 1) / cols;
        int top = gap + BitmapFont.LineHeight() + gap;
        int width = Math.Max(gap + cols * (cellW + gap), BitmapFont.Measure(caption) + 2 * gap);
        var grid = new Canvas(width, top + rows * (cellH + gap), Color.White);
        grid.DrawText(gap, gap, caption, Color.Black);
        for (int i = 0; i < cells.Count; i++)
            grid.Blit(cells[i].ToImage(), gap + (i % cols) * (cellW + gap), top + (i / cols) * (cellH + gap));
        return grid;
    }

    private static Box ScaleBox(Box b, double s) => new((float)(b.X1 * s), (float)(b.Y1 * s), (float)(b.X2 * s), (float)(b.Y2 * s));

    private static RgbImage Scale(RgbImage image, double scale)
    {
        int w = Math.Max(1, (int)Math.Round(image.Width * scale)), h = Math.Max(1, (int)Math.Round(image.Height * scale));
        if (w == image.Width && h == image.Height) return image;
        if (scale < 1) return ImageTransforms.Resize(image, w, h);
        // nearest neighbour keeps small synthetic images crisp
        var px = new byte[w * h * 3];
        for (int y = 0; y < h; y++)
        {
            int sy = Math.Min(image.Height - 1, (int)(y / scale));
            for (int x = 0; x < w; x++)
            {
                int sx = Math.Min(image.Width - 1, (int)(x / scale));
                Array.Copy(image.Pixels, 3 * (sy * image.Width + sx), px, 3 * (y * w + x), 3);
            }
        }
        return new RgbImage(w, h, px);
    }
}
