// Small synthetic detection batches drawn in code for engine tests: filled rectangles
// (class 0) and discs (class 1) of distinct colours on a noisy grey background, as
// normalised CHW PreparedImages.
using GRcn.Detection.Model;

namespace GRcn.Detection.Tests.Model;

internal static class TinyData
{
    public static readonly string[] Classes = ["rectangle", "disc"];

    /// <summary>Image <paramref name="index"/> of a deterministic set: 1–2 objects of 14–28 px in a size×size image.</summary>
    public static PreparedImage Image(int index, int size = 64)
    {
        var rng = new Random(1000 + index);
        var rgb = new float[3 * size * size];
        for (int i = 0; i < rgb.Length; i++) rgb[i] = 0.5f + (float)(rng.NextDouble() - 0.5) * 0.2f;
        int count = 1 + index % 2;
        var boxes = new List<float>();
        var labels = new List<int>();
        for (int o = 0; o < count; o++)
        {
            int label = (index + o) % 2;
            int w = rng.Next(14, 29), h = rng.Next(14, 29);
            int x0 = o == 0 ? rng.Next(0, size / 2 - 8) : rng.Next(size / 2, size - w);
            int y0 = rng.Next(0, size - h);
            x0 = Math.Min(x0, size - w);
            float[] colour = label == 0 ? [0.9f, 0.15f, 0.1f] : [0.1f, 0.3f, 0.95f];
            for (int y = y0; y < y0 + h; y++)
                for (int x = x0; x < x0 + w; x++)
                {
                    if (label == 1)
                    {
                        double dx = (x + 0.5 - x0 - w / 2.0) / (w / 2.0), dy = (y + 0.5 - y0 - h / 2.0) / (h / 2.0);
                        if (dx * dx + dy * dy > 1) continue;
                    }
                    for (int c = 0; c < 3; c++) rgb[(c * size + y) * size + x] = colour[c];
                }
            boxes.AddRange([x0, y0, x0 + w, y0 + h]);
            labels.Add(label);
        }
        float[] mean = [0.485f, 0.456f, 0.406f], std = [0.229f, 0.224f, 0.225f];
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < size * size; i++) rgb[c * size * size + i] = (rgb[c * size * size + i] - mean[c]) / std[c];
        return new PreparedImage(rgb, size, size, size, size, [.. boxes], [.. labels]);
    }

    public static PreparedImage[] Batch(int start, int count, int size = 64) => Enumerable.Range(start, count).Select(i => Image(i, size)).ToArray();
}
