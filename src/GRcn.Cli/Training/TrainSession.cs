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
/// <param name="TrainingTime">Time spent in the training loop, earlier runs of a resumed folder included (from iteration
/// <paramref name="TimedFromIteration"/> on).</param>
/// <param name="TotalTime">Time of this run, final evaluation and pictures included.</param>
/// <param name="TimedFromIteration">0, or the iteration of a resumed checkpoint that did not record the training time before it.</param>
internal sealed record TrainOutcome(int ExitCode, MetricsSummary? Metrics, double[]? ApByIou, IReadOnlyList<LossRecord> Losses,
    TimeSpan TrainingTime, TimeSpan TotalTime, int TimedFromIteration = 0);

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
        Commands.DeviceOption.SetThreads(device, s.Threads);
        string outDir = s.OutputDirectory;
        string checkpoint = Path.Combine(outDir, CheckpointFile), lossFile = Path.Combine(outDir, "losses.csv");
        // a trained checkpoint is never replaced by accident
        if (s.Resume && s.Overwrite) throw new ArgumentException("--resume continues the checkpoint in --out and --overwrite replaces it: give one", "--overwrite");
        if (s.Resume && !File.Exists(checkpoint)) throw new ArgumentException($"--resume: {checkpoint} does not exist", "--resume");
        if (!s.Resume && !s.Overwrite && File.Exists(checkpoint))
            throw new ArgumentException($"{checkpoint} exists: continue that run with --resume, replace it with --overwrite, or choose another --out", "--out");
        var train = s.Data.OpenTrain(s.TrainImages);
        var test = s.Data.OpenTest(s.TestImages);
        if (!test.ClassNames.SequenceEqual(train.ClassNames))
            throw new InvalidDataException($"{s.Data}: the evaluation classes ({string.Join(", ", test.ClassNames)}) differ from the training classes ({string.Join(", ", train.ClassNames)})");
        var trainCheck = DataCheck.Run(train, "training");
        DataCheck.Run(test, "evaluation");
        if (trainCheck.ClippedBoxes > 0)
            output.WriteLine($"note: {trainCheck.ClippedBoxes} training boxes reach outside their image and are clipped to it" +
                             (trainCheck.EmptiedBoxes > 0 ? $"; {trainCheck.EmptiedBoxes} of them lie wholly outside and are skipped" : ""));
        Directory.CreateDirectory(outDir);
        RemoveOrphanedTemporaries(outDir, output);
        var losses = new List<LossRecord>();

        Detector detector;
        if (s.Resume)
        {
            detector = Detector.Load(checkpoint, device);
            CheckResumeOptions(s, detector, checkpoint);
            detector.SetOptions(s.BuildTrainingOptions());
            losses.AddRange(ReadLosses(lossFile, error).Where(l => l.Iteration <= detector.Iteration));
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
        // losses.csv holds every step so far: rewritten once with the rows kept, then appended and flushed step by step
        using var lossLog = LossLog.Open(lossFile, losses);
        var c = detector.Config;
        string cpuThreads = device is CpuDevice cd ? $" ({cd.Threads} threads)" : "";
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"grcn train: {c.Variant} on {c.Backbone.ToString().ToLowerInvariant()} ×{c.Width}, {s.Data} ({train.Count} train / {test.Count} test images, shorter side {SizeText(c.Input.TrainingSizes(), c.Input.MinSize)}), " +
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
        int startIteration = detector.Iteration;
        var clock = Stopwatch.StartNew();
        TrainingResult result;
        try
        {
            result = ProgressDisplay.Run(interactive, output, s.LogEvery, detector.Iteration, s.Iterations, sink =>
            {
                trainer.Progress += p =>
                {
                    var record = new LossRecord(p.Iteration, p.Losses, p.LearningRate);
                    losses.Add(record);
                    lossLog.Append(record);
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
            error.WriteLine($"grcn train: {e.Message}");
            return new TrainOutcome(1, null, null, losses, clock.Elapsed, total.Elapsed);
        }
        // the Trainer's count, which goes on from the checkpoint a resumed run started from
        var trainingTime = detector.TrainingTime;
        int timedFrom = detector.TimedFromIteration;
        lossLog.Dispose();
        if (result.Cancelled)
        {
            output.WriteLine($"interrupted at iteration {result.Iterations}; checkpoint {result.Checkpoint}; continue with --resume --out {outDir}");
            return new TrainOutcome(130, null, null, losses, trainingTime, total.Elapsed, timedFrom);
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"trained to iteration {result.Iterations} in {ProgressDisplay.Clock(trainingTime)}{TimeNote(startIteration, timedFrom, clock.Elapsed)}; evaluating {test.Count} test images"));

        EvaluationReport report;
        try
        {
            report = Trainer.Evaluate(detector, test, cancellation: cancellation);
        }
        catch (OperationCanceledException)
        {
            output.WriteLine($"interrupted during the final evaluation; {checkpoint} (iteration {result.Iterations}) is complete: score it with grcn eval --checkpoint {checkpoint}");
            return new TrainOutcome(130, null, null, losses, trainingTime, total.Elapsed, timedFrom);
        }
        var metrics = MetricsSummary.From(report);
        output.WriteLine();
        output.Write(Metrics.SummaryTable([(c.Variant, metrics)]));
        output.WriteLine();
        output.Write(Metrics.PerClassTable(report.Coco, report.Voc));

        string metricsPath = Path.Combine(outDir, "metrics.json");
        var fields = RunFields(s, c, result.Iterations, detector.Seed);
        fields["training_seconds"] = Math.Round(trainingTime.TotalSeconds, 1);
        fields["timed_from_iteration"] = timedFrom;
        fields["evaluations"] = evaluations.Select(e => new Dictionary<string, object> { ["iteration"] = e.Iteration, ["AP"] = e.Metrics.AP, ["AP50"] = e.Metrics.AP50 }).ToArray();
        Metrics.WriteJson(metricsPath, metrics, report.Coco, report.Voc, fields);
        string gridPath = Path.Combine(outDir, "detections.png");
        WriteDetectionGrid(gridPath, test, report, c, result.Iterations, Math.Min(s.GridImages, test.Count), s.DrawThreshold);
        string lossPath = LossPlot($"{c.Variant} training loss", losses).Write(outDir, "loss");
        LearningRatePlot($"{c.Variant} learning-rate schedule", losses).Write(outDir, "lr");
        output.WriteLine();
        output.WriteLine($"wrote {metricsPath}, {gridPath}, {lossPath}, {lossFile}, {Path.Combine(outDir, CheckpointFile)}");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"AP50 {metrics.AP50:0.000}  AP {metrics.AP:0.000}  ({ProgressDisplay.Clock(total.Elapsed)} in all)"));
        return new TrainOutcome(0, metrics, Metrics.ApByIou(report.Coco), losses, trainingTime, total.Elapsed, timedFrom);
    }

    /// <summary>
    /// After "trained to iteration N in T": nothing for a run trained in one go; for a resumed one, how much of T this
    /// run took, or, when its checkpoint did not record the time before it, that T counts from that iteration only.
    /// </summary>
    internal static string TimeNote(int startIteration, int timedFrom, TimeSpan thisRun) =>
        startIteration == 0 ? ""
        : timedFrom == 0 ? $" ({ProgressDisplay.Clock(thisRun)} of it since --resume at iteration {startIteration})"
        : $" from iteration {timedFrom} on (the checkpoint resumed there did not record the training time before it)";

    /// <summary>
    /// The run's description in metrics.json: the detector's variant, backbone, width and input sizes from
    /// <paramref name="c"/>, the data and recipe from <paramref name="s"/>. grcn compare reuses a finished run only where
    /// these fields match what it would train.
    /// </summary>
    public static Dictionary<string, object?> RunFields(TrainSettings s, DetectorConfig c, int iterations, ulong seed) => new()
    {
        ["variant"] = c.Variant,
        ["backbone"] = c.Backbone.ToString(),
        ["width"] = c.Width,
        ["data"] = s.Data.ToString(),
        ["iterations"] = iterations,
        ["batch"] = s.BatchSize,
        ["learning_rate"] = s.LearningRate,
        ["optimizer"] = s.Optimizer,
        ["schedule"] = s.Schedule,
        ["group_norm"] = c.GroupNormGroups,
        ["anchors"] = c.Rpn.AnchorSizes,
        ["size"] = c.Input.MinSize,
        ["train_sizes"] = c.Input.TrainingSizes(),
        ["train_images"] = s.TrainImages,
        ["test_images"] = s.TestImages,
        ["seed"] = seed,
    };

    /// <summary>"160" or, with separate training sizes, "128 in training, 160 at test" (the train and compare headers).</summary>
    internal static string SizeText(IReadOnlyList<int> trainingSizes, int testSize) => trainingSizes is [var t] && t == testSize
        ? $"{testSize}"
        : $"{string.Join('/', trainingSizes)} in training, {testSize} at test";

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

    /// <summary>
    /// Reads losses.csv (empty when missing). A malformed last line (a write cut short by a kill) is left out, with a
    /// note on <paramref name="warnings"/>; a malformed line before it is an error naming the file and line.
    /// </summary>
    public static List<LossRecord> ReadLosses(string path, TextWriter? warnings = null)
    {
        var list = new List<LossRecord>();
        if (!File.Exists(path)) return list;
        var lines = File.ReadAllLines(path);
        var inv = CultureInfo.InvariantCulture;
        for (int n = 1; n < lines.Length; n++)
        {
            string line = lines[n];
            if (line.Length == 0) continue;
            var f = line.Split(',');
            if (f.Length != 7 || !int.TryParse(f[0], inv, out int it) || !double.TryParse(f[1], inv, out double lr)
                || !double.TryParse(f[2], inv, out double a) || !double.TryParse(f[3], inv, out double b)
                || !double.TryParse(f[4], inv, out double cl) || !double.TryParse(f[5], inv, out double bx) || !double.TryParse(f[6], inv, out _))
            {
                if (n == lines.Length - 1)
                {
                    warnings?.WriteLine($"note: {path}: the last line ({n + 1}) is incomplete, left out");
                    break;
                }
                throw new InvalidDataException($"{path}: line {n + 1} is not '{LossLog.Header}' (fix or delete the file to continue)");
            }
            list.Add(new LossRecord(it, new LossTerms(a, b, cl, bx), lr));
        }
        return list;
    }

    /// <summary>
    /// Removes checkpoint temporaries (.NAME.PID.GUID.tmp, SafeTensorsWriter's) left in <paramref name="dir"/> by a
    /// process that was killed while writing; those of a process still running are left alone.
    /// </summary>
    internal static void RemoveOrphanedTemporaries(string dir, TextWriter output)
    {
        foreach (var file in Directory.EnumerateFiles(dir, ".*.tmp"))
        {
            // "", name…, pid, guid, "tmp"
            var parts = Path.GetFileName(file).Split('.');
            if (parts.Length < 5 || !int.TryParse(parts[^3], CultureInfo.InvariantCulture, out int pid) || parts[^2].Length != 32) continue;
            if (pid != Environment.ProcessId && IsRunning(pid)) continue;
            File.Delete(file);
            output.WriteLine($"removed {file}, left by an interrupted checkpoint write");
        }
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>
    /// With --resume, every option given on the command line that fixes the network (or the seed) must agree with the
    /// checkpoint; the ones left out take the checkpoint's values.
    /// </summary>
    /// <exception cref="ArgumentException">An option differs: its value and the checkpoint's.</exception>
    private static void CheckResumeOptions(TrainSettings s, Detector detector, string checkpoint)
    {
        var c = detector.Config;
        var inv = CultureInfo.InvariantCulture;
        void Same(string option, string given, string saved)
        {
            if (s.Given.Contains(option) && given != saved)
                throw new ArgumentException($"--resume: {option} {given} differs from the checkpoint's {saved} ({checkpoint}); leave it out or train into another --out", option);
        }
        static string Join<T>(IEnumerable<T> values) => string.Join(' ', values.Select(v => string.Format(CultureInfo.InvariantCulture, "{0}", v)));
        Same("--variant", s.Variant, c.Variant);
        Same("--backbone", s.Backbone.ToString().ToLowerInvariant(), c.Backbone.ToString().ToLowerInvariant());
        Same("--width", s.Width.ToString(inv), c.Width.ToString(inv));
        Same("--group-norm", s.GroupNormGroups.ToString(inv), c.GroupNormGroups.ToString(inv));
        Same("--size", s.Size.ToString(inv), c.Input.MinSize.ToString(inv));
        Same("--train-sizes", Join(s.TrainSizes.Length > 0 ? s.TrainSizes : [s.Size]), Join(c.Input.TrainingSizes()));
        Same("--anchors", Join(s.Anchors), Join(c.Rpn.AnchorSizes));
        Same("--seed", s.Seed.ToString(inv), detector.Seed.ToString(inv));
        if (s.Given.Contains("--weights"))
            throw new ArgumentException("--resume: --weights starts a new run; the checkpoint already holds the weights", "--weights");
    }

    /// <summary>losses.csv as training goes: the rows kept from earlier runs written once (atomically), then one line per step, flushed.</summary>
    private sealed class LossLog : IDisposable
    {
        public const string Header = "iteration,lr,rpn_objectness,rpn_box,classifier,box_regression,total";
        private readonly StreamWriter _writer;

        private LossLog(StreamWriter writer) => _writer = writer;

        /// <summary>Writes <paramref name="path"/> with <paramref name="kept"/> and opens it for appending.</summary>
        public static LossLog Open(string path, IReadOnlyList<LossRecord> kept)
        {
            string temp = path + ".tmp";
            using (var w = new StreamWriter(temp))
            {
                w.WriteLine(Header);
                foreach (var l in kept) w.WriteLine(Line(l));
            }
            File.Move(temp, path, overwrite: true);
            return new LossLog(new StreamWriter(path, append: true) { AutoFlush = true });
        }

        /// <summary>Appends one step (flushed: a kill loses at most the line being written).</summary>
        public void Append(LossRecord l) => _writer.WriteLine(Line(l));

        private static string Line(LossRecord l)
        {
            var t = l.Losses;
            return string.Create(CultureInfo.InvariantCulture,
                $"{l.Iteration},{l.LearningRate:G6},{t.RpnObjectness:G6},{t.RpnBox:G6},{t.Classifier:G6},{t.BoxRegression:G6},{t.Total:G6}");
        }

        public void Dispose() => _writer.Dispose();
    }
}
