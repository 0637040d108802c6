// Pictures of detections through SkiaSharp: the image scaled to a target size (nearest
// neighbour up, so small synthetic images stay crisp; linear with mipmaps down), its ground
// truth as dashed white-on-black outlines with a white "GT class" tab under the box, and its
// detections at or above a score threshold as anti-aliased class-coloured outlines under a
// filled "class 0.97" tab in the shipped bold font. Line widths and text scale with the picture
// (a 40-pixel image keeps a legible 9-pixel font). Tabs never cover each other: each takes the
// first free place among above/inside/below its box, then stacked further out; a tab that finds
// none is shortened to its score, and dropped only if even that has no room. The best
// detections are placed first. Grids of such pictures get a caption.
using System.Globalization;
using GRcn.Detection.Data;
using SkiaSharp;

namespace GRcn.Cli.Drawing;

/// <summary>A placed label: its tab in picture pixels, its text and its fill colour.</summary>
internal readonly record struct PlacedLabel(SKRect Rect, string Text, SKColor Fill, bool GroundTruth);

internal static class DetectionPainter
{
    private static readonly SKColor[] PaletteColors =
        [new(0x1F, 0x77, 0xB4), new(0xFF, 0x7F, 0x0E), new(0xD6, 0x27, 0x28), new(0x94, 0x67, 0xBD), new(0x17, 0xBE, 0xCF),
         new(0x8C, 0x56, 0x4B), new(0xE3, 0x77, 0xC2), new(0xBC, 0xBD, 0x22), new(0x2C, 0xA0, 0x2C), new(0x7F, 0x7F, 0x7F)];

    /// <summary>A distinct colour per class index.</summary>
    public static SKColor Palette(int index) => PaletteColors[((index % PaletteColors.Length) + PaletteColors.Length) % PaletteColors.Length];

    /// <summary>Black or white, whichever reads better on <paramref name="c"/>.</summary>
    public static SKColor Contrasting(SKColor c) => 0.299 * c.Red + 0.587 * c.Green + 0.114 * c.Blue > 140 ? SKColors.Black : SKColors.White;

    /// <summary>
    /// Draws <paramref name="image"/> scaled so its longer side is <paramref name="longSide"/>
    /// (0: unscaled) with <paramref name="truth"/> (may be null) and the detections scoring at
    /// least <paramref name="threshold"/>.
    /// </summary>
    public static RgbImage Draw(RgbImage image, IReadOnlyList<ObjectAnnotation>? truth, IReadOnlyList<DetectedObject> detections,
        IReadOnlyList<string> classNames, float threshold, int longSide = 0) =>
        DrawWithLabels(image, truth, detections, classNames, threshold, longSide).Image;

    /// <summary>As <see cref="Draw"/>, also returning where each label went.</summary>
    public static (RgbImage Image, IReadOnlyList<PlacedLabel> Labels) DrawWithLabels(RgbImage image, IReadOnlyList<ObjectAnnotation>? truth,
        IReadOnlyList<DetectedObject> detections, IReadOnlyList<string> classNames, float threshold, int longSide = 0)
    {
        ArgumentNullException.ThrowIfNull(image);
        float scale = longSide > 0 ? (float)longSide / Math.Max(image.Width, image.Height) : 1f;
        int w = Math.Max(1, (int)Math.Round(image.Width * scale)), h = Math.Max(1, (int)Math.Round(image.Height * scale));
        int side = Math.Max(w, h);
        float stroke = Math.Clamp(side / 160f, 1f, 5f);
        float fontSize = Math.Clamp(side / 22f, 9f, 28f);

        using var bitmap = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Premul));
        using var canvas = new SKCanvas(bitmap);
        using (SKBitmap source = ImageFile.ToBitmap(image))
        {
            var sampling = scale > 1 ? new SKSamplingOptions(SKFilterMode.Nearest) : new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.Linear);
            using var img = SKImage.FromBitmap(source);
            canvas.DrawImage(img, new SKRect(0, 0, w, h), sampling);
        }

        using var font = new SKFont(Fonts.Bold, fontSize) { Edging = SKFontEdging.Antialias, Subpixel = true };
        using var gtFont = new SKFont(Fonts.Regular, fontSize) { Edging = SKFontEdging.Antialias, Subpixel = true };
        string Name(int label) => (uint)label < (uint)classNames.Count ? classNames[label] : label.ToString(CultureInfo.InvariantCulture);
        SKRect Scaled(Box b) => new(b.X1 * scale, b.Y1 * scale, b.X2 * scale, b.Y2 * scale);

        // Boxes first (ground truth under detections, best detections last so they end on top), then every label above every box.
        using var outline = new SKPaint { IsAntialias = true, Style = SKPaintStyle.Stroke, StrokeWidth = stroke };
        foreach (var t in truth ?? [])
        {
            SKRect r = Scaled(t.Box);
            outline.Color = SKColors.Black;
            outline.PathEffect = null;
            canvas.DrawRect(r, outline);
            using var dash = SKPathEffect.CreateDash([3 * stroke, 3 * stroke], 0);
            outline.Color = SKColors.White;
            outline.PathEffect = dash;
            canvas.DrawRect(r, outline);
            outline.PathEffect = null;
        }
        var shown = detections.Where(d => d.Score >= threshold).OrderBy(d => d.Score).ToList();
        outline.StrokeWidth = stroke * 1.5f;
        foreach (var d in shown)
        {
            outline.Color = Palette(d.Label);
            canvas.DrawRect(Scaled(d.Box), outline);
        }

        var placed = new List<PlacedLabel>();
        var bounds = new SKRect(0, 0, w, h);
        float pad = Math.Max(1f, fontSize * 0.15f);
        float tabH = MathF.Ceiling(fontSize * 1.2f + pad);
        foreach (var d in Enumerable.Reverse(shown)) // best first: it gets the best place
        {
            string name = Name(d.Label);
            string full = string.Create(CultureInfo.InvariantCulture, $"{name} {d.Score:0.00}");
            string score = string.Create(CultureInfo.InvariantCulture, $"{d.Score:0.00}");
            Place(Scaled(d.Box), [full, score], font, Palette(d.Label), groundTruth: false);
        }
        foreach (var t in truth ?? [])
            Place(Scaled(t.Box), ["GT " + Name(t.Label), Name(t.Label)], gtFont, SKColors.White, groundTruth: true);

        using var fill = new SKPaint { IsAntialias = true, Style = SKPaintStyle.Fill };
        using var border = new SKPaint { IsAntialias = true, Style = SKPaintStyle.Stroke, StrokeWidth = 1, Color = SKColors.Black };
        using var ink = new SKPaint { IsAntialias = true, Style = SKPaintStyle.Fill };
        foreach (var l in placed)
        {
            fill.Color = l.Fill;
            canvas.DrawRect(l.Rect, fill);
            if (l.GroundTruth) canvas.DrawRect(SKRect.Inflate(l.Rect, -0.5f, -0.5f), border);
            ink.Color = Contrasting(l.Fill);
            SKFont f = l.GroundTruth ? gtFont : font;
            float baseline = l.Rect.Top + pad / 2 + (tabH - pad) / 2 - (f.Metrics.Ascent + f.Metrics.Descent) / 2;
            canvas.DrawText(l.Text, l.Rect.Left + pad, baseline, SKTextAlign.Left, f, ink);
        }
        canvas.Flush();
        return (ImageFile.FromBitmap(bitmap), placed);

        void Place(SKRect box, string[] texts, SKFont f, SKColor color, bool groundTruth)
        {
            foreach (string text in texts)
            {
                float tabW = MathF.Ceiling(f.MeasureText(text) + 2 * pad);
                if (tabW > w) continue;
                // Detections: above the box, inside its top, below it; ground truth: below, inside the bottom, above.
                float[] ys = groundTruth
                    ? [box.Bottom, box.Bottom - tabH, box.Top - tabH]
                    : [box.Top - tabH, box.Top, box.Bottom];
                var candidates = new List<SKRect>();
                // At the box's left edge, else its right edge.
                float[] xs = [Math.Clamp(box.Left, 0, w - tabW), Math.Clamp(box.Right - tabW, 0, w - tabW)];
                foreach (float x in xs)
                    foreach (float y in ys) candidates.Add(SKRect.Create(x, y, tabW, tabH));
                for (int k = 1; k <= 6; k++) // stacked further out
                    foreach (float x in xs)
                    {
                        candidates.Add(SKRect.Create(x, (groundTruth ? box.Bottom : box.Top - tabH) + (groundTruth ? k : -k) * tabH, tabW, tabH));
                        candidates.Add(SKRect.Create(x, (groundTruth ? box.Top - tabH : box.Bottom) + (groundTruth ? -k : k) * tabH, tabW, tabH));
                    }
                foreach (SKRect c in candidates)
                {
                    SKRect r = c;
                    if (r.Top < 0 || r.Bottom > h) continue;
                    if (!bounds.Contains(r)) continue;
                    if (placed.Any(p => p.Rect.IntersectsWith(r))) continue;
                    placed.Add(new PlacedLabel(r, text, color, groundTruth));
                    return;
                }
            }
        }
    }

    /// <summary>Pictures in a grid of <paramref name="columns"/> columns on white, each cell its picture's size, under a caption.</summary>
    public static RgbImage Grid(IReadOnlyList<RgbImage> cells, int columns, string caption, int gap = 6)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(columns, 1);
        if (cells.Count == 0) throw new ArgumentException("no pictures to arrange", nameof(cells));
        int cellW = cells.Max(c => c.Width), cellH = cells.Max(c => c.Height);
        int cols = Math.Min(columns, cells.Count), rows = (cells.Count + cols - 1) / cols;
        using var font = new SKFont(Fonts.Regular, 14) { Edging = SKFontEdging.Antialias };
        int captionH = (int)MathF.Ceiling(font.Spacing);
        int top = gap + captionH + gap;
        int width = Math.Max(gap + cols * (cellW + gap), (int)MathF.Ceiling(font.MeasureText(caption)) + 2 * gap);
        int height = top + rows * (cellH + gap);
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul));
        using var canvas = new SKCanvas(bitmap);
        canvas.Clear(SKColors.White);
        using var ink = new SKPaint { IsAntialias = true, Color = SKColors.Black };
        canvas.DrawText(caption, gap, gap - font.Metrics.Ascent, SKTextAlign.Left, font, ink);
        for (int i = 0; i < cells.Count; i++)
        {
            using SKBitmap cell = ImageFile.ToBitmap(cells[i]);
            canvas.DrawBitmap(cell, gap + (i % cols) * (cellW + gap), top + (i / cols) * (cellH + gap), new SKSamplingOptions(SKFilterMode.Nearest), null);
        }
        canvas.Flush();
        return ImageFile.FromBitmap(bitmap);
    }
}
