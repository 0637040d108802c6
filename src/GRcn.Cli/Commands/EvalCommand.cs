// grcn eval: scores a detector. With --checkpoint it detects the evaluation split of --data
// (at the checkpoint's input size, or at --size) and prints the metrics table (COCO AP, AP50,
// AP70, AP75, APs, APm, APl and VOC AP50, then per class); with --coco-gt and --coco-results it scores any detector's COCO results file
// against a COCO ground-truth file, no model involved (pycocotools semantics). --json writes
// the metrics (as grcn train's metrics.json).
using System.CommandLine;
using GRcn.Cli.Reporting;
using GRcn.Cli.Training;
using GRcn.Detection.Evaluation;
using GRcn.Detection.Model;
using GRcn.Detection.Training;
using GRcn.Kernels;

namespace GRcn.Cli.Commands;

internal static class EvalCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string?>("--checkpoint") { Description = "Detector checkpoint (a grcn train checkpoint.safetensors)" };
        var data = new Option<string>("--data") { Description = "With --checkpoint: the data whose evaluation split is scored: " + DataSource.Help, DefaultValueFactory = _ => "shapes" };
        var testImages = new Option<int>("--test-images") { Description = "Synthetic test images", DefaultValueFactory = _ => 500 };
        var limit = new Option<int>("--limit") { Description = "Score only the first N images (0: all)", DefaultValueFactory = _ => 0 };
        var cocoGt = new Option<string?>("--coco-gt") { Description = "COCO ground-truth JSON (instances file); with --coco-results, no model is needed" };
        var cocoResults = new Option<string?>("--coco-results") { Description = "COCO results JSON ([{image_id, category_id, bbox: [x, y, w, h], score}, …])" };
        var json = new Option<string?>("--json") { Description = "Also write the metrics to this JSON file" };
        var device = DeviceOption.Create();
        var threads = new Option<int?>("--threads") { Description = "CPU threads (default: all logical cores)" };
        var size = new Option<int?>("--size") { Description = "With --checkpoint: detect at this shorter side, the longer at most size·5/3 (default: the checkpoint's)" };
        var command = new Command("eval", "Score a checkpoint on a dataset's evaluation split, or a COCO results file against COCO ground truth")
        {
            checkpoint, data, testImages, limit, cocoGt, cocoResults, json, device, threads, size,
        };
        command.SetAction(p =>
        {
            var o = p.InvocationConfiguration.Output;
            var e = p.InvocationConfiguration.Error;
            string? ckpt = p.GetValue(checkpoint), gt = p.GetValue(cocoGt), res = p.GetValue(cocoResults);
            try
            {
                if (ckpt is not null && (gt is not null || res is not null))
                    throw new ArgumentException("give either --checkpoint (with --data) or --coco-gt and --coco-results, not both");
                if (ckpt is null && (gt is null || res is null))
                    throw new ArgumentException("give --checkpoint FILE (with --data), or both --coco-gt FILE and --coco-results FILE");
                if (p.GetValue(limit) < 0) throw new ArgumentException("--limit must be ≥ 0");
                if (p.GetValue(testImages) is < 1 or > TrainSettings.MaxSyntheticImages)
                    throw new ArgumentException($"--test-images must be in [1, {TrainSettings.MaxSyntheticImages}]; got {p.GetValue(testImages)}");
                if (p.GetValue(size) is int sz && sz is < 1 or > TrainSettings.MaxSide) throw new ArgumentException($"--size must be in [1, {TrainSettings.MaxSide}]; got {sz}");
                if (p.GetValue(size) is not null && ckpt is null) throw new ArgumentException("--size applies to --checkpoint");
                return ckpt is not null
                    ? EvaluateCheckpoint(ckpt, DataSource.Parse(p.GetValue(data)!), p.GetValue(testImages), p.GetValue(limit),
                        p.GetValue(device)!, p.GetValue(threads), p.GetValue(size), p.GetValue(json), o)
                    : EvaluateCocoFiles(gt!, res!, p.GetValue(json), o);
            }
            catch (Exception ex) when (ex is ArgumentException or IOException or InvalidDataException or NotSupportedException
                                           or PlatformNotSupportedException or UnauthorizedAccessException)
            {
                e.WriteLine($"grcn eval: {GrcnApp.Message(ex)}");
                return 2;
            }
        });
        return command;
    }

    private static int EvaluateCheckpoint(string path, DataSource data, int testImages, int limit, string deviceName, int? threads, int? size, string? json, TextWriter o)
    {
        var device = DeviceOption.Open(deviceName);
        DeviceOption.SetThreads(device, threads);
        using var detector = Detector.Load(path, device);
        if (size is int sz) detector.SetInputSize(sz, TrainSettings.LongerSideFor(sz));
        var test = data.OpenTest(testImages);
        if (!test.ClassNames.SequenceEqual(detector.Config.ClassNames))
            throw new ArgumentException($"{path} detects {string.Join(", ", detector.Config.ClassNames)}; {data} has {string.Join(", ", test.ClassNames)}");
        int count = limit > 0 ? Math.Min(limit, test.Count) : test.Count;
        o.WriteLine($"{detector.Config.Variant} (iteration {detector.Iteration}) on {count} images of {data}, shorter side {detector.Config.Input.MinSize}");
        var report = Trainer.Evaluate(detector, test, count);
        var m = MetricsSummary.From(report);
        o.WriteLine();
        o.Write(Metrics.SummaryTable([(detector.Config.Variant, m)]));
        o.WriteLine();
        o.Write(Metrics.PerClassTable(report.Coco, report.Voc));
        if (json is not null)
        {
            Metrics.WriteJson(json, m, report.Coco, report.Voc, new Dictionary<string, object?>
            {
                ["checkpoint"] = path,
                ["variant"] = detector.Config.Variant,
                ["iterations"] = detector.Iteration,
                ["data"] = data.ToString(),
                ["size"] = detector.Config.Input.MinSize,
            });
            o.WriteLine($"wrote {json}");
        }
        return 0;
    }

    private static int EvaluateCocoFiles(string gt, string results, string? json, TextWriter o)
    {
        var coco = CocoJson.EvaluateFiles(gt, results);
        var m = MetricsSummary.From(coco, null);
        o.WriteLine($"{results} against {gt}: {coco.ImageCount} images");
        if (coco.DroppedDetections > 0)
            o.WriteLine($"note: {coco.DroppedDetections} results name categories the ground truth does not list; they were dropped (as pycocotools does)");
        o.WriteLine();
        o.Write(Metrics.SummaryTable([("results", m)]));
        o.WriteLine();
        o.Write(Metrics.PerClassTable(coco, null));
        if (json is not null)
        {
            Metrics.WriteJson(json, m, coco, null, new Dictionary<string, object?>
            {
                ["ground_truth"] = gt,
                ["results"] = results,
                ["dropped_results"] = coco.DroppedDetections,
            });
            o.WriteLine($"wrote {json}");
        }
        return 0;
    }
}
