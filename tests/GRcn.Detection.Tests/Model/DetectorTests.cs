// Engine tests: every named variant builds, trains and detects with a falling loss; a
// resumed run repeats an uninterrupted one exactly; non-finite losses stop training without
// touching the weights; checkpoints round-trip and reject corrupt or foreign files.
using GRcn.Detection.Model;
using GRcn.Detection.Training;
using GRcn.Detection.Variants;

namespace GRcn.Detection.Tests.Model;

public sealed class DetectorTests
{
    /// <summary>A small-image configuration: anchors for 64-pixel images, fewer proposals and RoIs.</summary>
    internal static DetectorConfig Small(string variant, BackboneKind backbone = BackboneKind.Vgg16, double width = 0.0625, float dropout = 0f) =>
        Small(VariantCatalog.Create(variant, backbone, TinyData.Classes, width), dropout);

    internal static DetectorConfig Small(DetectorConfig c, float dropout = 0f) => c with
    {
        Rpn = c.Rpn with { AnchorSizes = [16, 32, 64], PreNmsTopNTrain = 600, PostNmsTopNTrain = 100, PreNmsTopNTest = 300, PostNmsTopNTest = 50 },
        RoiHeads = c.RoiHeads with { BatchSizePerImage = 64, FcDim = 64, Dropout = dropout },
        Input = c.Input with { MinSize = 64, MaxSize = 64 },
    };

    public static TheoryData<string, BackboneKind> Variants()
    {
        var d = new TheoryData<string, BackboneKind>();
        foreach (var n in VariantCatalog.NamesFor(BackboneKind.Vgg16)) d.Add(n, BackboneKind.Vgg16);
        foreach (var m in VariantCatalog.Modifiers) d.Add("g-rcn+" + m, BackboneKind.Vgg16);
        d.Add("g-rcn+roi-align+frozen-backbone", BackboneKind.Vgg16);
        d.Add("faster-rcnn+double-head+harmonic-loss", BackboneKind.Vgg16);
        foreach (var b in new[] { BackboneKind.ResNet50, BackboneKind.ResNet101 })
            foreach (var n in new[] { "faster-rcnn", "g-rcn", b == BackboneKind.ResNet50 ? "resnet50-det" : "resnet-det" })
                d.Add(n, b);
        d.Add("g-rcn+double-head+roi-align", BackboneKind.ResNet50);
        d.Add("detect-S", BackboneKind.ResNet50);
        return d;
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void VariantTrainsDetectsAndItsLossFalls(string variant, BackboneKind backbone)
    {
        var config = Small(variant, backbone, backbone == BackboneKind.Vgg16 ? 0.0625 : 0.03125);
        using var det = Detector.Create(config, seed: 11, options: new TrainingOptions { LearningRate = 0.01, WeightDecay = 0 });
        var batch = TinyData.Batch(0, 2);
        var first = det.Losses(batch).Total;
        for (int i = 0; i < 12; i++)
        {
            var terms = det.TrainStep(batch);
            Assert.True(terms.IsFinite, $"step {i}: {terms}");
        }
        var last = det.Losses(batch).Total;
        Assert.True(last < first * 0.95, $"{variant} on {backbone}: loss {first:F4} → {last:F4} did not fall");
        var dets = det.Detect(batch);
        Assert.Equal(2, dets.Length);
        foreach (var list in dets)
            foreach (var d in list)
            {
                Assert.InRange(d.Label, 0, 1);
                Assert.InRange(d.Score, 0.05f, 1f);
                Assert.True(d.Box.X1 >= 0 && d.Box.Y1 >= 0 && d.Box.X2 <= 64 && d.Box.Y2 <= 64 && d.Box.Area > 0, d.ToString());
            }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ResumingRepeatsAnUninterruptedRunExactly(bool adamW)
    {
        var config = Small("g-rcn", dropout: 0.5f);
        var options = adamW
            ? new TrainingOptions { Optimizer = OptimizerKind.AdamW, LearningRate = 1e-3, CosineIterations = 6, WarmupIterations = 2 }
            : new TrainingOptions { LearningRate = 0.01, Steps = [4], WarmupIterations = 2 };
        var batches = Enumerable.Range(0, 6).Select(i => TinyData.Batch(2 * i, 2)).ToArray();
        var straight = new List<LossTerms>();
        using (var det = Detector.Create(config, seed: 5, options: options))
            foreach (var b in batches) straight.Add(det.TrainStep(b));

        var dir = Directory.CreateTempSubdirectory("grcn-resume");
        try
        {
            var path = Path.Combine(dir.FullName, "ckpt.safetensors");
            var resumed = new List<LossTerms>();
            using (var det = Detector.Create(config, seed: 5, options: options))
            {
                for (int i = 0; i < 3; i++) resumed.Add(det.TrainStep(batches[i]));
                det.Save(path);
            }
            using (var det = Detector.Load(path))
            {
                Assert.Equal(3, det.Iteration);
                Assert.Equal(config.Variant, det.Config.Variant);
                for (int i = 3; i < 6; i++) resumed.Add(det.TrainStep(batches[i]));
            }
            Assert.Equal(straight, resumed);
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public void NonFiniteLossStopsWithoutTouchingTheWeights()
    {
        using var det = Detector.Create(Small("faster-rcnn"), seed: 3, options: new TrainingOptions { LearningRate = 1e6 });
        var batch = TinyData.Batch(0, 2);
        var ex = Record.Exception(() =>
        {
            for (int i = 0; i < 50; i++) det.TrainStep(batch);
        });
        var nf = Assert.IsType<NonFiniteLossException>(ex);
        Assert.Contains("non-finite loss at iteration", nf.Message);
        Assert.Equal(nf.Iteration, det.Iteration);
        // the weights are those after the last finite step: still finite
        foreach (var (name, p) in det.Parameters)
            Assert.All(p.Value.ToArray<float>(), v => Assert.True(float.IsFinite(v), name));
    }

    [Fact]
    public void RoiAlignV2IsUsedAndSurvivesACheckpoint()
    {
        var batch = TinyData.Batch(0, 2);
        var v1 = Small("g-rcn+roi-align");
        var v2 = Small("g-rcn+roi-align-v2");
        Assert.Equal(PoolerKind.RoiAlign, v1.Pooler);
        Assert.Equal(PoolerKind.RoiAlignV2, v2.Pooler);
        var dir = Directory.CreateTempSubdirectory("grcn-v2");
        try
        {
            var path = Path.Combine(dir.FullName, "v2.safetensors");
            double lossV1, lossV2;
            using (var a = Detector.Create(v1, seed: 3)) lossV1 = a.Losses(batch).Total;
            using (var b = Detector.Create(v2, seed: 3))
            {
                lossV2 = b.Losses(batch).Total;
                b.Save(path);
            }
            // same weights, samples moved by half a feature cell: different RoI features, so different losses
            Assert.NotEqual(lossV1, lossV2);
            using var loaded = Detector.Load(path);
            Assert.Equal(PoolerKind.RoiAlignV2, loaded.Config.Pooler);
            Assert.Equal(lossV2, loaded.Losses(batch).Total);
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public void SetInputSizeDetectsAtAnotherScaleAndSurvivesACheckpoint()
    {
        var image = new GRcn.Detection.Data.ShapesDataset(new GRcn.Detection.Data.ShapesOptions { Count = 1, Width = 64, Height = 48 }).Load(0).Image;
        using var d = Detector.Create(Small("g-rcn"), seed: 5);
        var before = d.Prepare(image);
        Assert.Equal((48, 64), (before.Height, before.Width)); // MinSize 64, MaxSize 64: the longer side caps
        d.SetInputSize(96, 100);
        var after = d.Prepare(image);
        Assert.Equal((75, 100), (after.Height, after.Width)); // the longer side caps: scale 100/64
        Assert.Equal([64], d.Config.Input.TrainMinSizes); // training keeps the size it had
        var dir = Directory.CreateTempSubdirectory("grcn-size");
        try
        {
            var path = Path.Combine(dir.FullName, "d.safetensors");
            d.Save(path);
            using var loaded = Detector.Load(path);
            Assert.Equal((96, 100), (loaded.Config.Input.MinSize, loaded.Config.Input.MaxSize));
            Assert.Equal(d.Detect(after).Select(x => x.Box), loaded.Detect(loaded.Prepare(image)).Select(x => x.Box));
        }
        finally
        {
            dir.Delete(true);
        }
        Assert.Equal("minSize", Assert.Throws<ArgumentException>(() => d.SetInputSize(0, 10)).ParamName);
        Assert.Equal("maxSize", Assert.Throws<ArgumentException>(() => d.SetInputSize(50, 40)).ParamName);
    }

    [Fact]
    public void CheckpointsRejectCorruptAndForeignFiles()
    {
        var dir = Directory.CreateTempSubdirectory("grcn-ckpt");
        try
        {
            var path = Path.Combine(dir.FullName, "a.safetensors");
            using (var det = Detector.Create(Small("faster-rcnn"), seed: 1)) det.Save(path);
            Assert.False(File.Exists(path + ".tmp"));
            var bytes = File.ReadAllBytes(path);
            File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
            var e1 = Assert.ThrowsAny<IOException>(() => Detector.Load(path));
            Assert.Contains(path, e1.Message);

            var foreign = Path.Combine(dir.FullName, "b.safetensors");
            using (var t = GRcn.Kernels.Tensor.Zeros(GRcn.Kernels.Device.Cpu, 2))
                GRcn.Kernels.Serialization.SafeTensorsWriter.Write(foreign, [new("x", t)]);
            var e2 = Assert.Throws<InvalidDataException>(() => Detector.Load(foreign));
            Assert.Contains("not a G-RCN checkpoint", e2.Message);
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public void BadInputNamesTheProblem()
    {
        using var det = Detector.Create(Small("faster-rcnn"), seed: 1);
        var img = TinyData.Image(0);
        var e = Assert.Throws<ArgumentException>(() => det.TrainStep([img with { Labels = [7], Boxes = [1, 1, 5, 5] }]));
        Assert.Contains("label 7", e.Message);
        e = Assert.Throws<ArgumentException>(() => det.TrainStep([img with { Pixels = new float[5] }]));
        Assert.Contains("3 × 64 × 64", e.Message);
        Assert.Throws<ArgumentException>(() => VariantCatalog.Create("pool(2,2,1)/loc", BackboneKind.ResNet50, TinyData.Classes));
        var u = Assert.Throws<ArgumentException>(() => VariantCatalog.Create("g-rcn+turbo", BackboneKind.Vgg16, TinyData.Classes));
        Assert.Contains("unknown variant modifier 'turbo'", u.Message);
    }
}
