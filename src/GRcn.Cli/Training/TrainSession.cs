// One grcn train run from resolved settings: opens the data, builds (or resumes) the detector,
// runs the Trainer with live progress and periodic evaluations on a test subset, then
// evaluates the whole test set and writes the run's folder: checkpoint.safetensors (by the
// Trainer), losses.csv, metrics.json, detections.png (a grid of test images with predicted and
// true boxes), loss.png/.svg (the loss terms, raw and smoothed) and lr.png/.svg (the learning-rate
// schedule). grcn compare runs this once per variant
// and seed.
using System.Diagnostics;
using System.Globalization;
using GRcn.Cli.Drawing;
using GRcn.Cli.Reporting;
using GRcn.Detection.Data;
using GRcn.Detection.Evaluation;
using GRcn.Detection.Model;
using GRcn.Detection.Training;
using GRcn.Detection.Variants;
using GRcn.Kernels;
using GRcn.Kernels.Serialization;

namespace GRcn.Cli.Training;

/// <summary>One step's losses.</summary>
internal readonly record struct LossRecord(int Iteration, LossTerms Losses, double LearningRate);

/// <summary>What a run produced.</summary>
/// <param name="ExitCode">0 done, 1 diverged, 2 bad input, 130 interrupted.</param>
/// <param name="Metrics">Final metrics (null unless the run finished).</param>
/// <param name="ApByIou">AP at each COCO IoU threshold (null unless finished).</param>
/// <param name="Losses">Every step's losses, earlier runs of a resumed folder included.</param>
/// <param name="TrainingTime">Time spent in the training loop.</param>
/// <param name="TotalTime">Time of the whole run, final evaluation and pictures included.</param>
internal sealed record TrainOutcome(int ExitCode, MetricsSummary? Metrics, double[]? ApByIou, IReadOnlyList<LossRecord> Losses,
    TimeSpan TrainingTime, TimeSpan TotalTime);

internal static class TrainSession
{
    public const string CheckpointFile = "checkpoint.safetensors";

    /// <summary>Runs training as configured; messages go to <paramref name="output"/>, errors to <paramref name="error"/>.</summary>
    /// <exception cref="ArgumentException">Invalid settings.</exception>
    public static TrainOutcome Run(TrainSettings s, TextWriter output, TextWriter error, bool interactive, CancellationToken cancellation)
    {
        var total = Stopwatch.StartNew();
        s.Validate();
        var device = Commands.DeviceOption.Open(s.Device);
        if (s.Threads is int t && device is CpuDevice cpu) cpu.Threads = t;
        var train = s.Data.OpenTrain(s.TrainImages);
        var test = s.Data.OpenTest(s.TestImages);
        string outDir = s.OutputDirectory;
        Directory.CreateDirectory(outDir);
        string checkpoint = Path.Combine(outDir, CheckpointFile), lossFile = Path.Combine(outDir, "losses.csv");
        var losses = new List<LossRecord>();

        Detector detector;
        if (s.Resume)
        {
            if (!File.Exists(checkpoint)) throw new ArgumentException($"--resume: {checkpoint} does not exist", "--resume");
            detector = Detector.Load(checkpoint, device);
            detector.SetOptions(s.BuildTrainingOptions());
            losses.AddRange(ReadLosses(lossFile).Where(l => l.Iteration <= detector.Iteration));
            output.WriteLine($"resuming {checkpoint} at iteration {detector.Iteration}");
        }
        else
        {
            // the recipe He-initialises the fc head when training from scratch (no --weights)
            detector = s.ToRecipe().CreateDetector(train.ClassNames, device, s.Seed);
            if (s.Weights is not null)
            {
                // a whole torchvision FasterRCNN (it has RPN weights) or a backbone alone
                if (SafeTensorsFile.Read(s.Weights).Contains("rpn.head.cls_logits.weight"))
                {
                    var r = detector.LoadTorchvision(s.Weights);
                    output.WriteLine($"loaded {r.Loaded.Count} torchvision FasterRCNN tensors from {s.Weights}");
                }
                else
                {
                    int n = BackboneWeights.Load(detector, s.Weights);
                    output.WriteLine($"loaded {n} backbone tensors from {s.Weights}");
                }
            }
        }
        using var _ = detector;
        var c = detector.Config;
        string cpuThreads = device is CpuDevice cd ? $" ({cd.Threads} threads)" : "";
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"grcn train: {c.Variant} on {c.Backbone.ToString().ToLowerInvariant()} ×{c.Width}, {s.Data} ({train.Count} train / {test.Count} test images, shorter side {SizeText(c.Input)}), " +
            $"{s.Iterations} iterations × {s.BatchSize} images, lr {s.LearningRate}, seed {detector.Seed}, {device.Name}{cpuThreads} → {outDir}"));

        var trainer = new Trainer(detector, train, null, new TrainerOptions
        {
            Iterations = s.Iterations,
            BatchSize = s.BatchSize,
            CheckpointEvery = s.CheckpointEvery,
            OutputDirectory = outDir,
            Seed = detector.Seed,
            Workers = 1,
        });
        var evaluations = new List<(int Iteration, MetricsSummary Metrics)>();
        var clock = Stopwatch.StartNew();
        TrainingResult result;
        try
        {
            result = ProgressDisplay.Run(interactive, output, s.LogEvery, detector.Iteration, s.Iterations, sink =>
            {
                trainer.Progress += p =>
                {
                    losses.Add(new LossRecord(p.Iteration, p.Losses, p.LearningRate));
                    sink.Step(p);
                    if (s.EvaluateEvery > 0 && p.Iteration % s.EvaluateEvery == 0 && p.Iteration < p.Total && !cancellation.IsCancellationRequested)
                    {
                        var m = MetricsSummary.From(Trainer.Evaluate(detector, test, s.EvaluationLimit));
                        evaluations.Add((p.Iteration, m));
                        sink.Evaluated(p.Iteration, m.AP, m.AP50);
                    }
                };
                return trainer.Run(cancellation);
            });
        }
        catch (TrainingDivergedException e)
        {
            WriteLosses(lossFile, losses);
            error.WriteLine($"grcn train: {e.Message}");
            return new TrainOutcome(1, null, null, losses, clock.Elapsed, total.Elapsed);
        }
        var trainingTime = clock.Elapsed;
        WriteLosses(lossFile, losses);
        if (result.Cancelled)
        {
            output.WriteLine($"interrupted at iteration {result.Iterations}; checkpoint {result.Checkpoint}; continue with --resume --out {outDir}");
            return new TrainOutcome(130, null, null, losses, trainingTime, total.Elapsed);
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"trained to iteration {result.Iterations} in {ProgressDisplay.Clock(trainingTime)}; evaluating {test.Count} test images"));

        var report = Trainer.Evaluate(detector, test);
        var metrics = MetricsSummary.From(report);
        output.WriteLine();
        output.Write(Metrics.SummaryTable([(c.Variant, metrics)]));
        output.WriteLine();
        output.Write(Metrics.PerClassTable(report.Coco, report.Voc));

        string metricsPath = Path.Combine(outDir, "metrics.json");
        Metrics.WriteJson(metricsPath, metrics, report.Coco, report.Voc, new Dictionary<string, object?>
        {
            ["variant"] = c.Variant,
            ["backbone"] = c.Backbone.ToString(),
            ["width"] = c.Width,
            ["data"] = s.Data.ToString(),
            ["iterations"] = result.Iterations,
            ["batch"] = s.BatchSize,
            ["learning_rate"] = s.LearningRate,
            ["size"] = c.Input.MinSize,
            ["train_sizes"] = c.Input.TrainingSizes(),
            ["seed"] = detector.Seed,
            ["training_seconds"] = Math.Round(trainingTime.TotalSeconds, 1),
            ["evaluations"] = evaluations.Select(e => new Dictionary<string, object> { ["iteration"] = e.Iteration, ["AP"] = e.Metrics.AP, ["AP50"] = e.Metrics.AP50 }).ToArray(),
        });
        string gridPath = Path.Combine(outDir, "detections.png");
        WriteDetectionGrid(gridPath, test, report, c, result.Iterations, Math.Min(s.GridImages, test.Count), s.DrawThreshold);
        string lossPath = LossPlot($"{c.Variant} training loss", losses).Write(outDir, "loss");
        LearningRatePlot($"{c.Variant} learning-rate schedule", losses).Write(outDir, "lr");
        output.WriteLine();
        output.WriteLine($"wrote {metricsPath}, {gridPath}, {lossPath}, {lossFile}, {Path.Combine(outDir, CheckpointFile)}");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"AP50 {metrics.AP50:0.000}  AP {metrics.AP:0.000}  ({ProgressDisplay.Clock(total.Elapsed)} in all)"));
        return new TrainOutcome(0, metrics, Metrics.ApByIou(report.Coco), losses, trainingTime, total.Elapsed);
    }

    /// <summary>"160" or, with separate training sizes, "128 in training, 160 at test".</summary>
    private static string SizeText(InputSettings input) => input.TrainingSizes() is [var t] && t == input.MinSize
        ? $"{input.MinSize}"
        : $"{string.Join('/', input.TrainingSizes())} in training, {input.MinSize} at test";

    /// <summary>The first <paramref name="count"/> test images with their detections and ground truth, 4 to a row.</summary>
    private static void WriteDetectionGrid(string path, IDetectionDataset test, EvaluationReport report, DetectorConfig c, int iteration, int count, float threshold)
    {
        var cells = new List<RgbImage>();
        for (int i = 0; i < count && i < report.Detections.Count; i++)
        {
            var sample = test.Load(i);
            cells.Add(DetectionPainter.Draw(sample.Image, sample.Objects, report.Detections[i], c.ClassNames, threshold, longSide: 256));
        }
        if (cells.Count == 0) return;
        string caption = string.Create(CultureInfo.InvariantCulture,
            $"{c.Variant} after {iteration} iterations. dashed: ground truth; solid: detections with score >= {threshold:0.00}");
        File.WriteAllBytes(path, ImageFile.EncodePng(DetectionPainter.Grid(cells, 4, caption)));
    }

    private static readonly (string Name, Func<LossTerms, double> Term)[] PlottedTerms =
    [
        ("total (sum)", l => l.Total), ("rpn objectness", l => l.RpnObjectness), ("rpn box", l => l.RpnBox),
        ("classifier", l => l.Classifier), ("box regression", l => l.BoxRegression),
    ];

    /// <summary>The sum and the four loss terms against the iteration, one panel each (so the small RPN terms keep their own
    /// y range), each the raw per-iteration value (faint) under a moving average over about 2 % of the run; PNG and SVG.</summary>
    public static PlotImage LossPlot(string title, IReadOnlyList<LossRecord> losses) =>
        LossPlot(title, [(string.Empty, [losses])]);

    /// <summary>
    /// The loss panels of <see cref="LossPlot(string, IReadOnlyList{LossRecord})"/> for several groups of runs (grcn compare:
    /// one group per variant, one run per seed): per group, in its colour, the raw value and the moving average, each the
    /// mean over the group's runs per iteration (up to the shortest run), the moving average named in the legend. One
    /// unnamed group is drawn as a single run: each term in its own colour, "raw" and "moving average" in the legend.
    /// </summary>
    public static PlotImage LossPlot(string title, IReadOnlyList<(string Name, IReadOnlyList<IReadOnlyList<LossRecord>> Runs)> groups)
    {
        bool single = groups is [{ Name: "" }];
        var panels = new List<ScottPlot.Plot>();
        for (int k = 0; k < PlottedTerms.Length; k++)
        {
            var term = PlottedTerms[k].Term;
            var series = new List<PlotSeries>();
            for (int g = 0; g < groups.Count; g++)
            {
                var runs = groups[g].Runs.Where(r => r.Count > 0).ToArray();
                if (runs.Length == 0) continue;
                var color = DetectionPainter.Palette(single ? k : g);
                series.Add(new PlotSeries(single ? "raw" : "", MeanOverRuns(runs, r => r.Select(l => ((double)l.Iteration, term(l.Losses))).ToList()), color, Faint: true));
                series.Add(new PlotSeries(single ? "moving average" : groups[g].Name, MeanOverRuns(runs, r => Smooth(r, term)), color));
            }
            string name = PlottedTerms[k].Name;
            panels.Add(Plots.Build(k == 0 ? $"{title}: {name}" : name, "iteration", "loss", series));
        }
        return Plots.Stacked(panels);
    }

    /// <summary>A curve per run, averaged point by point over the runs (up to the shortest; x from the first run).</summary>
    private static List<(double X, double Y)> MeanOverRuns(IReadOnlyList<IReadOnlyList<LossRecord>> runs, Func<IReadOnlyList<LossRecord>, List<(double X, double Y)>> curve)
    {
        var perRun = runs.Select(curve).ToArray();
        int n = perRun.Min(c => c.Count);
        return Enumerable.Range(0, n).Select(j => (perRun[0][j].X, perRun.Average(c => c[j].Y))).ToList();
    }

    /// <summary>The learning rate against the iteration; PNG and SVG.</summary>
    public static PlotImage LearningRatePlot(string title, IReadOnlyList<LossRecord> losses) =>
        Plots.Image(title, "iteration", "learning rate",
            [new PlotSeries("learning rate", losses.Select(l => ((double)l.Iteration, l.LearningRate)).ToList(), DetectionPainter.Palette(0))]);

    /// <summary>Moving average (window about 2 % of the points) of one term, as (iteration, value) points.</summary>
    public static List<(double X, double Y)> Smooth(IReadOnlyList<LossRecord> losses, Func<LossTerms, double> term)
    {
        int window = Math.Clamp(losses.Count / 50, 1, 200);
        var points = new List<(double, double)>(losses.Count);
        double sum = 0;
        for (int i = 0; i < losses.Count; i++)
        {
            sum += term(losses[i].Losses);
            if (i >= window) sum -= term(losses[i - window].Losses);
            int n = Math.Min(i + 1, window);
            points.Add((losses[i].Iteration, sum / n));
        }
        return points;
    }

    private static void WriteLosses(string path, IReadOnlyList<LossRecord> losses)
    {
        using var w = new StreamWriter(path);
        w.WriteLine("iteration,lr,rpn_objectness,rpn_box,classifier,box_regression,total");
        foreach (var l in losses)
        {
            var t = l.Losses;
            w.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{l.Iteration},{l.LearningRate:G6},{t.RpnObjectness:G6},{t.RpnBox:G6},{t.Classifier:G6},{t.BoxRegression:G6},{t.Total:G6}"));
        }
    }

    /// <summary>Reads losses.csv (empty when missing); a malformed line is an error naming the file.</summary>
    public static List<LossRecord> ReadLosses(string path)
    {
        var list = new List<LossRecord>();
        if (!File.Exists(path)) return list;
        int lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            if (lineNo++ == 0 || line.Length == 0) continue;
            var f = line.Split(',');
            var inv = CultureInfo.InvariantCulture;
            if (f.Length != 7 || !int.TryParse(f[0], inv, out int it) || !double.TryParse(f[1], inv, out double lr)
                || !double.TryParse(f[2], inv, out double a) || !double.TryParse(f[3], inv, out double b)
                || !double.TryParse(f[4], inv, out double cl) || !double.TryParse(f[5], inv, out double bx))
                throw new InvalidDataException($"{path}: line {lineNo} is not 'iteration,lr,rpn_objectness,rpn_box,classifier,box_regression,total'");
            list.Add(new LossRecord(it, new LossTerms(a, b, cl, bx), lr));
        }
        return list;
    }
}
