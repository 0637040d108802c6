// The G-RCN paper's own numbers (shared/specs/variants.md, Tables 1–5), in percent, for the
// rows our variants reproduce: COCO AP, AP50, AP75, APs, APm, APl and VOC 2007 AP70 where the
// paper reports them (null where it does not). VGG16 rows are Tables 1–3 and 4–5's VGG16
// column; ResNet rows are Tables 4–5.
using GRcn.Detection.Variants;

namespace GRcn.Cli.Reporting;

/// <summary>One row of the paper's tables.</summary>
internal sealed record PaperRow(string Source, double? AP, double? AP50, double? AP75, double? APs, double? APm, double? APl, double? VocAP70);

internal static class PaperResults
{
    private static readonly Dictionary<(string, BackboneKind), PaperRow> Rows = new()
    {
        [("faster-rcnn", BackboneKind.Vgg16)] = new("Table 1", 21.3, 42.0, 19.8, null, null, null, 55.8),
        [("detect-F", BackboneKind.Vgg16)] = new("Table 1", 21.8, 41.9, 20.7, null, null, null, null),
        [("detect-RF", BackboneKind.Vgg16)] = new("Table 1", 21.9, 41.9, 20.9, null, null, null, null),
        [("detect-S", BackboneKind.Vgg16)] = new("Table 1", 21.3, 41.6, 19.9, null, null, null, null),
        [("context/cls", BackboneKind.Vgg16)] = new("Table 2", 22.1, 42.9, 20.9, null, null, null, null),
        [("context/loc", BackboneKind.Vgg16)] = new("Table 2", 21.4, 41.4, 20.1, null, null, null, null),
        [("-pool/cls", BackboneKind.Vgg16)] = new("Table 3", 21.0, 39.8, 20.2, 6.3, 23.0, 31.1, null),
        [("-pool/loc", BackboneKind.Vgg16)] = new("Table 3", 22.9, 42.5, 22.7, 7.1, 25.9, 34.6, 56.6),
        [("conv(2,2,2)/loc", BackboneKind.Vgg16)] = new("Table 3", 21.4, 41.7, 20.1, 5.8, 23.4, 33.7, null),
        [("pool(2,2,1)/loc", BackboneKind.Vgg16)] = new("Table 3", 23.0, 42.4, 22.9, 7.2, 26.3, 34.6, null),
        [("g-rcn", BackboneKind.Vgg16)] = new("Tables 4–5", 23.3, null, null, null, null, null, 58.1),
        [("faster-rcnn", BackboneKind.ResNet50)] = new("Tables 4–5", 20.8, null, null, null, null, null, 55.9),
        [("g-rcn", BackboneKind.ResNet50)] = new("Tables 4–5", 22.7, null, null, null, null, null, 57.9),
        [("faster-rcnn", BackboneKind.ResNet101)] = new("Tables 4–5", 22.8, null, null, null, null, null, 60.6),
        [("g-rcn", BackboneKind.ResNet101)] = new("Tables 4–5", 25.3, null, null, null, null, null, 63.0),
        [("resnet50-det", BackboneKind.ResNet50)] = new("Tables 4–5", 22.3, null, null, null, null, null, 59.5),
        [("resnet-det", BackboneKind.ResNet50)] = new("Tables 4–5", 22.3, null, null, null, null, null, 59.5),
        [("resnet50-det", BackboneKind.Vgg16)] = new("Tables 4–5", 22.3, null, null, null, null, null, 59.5),
    };

    /// <summary>
    /// The paper's row for <paramref name="variant"/> on <paramref name="backbone"/>, or null. The RoI pooler modifiers
    /// (+roi-align, +roi-align-v2) are looked through: the rows are branch structures, and a study that runs every
    /// structure with the main job's aligned RoIAlign compares the same structures; any other modifier has no row.
    /// </summary>
    public static PaperRow? For(string variant, BackboneKind backbone)
    {
        var parts = variant.Split('+', StringSplitOptions.TrimEntries);
        return parts.Skip(1).All(m => m is "roi-align" or "roi-align-v2") && Rows.TryGetValue((parts[0], backbone), out var row) ? row : null;
    }
}
