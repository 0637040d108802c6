// The key mapping from a torchvision FasterRCNN state dict (torchvision's key names) to this
// engine's parameter names, for the layouts torchvision can express: a VGG16 trunk (features[:30])
// or a ResNet C4 trunk (conv1 … layer3) as FasterRCNN.backbone, torchvision's RPNHead, a box head
// (TwoMLPHead fc6/fc7 for VGG16, layer4 for C4) and FastRCNNPredictor. docs/torchvision-weights.md
// lists every rule; the rules only rename, values are copied as they are (float32, converted from
// F64/F16/BF16 when the file holds those).
using GRcn.Detection.Nn;
using GRcn.Detection.Variants;

namespace GRcn.Detection.Model;

internal static class TorchvisionDetectorWeights
{
    /// <summary>Throws when <paramref name="c"/> is a layout torchvision's FasterRCNN has no state dict for.</summary>
    public static void CheckLayout(DetectorConfig c)
    {
        string? why =
            c.Split ? "split cls/loc branches" :
            c.ContextCls || c.ContextLoc ? "context attention" :
            c.Head != HeadArrangement.Shared ? $"the {c.Head} head arrangement" :
            c.ClsPool4 != Pool4Mode.MaxPool ? $"pool4 mode {c.ClsPool4}" :
            c.GroupNormGroups > 0 ? "group norm in VGG16 (torchvision's VGG16 has none)" :
            c.Backbone != BackboneKind.Vgg16 && c.ResNetLayout != ResNetLayout.C4 ? "the ResNet-det layout" :
            null;
        if (why is not null)
            throw new ArgumentException(
                $"variant '{c.Variant}' on {c.Backbone} has {why}: torchvision FasterRCNN weights load into the non-split, " +
                "shared-head layouts only (faster-rcnn with RoIPool / roi-align / roi-align-v2 on VGG16 or ResNet C4)", nameof(c));
    }

    /// <summary>The engine parameter name of torchvision key <paramref name="key"/> (the key itself when no rule applies).</summary>
    public static string Rename(string key, BackboneKind backbone)
    {
        // RPNHead: torchvision ≥ 0.13 names its 3×3 conv conv.0.0 (Conv2dNormActivation in a
        // Sequential); older checkpoints name it conv.
        if (key.StartsWith("rpn.head.conv.0.0.", StringComparison.Ordinal)) return "rpn.head.conv." + key["rpn.head.conv.0.0.".Length..];
        if (key.StartsWith("rpn.head.", StringComparison.Ordinal)) return key;
        if (key.StartsWith("roi_heads.box_predictor.", StringComparison.Ordinal)) return "box_predictor." + key["roi_heads.box_predictor.".Length..];
        if (backbone == BackboneKind.Vgg16)
        {
            // TwoMLPHead
            if (key.StartsWith("roi_heads.box_head.", StringComparison.Ordinal)) return "roi_head." + key["roi_heads.box_head.".Length..];
            // backbone = vgg16().features[:30] (keys backbone.N.*) or a module holding it as .features
            if (key.StartsWith("backbone.features.", StringComparison.Ordinal)) return key;
            if (key.StartsWith("backbone.", StringComparison.Ordinal) && StartsWithIndex(key, "backbone.".Length)) return "backbone.features." + key["backbone.".Length..];
            return key;
        }
        // ResNet C4: the trunk as IntermediateLayerGetter (backbone.body.<name>), as a module with
        // ResNet's attribute names (backbone.<name>), or as nn.Sequential(conv1, bn1, relu, maxpool,
        // layer1, layer2, layer3) (backbone.0 / 1 / 4 / 5 / 6); the box head holds layer4 as
        // .layer4 or as the first entry of a Sequential (roi_heads.box_head.0).
        if (key.StartsWith("backbone.body.", StringComparison.Ordinal)) return "backbone." + key["backbone.body.".Length..];
        if (key.StartsWith("roi_heads.box_head.layer4.", StringComparison.Ordinal)) return "backbone.layer4." + key["roi_heads.box_head.layer4.".Length..];
        if (key.StartsWith("roi_heads.box_head.0.", StringComparison.Ordinal)) return "backbone.layer4." + key["roi_heads.box_head.0.".Length..];
        if (key.StartsWith("backbone.", StringComparison.Ordinal))
        {
            string rest = key["backbone.".Length..];
            int dot = rest.IndexOf('.');
            string? module = dot < 0 ? null : rest[..dot] switch
            {
                "0" => "conv1", "1" => "bn1", "4" => "layer1", "5" => "layer2", "6" => "layer3",
                _ => null,
            };
            if (module is not null) return "backbone." + module + rest[dot..];
        }
        return key;
    }

    private static bool StartsWithIndex(string key, int at) => at < key.Length && char.IsAsciiDigit(key[at]);
}
