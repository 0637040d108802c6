// The grcn commands end to end on tiny settings: train writes its folder and resumes, eval
// scores a checkpoint and a COCO file pair, detect draws images, compare writes its report,
// and bad arguments exit with code 2 and a message naming the option.
using System.Text.Json;
using GRcn.Cli.Commands;
using GRcn.Cli.Reporting;
using GRcn.Cli.Training;
using GRcn.Detection.Data;
using GRcn.Kernels;
using GRcn.Kernels.Serialization;

namespace GRcn.Cli.Tests;

public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("grcn-cli-tests-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

public class CommandTests
{
    /// <summary>A tiny, fast training setting: sixteenth-width VGG16 on 64-pixel images.</summary>
    private static readonly string[] Tiny =
        ["--width", "0.0625", "--size", "64", "--batch", "2", "--train-images", "8", "--test-images", "4", "--threads", "2"];

    internal static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = GrcnApp.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public void TrainWritesItsFolderThenResumesAndEvaluatesAndDetects()
    {
        using var tmp = new TempDir();
        string run = Path.Combine(tmp.Path, "run");
        var (code, output, err) = Run(["train", "--iters", "2", "--out", run, "--checkpoint-every", "1", .. Tiny]);
        Assert.True(code == 0, output + err);
        foreach (var f in new[] { "checkpoint.safetensors", "metrics.json", "detections.png", "loss.png", "loss.svg", "lr.png", "lr.svg", "losses.csv" })
            Assert.True(File.Exists(Path.Combine(run, f)), f + " missing");
        PlotTests.AssertSvgWithText(File.ReadAllText(Path.Combine(run, "loss.svg")), "rpn objectness");
        PlotTests.AssertSvgWithText(File.ReadAllText(Path.Combine(run, "lr.svg")), "learning rate");
        Assert.Contains("VOC AP50", output);
        Assert.Contains("AP50", output);
        using (var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))))
        {
            Assert.Equal("g-rcn+roi-align-v2", doc.RootElement.GetProperty("variant").GetString());
            Assert.Equal(2, doc.RootElement.GetProperty("iterations").GetInt32());
            Assert.Equal(10, doc.RootElement.GetProperty("ap_by_iou").GetArrayLength());
            Assert.Equal(4, doc.RootElement.GetProperty("images").GetInt32());
        }
        Assert.True(ImageFile.Load(Path.Combine(run, "detections.png")).Width > 256);

        // the training time goes on from the checkpoint's (set to 1000 s here, so a count restarted at 0 shows)
        string checkpoint = Path.Combine(run, "checkpoint.safetensors");
        WriteWithMetadata(checkpoint, checkpoint, m => m["training_seconds"] = "1000");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        (code, output, err) = Run(["train", "--iters", "3", "--out", run, "--resume", .. Tiny]);
        double wall = clock.Elapsed.TotalSeconds;
        Assert.True(code == 0, output + err);
        Assert.Contains("resuming", output);
        Assert.Contains("of it since --resume at iteration 2)", output);
        var losses = TrainSession.ReadLosses(Path.Combine(run, "losses.csv"));
        Assert.Equal([1, 2, 3], losses.Select(l => l.Iteration));
        using (var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))))
        {
            double seconds = doc.RootElement.GetProperty("training_seconds").GetDouble();
            Assert.InRange(seconds, 1000, 1000 + wall + 0.1);
            Assert.Equal(0, doc.RootElement.GetProperty("timed_from_iteration").GetInt32());
        }
        using (var d = GRcn.Detection.Model.Detector.Load(checkpoint))
            Assert.InRange(d.TrainingTime.TotalSeconds, 1000, 1000 + wall);

        // a checkpoint written before the training time was recorded: the time counts from its iteration, and says so
        WriteWithMetadata(checkpoint, checkpoint, WithoutTrainingTime);
        (code, output, err) = Run(["train", "--iters", "4", "--out", run, "--resume", .. Tiny]);
        Assert.True(code == 0, output + err);
        Assert.Contains("from iteration 3 on (the checkpoint resumed there did not record the training time before it)", output);
        using (var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))))
        {
            Assert.InRange(doc.RootElement.GetProperty("training_seconds").GetDouble(), 0, 1000);
            Assert.Equal(3, doc.RootElement.GetProperty("timed_from_iteration").GetInt32());
        }

        string json = Path.Combine(tmp.Path, "eval.json");
        (code, output, err) = Run("eval", "--checkpoint", Path.Combine(run, "checkpoint.safetensors"), "--test-images", "3", "--json", json);
        Assert.True(code == 0, output + err);
        Assert.Contains("iteration 4", output);
        Assert.Contains("shorter side 64", output);
        Assert.True(File.Exists(json));
        (code, output, err) = Run("eval", "--checkpoint", Path.Combine(run, "checkpoint.safetensors"), "--test-images", "3", "--size", "96", "--json", json);
        Assert.True(code == 0, output + err);
        Assert.Contains("shorter side 96", output);
        using (var doc = JsonDocument.Parse(File.ReadAllText(json)))
            Assert.Equal(96, doc.RootElement.GetProperty("size").GetInt32());
        (code, _, err) = Run("eval", "--checkpoint", Path.Combine(run, "checkpoint.safetensors"), "--size", "0");
        Assert.Equal(2, code);
        Assert.Contains("--size", err);

        string image = Path.Combine(tmp.Path, "shape.png");
        File.WriteAllBytes(image, ImageFile.EncodePng(new ShapesDataset(new ShapesOptions { Count = 1 }).Load(0).Image));
        string detections = Path.Combine(tmp.Path, "detect");
        (code, output, err) = Run("detect", image, "--checkpoint", Path.Combine(run, "checkpoint.safetensors"), "--out", detections, "--json", "--threshold", "0");
        Assert.True(code == 0, output + err);
        Assert.Equal(256, ImageFile.Load(Path.Combine(detections, "shape.png")).Width);
        using (var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(detections, "detections.json"))))
            Assert.Equal(image, doc.RootElement.GetProperty("images")[0].GetProperty("image").GetString());
        (code, _, err) = Run("detect", image, "--checkpoint", Path.Combine(run, "checkpoint.safetensors"), "--out", detections, "--size", "-1");
        Assert.Equal(2, code);
        Assert.Contains("--size must be in [1, ", err);
    }

    [Fact]
    public void EvalScoresACocoResultsFileWithoutAModel()
    {
        using var tmp = new TempDir();
        string gt = Path.Combine(tmp.Path, "gt.json"), res = Path.Combine(tmp.Path, "res.json"), json = Path.Combine(tmp.Path, "m.json");
        File.WriteAllText(gt, """
            {"images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
             "categories": [{"id": 3, "name": "ring"}, {"id": 7, "name": "plus"}],
             "annotations": [
               {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
               {"id": 2, "image_id": 2, "category_id": 7, "bbox": [50, 40, 30, 20], "area": 600, "iscrowd": 0}]}
            """);
        // the ring is found exactly; the plus with its box shifted 6 of its 30 pixels (IoU 2/3)
        File.WriteAllText(res, """
            [{"image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20], "score": 0.9},
             {"image_id": 2, "category_id": 7, "bbox": [56, 40, 30, 20], "score": 0.8}]
            """);
        var (code, output, err) = Run("eval", "--coco-gt", gt, "--coco-results", res, "--json", json);
        Assert.True(code == 0, output + err);
        Assert.Contains("2 images", output);
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var m = doc.RootElement.GetProperty("metrics");
        // IoU of the plus: 24·20 / (2·600 − 480) = 2/3, a hit at thresholds 0.50 … 0.65 (4 of 10)
        Assert.Equal(1.0, m.GetProperty("AP50").GetDouble(), 1e-9);
        Assert.Equal(0.5, m.GetProperty("AP75").GetDouble(), 1e-9);
        Assert.Equal((1.0 + 0.4) / 2, m.GetProperty("AP").GetDouble(), 1e-9);
        Assert.Equal(JsonValueKind.Null, m.GetProperty("VOC_AP50").ValueKind);
    }

    [Fact]
    public void CompareWritesMarkdownAndHtmlWithThePapersNumbers()
    {
        using var tmp = new TempDir();
        string dir = Path.Combine(tmp.Path, "cmp");
        var (code, output, err) = Run(["compare", "--variants", "faster-rcnn,conv(2,2,2)/loc", "--seeds", "1", "--iters", "1", "--out", dir, .. Tiny]);
        Assert.True(code == 0, output + err);
        string md = File.ReadAllText(Path.Combine(dir, "report.md"));
        Assert.Contains("| faster-rcnn | 1 |", md);
        Assert.Contains("| conv(2,2,2)/loc | 1 |", md);
        Assert.Contains("shorter side 64, seeds 0–0.", md);   // one size for training and test: said once, as grcn train says it
        Assert.Contains("21.3", md);   // the paper's faster-rcnn AP
        Assert.Contains("33.7", md);   // the paper's conv(2,2,2)/loc APl
        Assert.Contains("![training loss](loss.png) ([SVG](loss.svg))", md);
        string html = File.ReadAllText(Path.Combine(dir, "report.html"));
        Assert.Equal(3, html.Split("data:image/svg+xml;base64,").Length - 1);   // paired differences, AP against IoU, loss
        foreach (var name in new[] { "paired", "loss", "ap_iou" })
            Assert.True(File.Exists(Path.Combine(dir, name + ".png")), name + ".png missing");
        string lossSvg = File.ReadAllText(Path.Combine(dir, "loss.svg"));
        PlotTests.AssertSvgWithText(lossSvg, "rpn box");
        Assert.Contains("conv(2,2,2)/loc", lossSvg);   // the legend names the variants
        PlotTests.AssertSvgWithText(File.ReadAllText(Path.Combine(dir, "ap_iou.svg")), "IoU threshold");
        Assert.True(File.Exists(Path.Combine(dir, "conv_2_2_2_loc", "seed-0", "metrics.json")));
    }

    [Fact]
    public void CompareRunAgainReusesFinishedRunsResumesInterruptedOnesAndLeavesOtherRunsAlone()
    {
        using var tmp = new TempDir();
        string dir = Path.Combine(tmp.Path, "cmp");
        string[] args = ["compare", "--variants", "faster-rcnn,-pool/loc", "--seeds", "2", "--iters", "1", "--out", dir, "--baseline", "faster-rcnn", .. Tiny];
        var (code, output, err) = Run(args);
        Assert.True(code == 0, output + err);
        string metrics = Path.Combine(dir, "faster-rcnn", "seed-1", "metrics.json"), resumed = Path.Combine(dir, "-pool_loc", "seed-0");
        string before = File.ReadAllText(metrics);
        // one run's evaluation lost (as if interrupted after its last checkpoint), its checkpoint from before the
        // training time was recorded
        File.Delete(Path.Combine(resumed, "metrics.json"));
        string resumedCheckpoint = Path.Combine(resumed, TrainSession.CheckpointFile);
        WriteWithMetadata(resumedCheckpoint, resumedCheckpoint, WithoutTrainingTime);

        (code, output, err) = Run(args);
        Assert.True(code == 0, output + err);
        Assert.Equal(3, output.Split("finished earlier, reusing its metrics.json").Length - 1);
        Assert.Contains($"-pool/loc, seed 0 → {resumed}: resuming its checkpoint", output);
        Assert.Equal(before, File.ReadAllText(metrics));
        Assert.True(File.Exists(Path.Combine(resumed, "metrics.json")));
        string report = File.ReadAllText(Path.Combine(dir, "report.md"));
        Assert.Contains("| -pool/loc | 2 |", report);
        // its time counts from the checkpoint's iteration: the mean is a lower bound, and the report says why
        Assert.Matches(@"\| -pool/loc \| 2 \|( [^|]+ \|){8} ≥ \d+:\d\d \|", report);
        Assert.Matches(@"\| faster-rcnn \| 2 \|( [^|]+ \|){8} \d+:\d\d \|", report);
        Assert.Contains("so its time counts from that iteration only: -pool/loc seed 0 from iteration 1.", report);

        // other settings into the same folder: every run is left alone and listed as failed
        (code, output, err) = Run([.. args[..^Tiny.Length].Select(a => a == "1" ? "2" : a), .. Tiny]);
        Assert.Equal(1, code);
        Assert.Contains("is a run with other settings (iterations 1, here 2)", err);
        Assert.Equal(before, File.ReadAllText(metrics));
    }

    /// <summary>
    /// Writes the tensors of the safetensors file <paramref name="source"/> to <paramref name="destination"/> (the same
    /// path rewrites it) with its metadata edited as <paramref name="edit"/> says.
    /// </summary>
    internal static void WriteWithMetadata(string source, string destination, Action<Dictionary<string, string>> edit)
    {
        var file = SafeTensorsFile.Read(source);
        var meta = new Dictionary<string, string>(file.Metadata);
        edit(meta);
        var tensors = file.Tensors.Select(t => new KeyValuePair<string, Tensor>(t.Name, file.Load(t.Name, Device.Cpu))).ToList();
        try
        {
            SafeTensorsWriter.Write(destination, tensors, meta);
        }
        finally
        {
            foreach (var t in tensors) t.Value.Dispose();
        }
    }

    /// <summary>A checkpoint's metadata as written before the training time was recorded: neither of its two fields.</summary>
    private static void WithoutTrainingTime(Dictionary<string, string> meta)
    {
        meta.Remove("training_seconds");
        meta.Remove("timed_from_iteration");
    }

    [Fact]
    public void CompareRejectsABaselineThatIsNotAVariant()
    {
        using var tmp = new TempDir();
        var (code, _, err) = Run("compare", "--variants", "faster-rcnn,g-rcn", "--baseline", "-pool/loc", "--out", tmp.Path);
        Assert.Equal(2, code);
        Assert.Contains("--baseline -pool/loc is not one of --variants", err);
        Assert.Empty(Directory.GetFileSystemEntries(tmp.Path));
    }

    [Fact]
    public void ShapesLargeIsADataSourceWithItsOwnDefaults()
    {
        var data = DataSource.Parse("shapes-large");
        Assert.Equal("shapes-large", data.ToString());
        Assert.True(data.IsShapes);
        var test = data.OpenTest(3);
        Assert.Equal((3, 320, 240), (test.Count, test.Load(0).Image.Width, test.Load(0).Image.Height));
        Assert.StartsWith("shapes-large-test-", test.Load(0).Id);
        Assert.Equal(5, data.OpenTrain(5).Count);
        var d = TrainSettings.DefaultsFor(data);
        Assert.Equal((240, 400), (d.Size, d.MaxSize));
        Assert.Equal([16f, 32, 64, 128, 256], d.Anchors);
        // the recipe of the main job: AdamW, cosine, group norm, eighth-width VGG16, 10000 iterations of 2 images
        var shapes = TrainSettings.DefaultsFor(DataSource.Parse("shapes"));
        Assert.Equal((shapes.Optimizer, shapes.Schedule, shapes.Width, shapes.Iterations, shapes.BatchSize, shapes.LearningRate, shapes.Variant),
            (d.Optimizer, d.Schedule, d.Width, d.Iterations, d.BatchSize, d.LearningRate, d.Variant));
        var c = d.BuildConfig(["x"]);
        Assert.Equal(14, c.ContextSize);
        Assert.Equal(32, c.RoiHeads.BatchSizePerImage);
        Assert.Equal(7, shapes.BuildConfig(["x"]).ContextSize);
    }

    [Theory]
    [InlineData("--iters", "0", "--iters")]
    [InlineData("--data", "imagenet", "--data")]
    [InlineData("--variant", "nope", "unknown variant")]
    [InlineData("--size", "8", "--size")]
    [InlineData("--backbone", "alexnet", "unknown backbone")]
    public void BadTrainArgumentsExitWithTwo(string option, string value, string message)
    {
        using var tmp = new TempDir();
        var (code, _, err) = Run("train", option, value, "--out", tmp.Path);
        Assert.Equal(2, code);
        Assert.Contains(message, err);
        Assert.False(File.Exists(Path.Combine(tmp.Path, "checkpoint.safetensors")));
    }

    [Fact]
    public void EvalNeedsACheckpointOrACocoPair()
    {
        var (code, _, err) = Run("eval", "--coco-gt", "x.json");
        Assert.Equal(2, code);
        Assert.Contains("--coco-results", err);
        (code, _, err) = Run("eval", "--checkpoint", "/nonexistent/checkpoint.safetensors");
        Assert.Equal(2, code);
        Assert.Contains("checkpoint.safetensors", err);
    }

    [Fact]
    public void ResumeWithoutACheckpointIsAnError()
    {
        using var tmp = new TempDir();
        var (code, _, err) = Run(["train", "--resume", "--out", tmp.Path, .. Tiny]);
        Assert.Equal(2, code);
        Assert.Contains("--resume", err);
    }

    [Theory]
    [InlineData("shapes", "Shapes", null)]
    [InlineData("voc:/data/VOC2007", "Voc", "/data/VOC2007")]
    [InlineData("coco:C:/coco", "Coco", "C:/coco")]
    public void DataSourcesParse(string text, string kind, string? path)
    {
        var d = DataSource.Parse(text);
        Assert.Equal(kind, d.Kind.ToString());
        Assert.Equal(path, d.Path);
        Assert.Equal(text, d.ToString());
    }

    [Fact]
    public void CocoFolderConventionNamesTheImageFolderAfterTheJson()
    {
        using var tmp = new TempDir();
        Directory.CreateDirectory(Path.Combine(tmp.Path, "annotations"));
        Directory.CreateDirectory(Path.Combine(tmp.Path, "val2017"));
        File.WriteAllText(Path.Combine(tmp.Path, "annotations", "instances_val2017.json"),
            """{"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}""");
        var test = (CocoDataset)DataSource.Parse("coco:" + tmp.Path).OpenTest(1);
        Assert.Equal(Path.Combine(tmp.Path, "val2017"), test.ImageDirectory);
        var e = Assert.Throws<FileNotFoundException>(() => DataSource.Parse("coco:" + tmp.Path).OpenTrain(1));
        Assert.Contains("instances_train", e.Message);
    }

    [Fact]
    public void VariantListsSplitOutsideParentheses()
    {
        Assert.Equal(["faster-rcnn", "conv(2,2,2)/loc", "pool(2,2,1)/loc", "g-rcn+roi-align", "-pool/cls"],
            CompareCommand.SplitVariants(["faster-rcnn, conv(2,2,2)/loc,pool(2,2,1)/loc", "g-rcn+roi-align,,-pool/cls"]));
        Assert.Equal("conv_2_2_2_loc", TrainOptions.Slug("conv(2,2,2)/loc"));
        Assert.Equal("-pool_loc", TrainOptions.Slug("-pool/loc"));
    }

    [Fact]
    public void MeanAndSampleStandardDeviationInPercent()
    {
        Assert.Equal("20.0 ± 10.0", CompareReport.Cell(CompareReport.MeanStd([0.1, 0.2, 0.3])));
        Assert.Equal("25.0", CompareReport.Cell(CompareReport.MeanStd([0.25, -1])));
        Assert.Equal("-", CompareReport.Cell(CompareReport.MeanStd([-1.0])));
    }
}
