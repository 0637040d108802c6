// Whole-detector parity with torchvision 0.14's FasterRCNN (issue 15): detector_parity.py builds
// FasterRCNN with this engine's own configuration of a variant (the spec below is written from the
// DetectorConfig), fills it with seeded random weights spread enough to give many detections, runs
// it on images of different sizes and aspect ratios (each resized with a rounded side) and writes
// its state dict with torchvision's key names and its detections. The engine loads that state dict
// through Detector.LoadTorchvision, detects the same images, and must give the same number of
// detections per image, at least 98 % of them matched (same label, IoU > 0.99, score within 1e-4)
// in original-image pixels.
using System.Globalization;
using System.Text.Json;
using GRcn.Detection.Data;
using GRcn.Detection.Model;
using GRcn.Detection.Tests.Backbones;
using GRcn.Detection.Variants;
using GRcn.Kernels;
using GRcn.Kernels.Serialization;
using Xunit.Abstractions;

namespace GRcn.Detection.Tests.Model;

public sealed class DetectorParityTests(ITestOutputHelper output)
{
    private const double MinMatchedFraction = 0.98;
    private const double MatchIou = 0.99;
    private const float ScoreTolerance = 1e-4f;

    /// <summary>Images (width × height) resized with S = 160, L = 240: 333×200 → 240×144 and 200×285 → 160×228 (rounded sides), 176×176 → 160×160.</summary>
    private static readonly (int Width, int Height)[] ImageSizes = [(333, 200), (200, 285), (176, 176)];

    private static readonly string[] Classes = ["a", "b", "c", "d"];

    /// <summary>
    /// The engine's configuration of <paramref name="variant"/> at a CPU-test size: width 1/4, test
    /// images resized to S = 160 (L = 240), anchors 32, 64, 128 to suit them; ResNet C4 keeps 100
    /// proposals (its conv5 head runs once per RoI). Everything else is the variant's own setting.
    /// </summary>
    internal static DetectorConfig Config(string variant, BackboneKind backbone)
    {
        var c = VariantCatalog.Create(variant, backbone, Classes, width: 0.25);
        return c with
        {
            Rpn = c.Rpn with
            {
                AnchorSizes = [32f, 64f, 128f],
                PostNmsTopNTest = backbone == BackboneKind.Vgg16 ? c.Rpn.PostNmsTopNTest : 100,
            },
            Input = c.Input with { MinSize = 160, MaxSize = 240 },
        };
    }

    [Theory]
    [InlineData("faster-rcnn", BackboneKind.Vgg16)]               // RoIPool 7×7
    [InlineData("faster-rcnn+roi-align", BackboneKind.Vgg16)]     // MultiScaleRoIAlign: sampling ratio 2, aligned = False
    [InlineData("faster-rcnn+roi-align-v2", BackboneKind.Vgg16)]  // roi_align aligned = True
    [InlineData("faster-rcnn", BackboneKind.ResNet50)]            // C4: RoIPool 14×14, layer4 as the box head
    public void DetectionsMatchTorchvisionFasterRcnn(string variant, BackboneKind backbone)
    {
        var config = Config(variant, backbone);
        string dir = Path.Combine(Path.GetTempPath(), $"grcn-det-parity-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var images = ImageSizes.Select((s, i) => MakeImage(s.Width, s.Height, 100 + i)).ToArray();
            string specPath = WriteSpec(config, images, dir);
            string stdout = TorchvisionReference.RunScript(Path.Combine("Model", "detector_parity.py"), [specPath, dir]);
            output.WriteLine(stdout.Trim());

            using var detector = Detector.Create(config, seed: 3);
            var loaded = detector.LoadTorchvision(Path.Combine(dir, "weights.safetensors"));
            Assert.Empty(loaded.Missing);
            Assert.Empty(loaded.Unexpected);
            Assert.Equal(detector.Parameters.Count, loaded.Loaded.Count);

            var reference = SafeTensorsFile.Read(Path.Combine(dir, "detections.safetensors"));
            int total = 0, matched = 0;
            float maxScore = 0, maxBox = 0;
            double minIou = 1;
            for (int i = 0; i < images.Length; i++)
            {
                var expected = Reference(reference, i);
                var actual = detector.Detect(images[i]);
                output.WriteLine($"image {i} ({images[i].Width}×{images[i].Height}): torchvision {expected.Count}, engine {actual.Count} detections");
                Assert.Equal(expected.Count, actual.Count);
                var m = Match(expected, actual);
                output.WriteLine($"  matched {m.Matched}");
                total += expected.Count;
                matched += m.Matched;
                maxScore = Math.Max(maxScore, m.MaxScoreDiff);
                maxBox = Math.Max(maxBox, m.MaxBoxDiff);
                minIou = Math.Min(minIou, m.MinIou);
            }
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{variant} on {backbone}: {matched}/{total} matched; over matched pairs: max |score diff| {maxScore:E2}, max |box diff| {maxBox:E2} px, min IoU {minIou:F6}"));
            Assert.True(total >= 100, $"only {total} detections over {images.Length} images: the random weights should give many");
            Assert.True(matched >= MinMatchedFraction * total, $"{matched} of {total} detections matched (IoU > {MatchIou}, same label, score within {ScoreTolerance})");
        }
        finally
        {
            TorchvisionReference.TryDelete(dir);
        }
    }

    /// <summary>
    /// Greedy one-to-one matching in torchvision's (score-descending) order: each reference detection
    /// takes the unused engine detection of the same label with the highest IoU, which must exceed
    /// <see cref="MatchIou"/> with the score within <see cref="ScoreTolerance"/>.
    /// </summary>
    private static (int Matched, float MaxScoreDiff, float MaxBoxDiff, double MinIou) Match(IReadOnlyList<DetectedObject> expected, IReadOnlyList<DetectedObject> actual)
    {
        var used = new bool[actual.Count];
        int matched = 0;
        float maxScore = 0, maxBox = 0;
        double minIou = 1;
        foreach (var e in expected)
        {
            int best = -1;
            double bestIou = 0;
            for (int j = 0; j < actual.Count; j++)
            {
                if (used[j] || actual[j].Label != e.Label) continue;
                double iou = e.Box.Iou(actual[j].Box);
                if (iou > bestIou) (best, bestIou) = (j, iou);
            }
            if (best < 0 || !(bestIou > MatchIou) || !(Math.Abs(actual[best].Score - e.Score) <= ScoreTolerance)) continue;
            used[best] = true;
            matched++;
            var a = actual[best];
            maxScore = Math.Max(maxScore, Math.Abs(a.Score - e.Score));
            maxBox = Math.Max(maxBox, new[] { a.Box.X1 - e.Box.X1, a.Box.Y1 - e.Box.Y1, a.Box.X2 - e.Box.X2, a.Box.Y2 - e.Box.Y2 }.Max(Math.Abs));
            minIou = Math.Min(minIou, bestIou);
        }
        return (matched, maxScore, maxBox, minIou);
    }

    /// <summary>torchvision's detections of image <paramref name="i"/>, labels made 0-based as the engine's.</summary>
    private static List<DetectedObject> Reference(SafeTensorsFile file, int i)
    {
        using var b = file.Load($"boxes_{i}", Device.Cpu);
        using var s = file.Load($"scores_{i}", Device.Cpu);
        using var l = file.Load($"labels_{i}", Device.Cpu);
        var boxes = b.ToArray<float>();
        var scores = s.ToArray<float>();
        var labels = l.ToArray<long>();
        return scores.Select((score, k) => new DetectedObject(
            new Box(boxes[4 * k], boxes[4 * k + 1], boxes[4 * k + 2], boxes[4 * k + 3]), score, (int)labels[k] - 1)).ToList();
    }

    /// <summary>A textured image with flat rectangles (edges for the trunk to respond to), from <paramref name="seed"/>.</summary>
    private static RgbImage MakeImage(int width, int height, int seed)
    {
        var rng = new Random(seed);
        var img = new RgbImage(width, height);
        rng.NextBytes(img.Pixels);
        for (int r = 0; r < 8; r++)
        {
            int x0 = rng.Next(width - 20), y0 = rng.Next(height - 20);
            int x1 = Math.Min(width, x0 + 10 + rng.Next(width / 2)), y1 = Math.Min(height, y0 + 10 + rng.Next(height / 2));
            byte cr = (byte)rng.Next(256), cg = (byte)rng.Next(256), cb = (byte)rng.Next(256);
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++)
                {
                    int o = 3 * (y * width + x);
                    (img.Pixels[o], img.Pixels[o + 1], img.Pixels[o + 2]) = (cr, cg, cb);
                }
        }
        return img;
    }

    /// <summary>Writes the images as raw RGB and the torchvision settings of <paramref name="c"/> as JSON; returns the JSON's path.</summary>
    private static string WriteSpec(DetectorConfig c, RgbImage[] images, string dir)
    {
        Assert.Equal((1.0, 1.0, 1.0, 1.0), c.Rpn.BoxWeights); // torchvision's RPN box coder
        Assert.False(c.Split || c.ContextCls || c.ContextLoc || c.Head != HeadArrangement.Shared);
        var files = new List<object>();
        for (int i = 0; i < images.Length; i++)
        {
            string path = Path.Combine(dir, $"image{i}.rgb");
            File.WriteAllBytes(path, images[i].Pixels);
            files.Add(new { path, width = images[i].Width, height = images[i].Height });
        }
        var spec = new Dictionary<string, object>
        {
            ["backbone"] = c.Backbone switch { BackboneKind.Vgg16 => "vgg16", BackboneKind.ResNet50 => "resnet50", _ => throw new ArgumentException("no torchvision layout") },
            ["width"] = c.Width,
            ["pooler"] = c.Pooler switch { PoolerKind.RoiPool => "roi_pool", PoolerKind.RoiAlign => "roi_align", _ => "roi_align_v2" },
            ["pool_size"] = c.RoiHeads.PoolSize,
            ["fc_dim"] = c.RoiHeads.FcDim,
            ["classes_with_background"] = c.NumClasses + 1,
            ["anchor_sizes"] = c.Rpn.AnchorSizes,
            ["aspect_ratios"] = c.Rpn.AspectRatios,
            ["min_size"] = c.Input.MinSize,
            ["max_size"] = c.Input.MaxSize,
            ["mean"] = c.Input.Mean,
            ["std"] = c.Input.Std,
            ["size_divisible"] = c.Input.SizeDivisible,
            ["rpn_pre_nms_test"] = c.Rpn.PreNmsTopNTest,
            ["rpn_post_nms_test"] = c.Rpn.PostNmsTopNTest,
            ["rpn_nms"] = c.Rpn.NmsThreshold,
            ["rpn_score_thresh"] = c.Rpn.ScoreThreshold,
            ["rpn_min_size"] = c.Rpn.MinSize,
            ["box_score_thresh"] = c.RoiHeads.ScoreThreshold,
            ["box_nms"] = c.RoiHeads.NmsThreshold,
            ["detections_per_img"] = c.RoiHeads.DetectionsPerImage,
            ["box_weights"] = c.RoiHeads.BoxWeights,
            ["seed"] = 20250115,
            ["images"] = files,
        };
        string specPath = Path.Combine(dir, "spec.json");
        File.WriteAllText(specPath, JsonSerializer.Serialize(spec));
        return specPath;
    }
}
