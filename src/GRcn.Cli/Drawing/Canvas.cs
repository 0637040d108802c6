// A small managed rasteriser over an 8-bit RGB image (rows top to bottom, R G B interleaved):
// filled rectangles, box outlines (solid or dashed), Bresenham lines, text in the built-in
// bitmap font, and copies of other images. Everything clips to the canvas; nothing is
// anti-aliased. Single-threaded: pictures here are small.
using GRcn.Detection.Data;

namespace GRcn.Cli.Drawing;

/// <summary>An RGB colour.</summary>
internal readonly record struct Color(byte R, byte G, byte B)
{
    public static Color Black => new(0, 0, 0);
    public static Color White => new(255, 255, 255);
    public static Color Gray => new(128, 128, 128);
    public static Color LightGray => new(220, 220, 220);

    /// <summary>A distinct colour per index (a Tableau-like palette).</summary>
    public static Color Palette(int index)
    {
        ReadOnlySpan<int> rgb =
        [
            0x1F77B4, 0xFF7F0E, 0xD62728, 0x9467BD, 0x17BECF, 0x8C564B, 0xE377C2, 0xBCBD22, 0x2CA02C, 0x7F7F7F,
        ];
        int v = rgb[((index % rgb.Length) + rgb.Length) % rgb.Length];
        return new Color((byte)(v >> 16), (byte)(v >> 8), (byte)v);
    }

    /// <summary>Black or white, whichever reads better on this colour.</summary>
    public Color Contrasting => 0.299 * R + 0.587 * G + 0.114 * B > 140 ? Black : White;
}

/// <summary>A drawable RGB image.</summary>
internal sealed class Canvas
{
    /// <summary>A canvas filled with <paramref name="background"/>.</summary>
    public Canvas(int width, int height, Color background)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        Width = width;
        Height = height;
        Pixels = new byte[checked(width * height * 3)];
        FillRect(0, 0, width, height, background);
    }

    /// <summary>A canvas holding a copy of <paramref name="image"/>.</summary>
    public Canvas(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        Width = image.Width;
        Height = image.Height;
        Pixels = (byte[])image.Pixels.Clone();
    }

    public int Width { get; }

    public int Height { get; }

    /// <summary>height × width × 3 bytes.</summary>
    public byte[] Pixels { get; }

    /// <summary>The canvas as an image (shares the pixels).</summary>
    public RgbImage ToImage() => new(Width, Height, Pixels);

    /// <summary>The colour at (x, y).</summary>
    public Color this[int x, int y]
    {
        get
        {
            int o = 3 * (y * Width + x);
            return new Color(Pixels[o], Pixels[o + 1], Pixels[o + 2]);
        }
    }

    /// <summary>Sets one pixel; outside the canvas nothing happens.</summary>
    public void Set(int x, int y, Color c)
    {
        if ((uint)x >= (uint)Width || (uint)y >= (uint)Height) return;
        int o = 3 * (y * Width + x);
        Pixels[o] = c.R;
        Pixels[o + 1] = c.G;
        Pixels[o + 2] = c.B;
    }

    /// <summary>Fills columns [x0, x1) of rows [y0, y1).</summary>
    public void FillRect(int x0, int y0, int x1, int y1, Color c)
    {
        x0 = Math.Max(x0, 0); y0 = Math.Max(y0, 0);
        x1 = Math.Min(x1, Width); y1 = Math.Min(y1, Height);
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++)
            {
                int o = 3 * (y * Width + x);
                Pixels[o] = c.R;
                Pixels[o + 1] = c.G;
                Pixels[o + 2] = c.B;
            }
    }

    /// <summary>
    /// The outline of the pixels a box covers: columns floor(x1) … ceil(x2) − 1 and rows
    /// floor(y1) … ceil(y2) − 1, <paramref name="thickness"/> pixels wide, drawn inwards.
    /// With <paramref name="dash"/> &gt; 0 the outline alternates c and <paramref name="dashColor"/> every dash pixels.
    /// </summary>
    public void DrawBox(Box box, Color c, int thickness = 1, int dash = 0, Color dashColor = default)
    {
        int left = (int)MathF.Floor(box.X1), top = (int)MathF.Floor(box.Y1);
        int right = (int)MathF.Ceiling(box.X2) - 1, bottom = (int)MathF.Ceiling(box.Y2) - 1;
        DrawRect(left, top, right, bottom, c, thickness, dash, dashColor);
    }

    /// <summary>Outline of the rectangle with corners (left, top) and (right, bottom), both inclusive.</summary>
    public void DrawRect(int left, int top, int right, int bottom, Color c, int thickness = 1, int dash = 0, Color dashColor = default)
    {
        if (right < left || bottom < top) return;
        for (int t = 0; t < thickness; t++)
        {
            int l = left + t, r = right - t, tp = top + t, b = bottom - t;
            if (r < l || b < tp) break;
            // the perimeter walked clockwise, so dashes run continuously round the corners
            int k = 0;
            for (int x = l; x <= r; x++) Set(x, tp, Pick(k++));
            for (int y = tp + 1; y <= b; y++) Set(r, y, Pick(k++));
            for (int x = r - 1; x >= l && b > tp; x--) Set(x, b, Pick(k++));
            for (int y = b - 1; y > tp && r > l; y--) Set(l, y, Pick(k++));
        }

        Color Pick(int k) => dash > 0 && (k / dash) % 2 == 1 ? dashColor : c;
    }

    /// <summary>A one-pixel line from (x0, y0) to (x1, y1), both ends included (Bresenham).</summary>
    public void DrawLine(int x0, int y0, int x1, int y1, Color c, int thickness = 1)
    {
        int dx = Math.Abs(x1 - x0), dy = -Math.Abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
        int half = (thickness - 1) / 2;
        while (true)
        {
            if (thickness <= 1) Set(x0, y0, c);
            else FillRect(x0 - half, y0 - half, x0 - half + thickness, y0 - half + thickness, c);
            if (x0 == x1 && y0 == y1) break;
            int e2 = 2 * err;
            if (e2 >= dy) { err += dy; x0 += sx; }
            if (e2 <= dx) { err += dx; y0 += sy; }
        }
    }

    /// <summary>Text with its top-left corner at (x, y).</summary>
    public void DrawText(int x, int y, string text, Color c, int scale = 1)
    {
        foreach (char ch in text)
        {
            var g = BitmapFont.Glyph(ch);
            for (int row = 0; row < BitmapFont.GlyphHeight; row++)
                for (int col = 0; col < BitmapFont.GlyphWidth; col++)
                    if ((g[row] & (0x10 >> col)) != 0)
                        FillRect(x + col * scale, y + row * scale, x + (col + 1) * scale, y + (row + 1) * scale, c);
            x += BitmapFont.Advance * scale;
        }
    }

    /// <summary>Text rotated 90° counter-clockwise (reading bottom to top), its bounding box's top-left at (x, y).</summary>
    public void DrawTextVertical(int x, int y, string text, Color c, int scale = 1)
    {
        int length = BitmapFont.Measure(text, scale);
        for (int i = 0; i < text.Length; i++)
        {
            var g = BitmapFont.Glyph(text[i]);
            // glyph pixel (col, row) of character i lands at column x + row, row y + length − 1 − (i·advance + col)
            for (int row = 0; row < BitmapFont.GlyphHeight; row++)
                for (int col = 0; col < BitmapFont.GlyphWidth; col++)
                    if ((g[row] & (0x10 >> col)) != 0)
                    {
                        int px = x + row * scale, py = y + length - (i * BitmapFont.Advance + col + 1) * scale;
                        FillRect(px, py, px + scale, py + scale, c);
                    }
        }
    }

    /// <summary>A label: text on a filled rectangle with 1-pixel padding, its top-left at (x, y); returns the label's height.</summary>
    public int DrawLabel(int x, int y, string text, Color background, int scale = 1)
    {
        int w = BitmapFont.Measure(text, scale) + 2 * scale, h = BitmapFont.GlyphHeight * scale + 2 * scale;
        FillRect(x, y, x + w, y + h, background);
        DrawText(x + scale, y + scale, text, background.Contrasting, scale);
        return h;
    }

    /// <summary>Copies <paramref name="image"/> with its top-left at (x, y), clipped.</summary>
    public void Blit(RgbImage image, int x, int y)
    {
        for (int row = Math.Max(0, -y); row < image.Height && y + row < Height; row++)
        {
            int c0 = Math.Max(0, -x), c1 = Math.Min(image.Width, Width - x);
            if (c1 <= c0) continue;
            Array.Copy(image.Pixels, 3 * (row * image.Width + c0), Pixels, 3 * ((y + row) * Width + x + c0), 3 * (c1 - c0));
        }
    }
}
