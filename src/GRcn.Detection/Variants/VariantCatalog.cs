// The named detector variants (docs/variants.md): each name maps to a DetectorConfig of the
// one engine. Names compose with '+': "g-rcn+roi-align+frozen-backbone".
namespace GRcn.Detection.Variants;

/// <summary>Builds <see cref="DetectorConfig"/>s from variant names.</summary>
public static class VariantCatalog
{
    /// <summary>Base variant names (the first part of a composed name).</summary>
    public static IReadOnlyList<string> BaseNames { get; } =
    [
        "faster-rcnn", "detect-F", "detect-RF", "detect-S", "context/cls", "context/loc",
        "-pool/cls", "-pool/loc", "conv(2,2,2)/loc", "pool(2,2,1)/loc", "g-rcn", "resnet-det", "resnet50-det",
    ];

    /// <summary>Modifiers that compose with any base name.</summary>
    public static IReadOnlyList<string> Modifiers { get; } = ["double-head", "harmonic-loss", "frozen-backbone", "roi-align", "roi-align-v2"];

    /// <summary>The variants that run on <paramref name="backbone"/>.</summary>
    public static IReadOnlyList<string> NamesFor(BackboneKind backbone) => backbone == BackboneKind.Vgg16
        ? BaseNames.Where(n => !n.StartsWith("resnet", StringComparison.Ordinal)).ToArray()
        : ["faster-rcnn", "detect-F", "detect-RF", "detect-S", "context/cls", "context/loc", "-pool/loc", "g-rcn",
           backbone == BackboneKind.ResNet50 ? "resnet50-det" : "resnet-det"];

    /// <summary>
    /// The configuration of <paramref name="variant"/> (a base name, optionally followed by
    /// "+modifier" parts) on <paramref name="backbone"/> with the given width and classes.
    /// </summary>
    /// <exception cref="ArgumentException">Unknown name, or a variant that does not apply to the backbone.</exception>
    public static DetectorConfig Create(string variant, BackboneKind backbone, IReadOnlyList<string> classNames, double width = 1.0)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(variant);
        ArgumentNullException.ThrowIfNull(classNames);
        if (classNames.Count == 0) throw new ArgumentException("at least one class is needed", nameof(classNames));
        if (width is <= 0 or > 4 || double.IsNaN(width)) throw new ArgumentOutOfRangeException(nameof(width), width, "width must be in (0, 4]");
        var parts = variant.Split('+', StringSplitOptions.TrimEntries);
        string name = parts[0];
        // "resnet50-det" names its backbone; accept it with either ResNet
        if (name == "resnet50-det" && backbone == BackboneKind.Vgg16) backbone = BackboneKind.ResNet50;
        bool vgg = backbone == BackboneKind.Vgg16;
        var c = new DetectorConfig
        {
            Variant = variant,
            Backbone = backbone,
            Width = width,
            ClassNames = [.. classNames],
            FrozenStages = 0,
            RoiHeads = new RoiHeadSettings
            {
                PoolSize = vgg ? 7 : 14,
                FcDim = Math.Max(16, (int)Math.Round(4096 * width)),
                Dropout = 0.5f,
            },
        };
        int splitBlocks = backbone == BackboneKind.ResNet101 ? 6 : 2;
        c = name switch
        {
            "faster-rcnn" => c,
            "detect-F" => vgg ? c with { Split = true } : c with { Split = true, ResNetSplitBlocks = splitBlocks },
            "detect-RF" => c with { Head = HeadArrangement.Separate },
            "detect-S" => c with { Head = HeadArrangement.Averaged },
            "context/cls" => c with { ContextCls = true },
            "context/loc" => c with { ContextLoc = true },
            "-pool/cls" when vgg => c with { Split = true, ClsPool4 = Pool4Mode.Remove },
            "-pool/loc" => vgg
                ? c with { Split = true, LocPool4 = Pool4Mode.Remove }
                : c with { Split = true, ResNetSplitBlocks = splitBlocks, ResNetLocStride1 = true },
            "conv(2,2,2)/loc" when vgg => c with { Split = true, LocPool4 = Pool4Mode.LearnedConv },
            "pool(2,2,1)/loc" when vgg => c with { Split = true, LocPool4 = Pool4Mode.MaxPoolStride1 },
            "g-rcn" => vgg
                ? c with { Split = true, LocPool4 = Pool4Mode.Remove, ContextCls = true }
                : c with { Split = true, ResNetSplitBlocks = splitBlocks, ResNetLocStride1 = true, ContextCls = true },
            "resnet-det" or "resnet50-det" when !vgg => c with
            {
                ResNetLayout = ResNetLayout.Det,
                Pooler = PoolerKind.RoiAlign,
                RoiHeads = c.RoiHeads with { PoolSize = 7, FcDim = Math.Max(16, (int)Math.Round(1024 * width)), Dropout = 0f },
            },
            _ when BaseNames.Contains(name) => throw new ArgumentException(
                $"variant '{name}' does not apply to {backbone}; variants for it: {string.Join(", ", NamesFor(backbone))}", nameof(variant)),
            _ => throw new ArgumentException(
                $"unknown variant '{name}'; known: {string.Join(", ", BaseNames)} (optionally + {string.Join(", +", Modifiers)})", nameof(variant)),
        };
        foreach (var m in parts.Skip(1))
        {
            c = m switch
            {
                "double-head" => c with { Head = HeadArrangement.DoubleHead },
                "harmonic-loss" => c with { HarmonicLoss = true },
                "frozen-backbone" => c with { FreezeBackbone = true },
                "roi-align" => c with { Pooler = PoolerKind.RoiAlign },
                "roi-align-v2" => c with { Pooler = PoolerKind.RoiAlignV2 },
                _ => throw new ArgumentException($"unknown variant modifier '{m}'; known: {string.Join(", ", Modifiers)}", nameof(variant)),
            };
        }
        return c;
    }

    /// <summary>Parses a backbone name: vgg16, resnet50, resnet101 (case-insensitive).</summary>
    public static BackboneKind ParseBackbone(string name) => name.ToLowerInvariant().Replace("-", "") switch
    {
        "vgg16" or "vgg" => BackboneKind.Vgg16,
        "resnet50" or "r50" => BackboneKind.ResNet50,
        "resnet101" or "r101" => BackboneKind.ResNet101,
        _ => throw new ArgumentException($"unknown backbone '{name}'; known: vgg16, resnet50, resnet101", nameof(name)),
    };
}
