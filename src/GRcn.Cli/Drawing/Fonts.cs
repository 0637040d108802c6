// The fonts every picture uses: DejaVu Sans regular and bold, shipped as embedded resources
// (licence beside them in Drawing/Fonts/) and loaded explicitly, because with no font file on
// the machine SkiaSharp and ScottPlot draw text as nothing, silently.
using SkiaSharp;

namespace GRcn.Cli.Drawing;

internal static class Fonts
{
    public const string Family = "DejaVu Sans";

    private static readonly Lazy<byte[]> RegularBytes = new(() => Read("DejaVuSans.ttf"));
    private static readonly Lazy<byte[]> BoldBytes = new(() => Read("DejaVuSans-Bold.ttf"));
    private static readonly Lazy<SKTypeface> LazyRegular = new(() => Load(RegularBytes.Value, "DejaVuSans.ttf"));
    private static readonly Lazy<SKTypeface> LazyBold = new(() => Load(BoldBytes.Value, "DejaVuSans-Bold.ttf"));

    public static SKTypeface Regular => LazyRegular.Value;

    public static SKTypeface Bold => LazyBold.Value;

    /// <summary>The font file's bytes (for libraries that take a file, such as ScottPlot).</summary>
    public static byte[] File(bool bold) => bold ? BoldBytes.Value : RegularBytes.Value;

    private static byte[] Read(string file)
    {
        using Stream s = typeof(Fonts).Assembly.GetManifestResourceStream("GRcn.Cli.Fonts." + file)
            ?? throw new InvalidOperationException($"the embedded font {file} is missing from the grcn assembly");
        using var ms = new MemoryStream();
        s.CopyTo(ms);
        return ms.ToArray();
    }

    private static SKTypeface Load(byte[] bytes, string file) =>
        SKTypeface.FromData(SKData.CreateCopy(bytes))
        ?? throw new InvalidOperationException($"SkiaSharp cannot read the embedded font {file}");
}
