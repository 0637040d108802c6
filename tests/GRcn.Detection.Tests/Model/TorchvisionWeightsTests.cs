// Detector.LoadTorchvision without python: a detector's weights written under torchvision's
// FasterRCNN key names (VGG16 features[:30] as backbone.N, rpn.head.conv.0.0, roi_heads.box_head /
// box_predictor; ResNet C4 as nn.Sequential indices with layer4 in roi_heads.box_head.0) load into
// a second detector, which then detects exactly what the first does; a missing or left-over key,
// a shape mismatch or a layout torchvision cannot express loads nothing and says why.
using GRcn.Detection.Model;
using GRcn.Detection.Nn;
using GRcn.Detection.Variants;
using GRcn.Kernels.Serialization;

namespace GRcn.Detection.Tests.Model;

public sealed class TorchvisionWeightsTests
{
    /// <summary>torchvision's name of engine parameter <paramref name="name"/> (the inverse of the documented mapping).</summary>
    private static string TorchvisionName(string name, BackboneKind backbone)
    {
        if (name.StartsWith("rpn.head.conv.", StringComparison.Ordinal)) return "rpn.head.conv.0.0." + name["rpn.head.conv.".Length..];
        if (name.StartsWith("rpn.", StringComparison.Ordinal)) return name;
        if (name.StartsWith("box_predictor.", StringComparison.Ordinal)) return "roi_heads." + name;
        if (name.StartsWith("roi_head.", StringComparison.Ordinal)) return "roi_heads.box_head." + name["roi_head.".Length..];
        if (backbone == BackboneKind.Vgg16) return "backbone." + name["backbone.features.".Length..];
        string rest = name["backbone.".Length..];
        foreach (var (engine, tv) in new[] { ("conv1.", "backbone.0."), ("bn1.", "backbone.1."), ("layer1.", "backbone.4."), ("layer2.", "backbone.5."),
                     ("layer3.", "backbone.6."), ("layer4.", "roi_heads.box_head.0.") })
            if (rest.StartsWith(engine, StringComparison.Ordinal)) return tv + rest[engine.Length..];
        throw new InvalidOperationException(name);
    }

    private static void WriteTorchvision(Detector d, string path, Func<string, bool>? keep = null, string? extra = null)
    {
        var entries = d.Parameters.Where(p => keep?.Invoke(p.Name) ?? true)
            .Select(p => KeyValuePair.Create(TorchvisionName(p.Name, d.Config.Backbone), p.Parameter.Value)).ToList();
        if (extra is not null) entries.Add(KeyValuePair.Create(extra, d.Parameters[0].Parameter.Value));
        SafeTensorsWriter.Write(path, entries);
    }

    [Theory]
    [InlineData("faster-rcnn", BackboneKind.Vgg16)]
    [InlineData("faster-rcnn+roi-align", BackboneKind.ResNet50)]
    public void TorchvisionNamedWeightsGiveTheSameDetections(string variant, BackboneKind backbone)
    {
        var config = DetectorTests.Small(variant, backbone);
        var dir = Directory.CreateTempSubdirectory("grcn-tvw");
        try
        {
            string path = Path.Combine(dir.FullName, "tv.safetensors");
            using var a = Detector.Create(config, seed: 1);
            WriteTorchvision(a, path);
            using var b = Detector.Create(config, seed: 2);
            var image = TinyData.Image(3);
            Assert.NotEqual(a.Detect(image).Select(x => x.Box), b.Detect(image).Select(x => x.Box));
            var r = b.LoadTorchvision(path);
            Assert.Equal(a.Parameters.Count, r.Loaded.Count);
            Assert.Empty(r.Missing);
            Assert.Empty(r.Unexpected);
            Assert.Equal(a.Detect(image), b.Detect(image));
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public void MismatchesLoadNothingAndSayWhy()
    {
        var config = DetectorTests.Small("faster-rcnn");
        var dir = Directory.CreateTempSubdirectory("grcn-tvw");
        try
        {
            using var a = Detector.Create(config, seed: 1);
            using var b = Detector.Create(config, seed: 2);
            var before = b.Parameters.Select(p => p.Parameter.Value.ToArray<float>()).ToArray();

            string missing = Path.Combine(dir.FullName, "missing.safetensors");
            WriteTorchvision(a, missing, keep: n => n != "rpn.head.cls_logits.bias");
            var e = Assert.Throws<StateDictException>(() => b.LoadTorchvision(missing));
            Assert.Contains("rpn.head.cls_logits.bias", e.Message);

            string extra = Path.Combine(dir.FullName, "extra.safetensors");
            WriteTorchvision(a, extra, extra: "roi_heads.mask_head.0.weight");
            e = Assert.Throws<StateDictException>(() => b.LoadTorchvision(extra));
            Assert.Contains("roi_heads.mask_head.0.weight", e.Message);

            // other classes: the predictor's shapes differ
            using var c = Detector.Create(config with { ClassNames = ["a", "b", "c", "d", "e", "f", "g"] }, seed: 1);
            string classes = Path.Combine(dir.FullName, "classes.safetensors");
            WriteTorchvision(c, classes);
            e = Assert.Throws<StateDictException>(() => b.LoadTorchvision(classes));
            Assert.Contains("roi_heads.box_predictor.", e.Message);
            Assert.Contains("shape", e.Message);

            Assert.Equal(before, b.Parameters.Select(p => p.Parameter.Value.ToArray<float>()).ToArray());

            using var split = Detector.Create(DetectorTests.Small("g-rcn"), seed: 1);
            var layout = Assert.Throws<ArgumentException>(() => split.LoadTorchvision(missing));
            Assert.Contains("split", layout.Message);
        }
        finally
        {
            dir.Delete(true);
        }
    }
}
