// The training loop: batches from a DetectionDataLoader in a seed-fixed order (iteration t
// always sees the same images, so a resumed run continues exactly), one Detector.TrainStep
// each, progress reports, periodic evaluation and atomic checkpoints (which carry the training
// time so far, so a resumed run goes on counting it), a checkpoint on
// cancellation (Ctrl-C), and a clear stop on a non-finite loss that leaves the last good
// checkpoint in place.
using System.Diagnostics;
using GRcn.Detection.Data;
using GRcn.Detection.Evaluation;
using GRcn.Detection.Model;

namespace GRcn.Detection.Training;

/// <summary>Loop settings of <see cref="Trainer"/>.</summary>
public sealed record TrainerOptions
{
    /// <summary>Total iterations (a resumed detector continues from its own iteration).</summary>
    public int Iterations { get; init; } = 1000;

    /// <summary>Images per step.</summary>
    public int BatchSize { get; init; } = 2;

    /// <summary>Evaluate on the test set every this many iterations (0: only at the end).</summary>
    public int EvaluateEvery { get; init; }

    /// <summary>Write the checkpoint every this many iterations (0: only at the end).</summary>
    public int CheckpointEvery { get; init; } = 500;

    /// <summary>Directory of checkpoint.safetensors and the loss log (null: no files).</summary>
    public string? OutputDirectory { get; init; }

    /// <summary>Probability of a horizontal flip per training image.</summary>
    public double FlipProbability { get; init; } = 0.5;

    /// <summary>Background loader threads.</summary>
    public int Workers { get; init; } = 2;

    /// <summary>Seed of the data order and flips.</summary>
    public ulong Seed { get; init; }

    /// <summary>Images evaluated at most per evaluation (0: the whole test set).</summary>
    public int EvaluationLimit { get; init; }
}

/// <summary>One training step's report.</summary>
/// <param name="Iteration">Iterations done (1-based count after the step).</param>
/// <param name="Total">Configured total.</param>
/// <param name="Losses">The step's loss terms.</param>
/// <param name="ImagesPerSecond">Throughput over the last steps.</param>
/// <param name="Eta">Estimated time to the end.</param>
/// <param name="LearningRate">Learning rate used.</param>
public readonly record struct TrainProgress(int Iteration, int Total, LossTerms Losses, double ImagesPerSecond, TimeSpan Eta, double LearningRate);

/// <summary>Metrics of a detector on a dataset.</summary>
/// <param name="Coco">COCO-style metrics (pycocotools semantics).</param>
/// <param name="Voc">VOC AP at IoU 0.5 (area under the curve and 11-point).</param>
/// <param name="Images">Images evaluated.</param>
/// <param name="Detections">Detections per evaluated image (original pixels), in dataset order.</param>
public sealed record EvaluationReport(CocoEvaluationResult Coco, VocEvaluationResult Voc, int Images, IReadOnlyList<IReadOnlyList<DetectedObject>> Detections);

/// <summary>Outcome of <see cref="Trainer.Run"/>.</summary>
/// <param name="Iterations">Iterations the detector has done.</param>
/// <param name="Cancelled">Whether the run stopped early on cancellation (a checkpoint was written).</param>
/// <param name="History">Per-step losses of this run.</param>
/// <param name="Evaluations">Evaluations made, by iteration.</param>
/// <param name="Checkpoint">Path of the last checkpoint written, if any.</param>
public sealed record TrainingResult(int Iterations, bool Cancelled, IReadOnlyList<(int Iteration, LossTerms Losses)> History,
    IReadOnlyList<(int Iteration, EvaluationReport Report)> Evaluations, string? Checkpoint);

/// <summary>Training diverged (non-finite loss); the last good checkpoint, if any, is untouched.</summary>
public sealed class TrainingDivergedException(string message, NonFiniteLossException inner) : Exception(message, inner);

/// <summary>Trains a <see cref="Detector"/> on a dataset.</summary>
public sealed class Trainer
{
    private readonly Detector _detector;
    private readonly IDetectionDataset _train;
    private readonly IDetectionDataset? _test;

    /// <summary>Creates a trainer; <paramref name="test"/> (optional) is evaluated periodically and at the end.</summary>
    public Trainer(Detector detector, IDetectionDataset train, IDetectionDataset? test, TrainerOptions options)
    {
        _detector = detector ?? throw new ArgumentNullException(nameof(detector));
        _train = train ?? throw new ArgumentNullException(nameof(train));
        _test = test;
        Options = options ?? throw new ArgumentNullException(nameof(options));
        if (options.BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(options), options.BatchSize, "BatchSize must be at least 1");
        if (options.Iterations < 0) throw new ArgumentOutOfRangeException(nameof(options), options.Iterations, "Iterations must be non-negative");
        if (train.Count < options.BatchSize)
            throw new ArgumentException($"the training set has {train.Count} images, fewer than one batch of {options.BatchSize}", nameof(train));
        if (!train.ClassNames.SequenceEqual(detector.Config.ClassNames))
            throw new ArgumentException($"the dataset's classes ({string.Join(", ", train.ClassNames)}) differ from the detector's ({string.Join(", ", detector.Config.ClassNames)})", nameof(train));
    }

    /// <summary>Settings.</summary>
    public TrainerOptions Options { get; }

    /// <summary>Called after every step.</summary>
    public event Action<TrainProgress>? Progress;

    /// <summary>Called after every evaluation.</summary>
    public event Action<int, EvaluationReport>? Evaluated;

    /// <summary>Path of the checkpoint file in the output directory.</summary>
    public string? CheckpointPath => Options.OutputDirectory is null ? null : Path.Combine(Options.OutputDirectory, "checkpoint.safetensors");

    /// <summary>Runs until <see cref="TrainerOptions.Iterations"/> or cancellation.</summary>
    /// <exception cref="TrainingDivergedException">A loss became NaN or infinite.</exception>
    public TrainingResult Run(CancellationToken cancellation = default)
    {
        var o = Options;
        var input = _detector.Config.Input;
        var loaderOptions = new DataLoaderOptions
        {
            BatchSize = o.BatchSize,
            Shuffle = true,
            Seed = o.Seed,
            Resize = new ResizeSpec(input.MinSize, input.MaxSize),
            MinSizeChoices = input.TrainMinSizes,
            FlipProbability = o.FlipProbability,
            Normalization = Normalization(_detector),
            Workers = o.Workers,
            DropLast = true,
        };
        using var loader = new DetectionDataLoader(_train, loaderOptions);
        int perEpoch = loader.BatchCount;
        var history = new List<(int, LossTerms)>();
        var evaluations = new List<(int, EvaluationReport)>();
        string? checkpoint = null;
        if (o.OutputDirectory is not null) Directory.CreateDirectory(o.OutputDirectory);
        var window = new Queue<(long Ticks, int Images)>();
        var clock = Stopwatch.StartNew();
        // the detector's training time goes on from what its checkpoint recorded
        var timeBefore = _detector.TrainingTime;
        string? Save()
        {
            _detector.TrainingTime = timeBefore + clock.Elapsed;
            return SaveCheckpoint();
        }

        while (_detector.Iteration < o.Iterations)
        {
            int epoch = _detector.Iteration / perEpoch;
            int skip = _detector.Iteration % perEpoch;
            foreach (var batch in loader.Epoch(epoch))
            {
                using (batch)
                {
                    if (skip > 0)
                    {
                        skip--;
                        continue;
                    }
                    if (cancellation.IsCancellationRequested)
                    {
                        checkpoint = Save() ?? checkpoint;
                        return new TrainingResult(_detector.Iteration, true, history, evaluations, checkpoint);
                    }
                    var prepared = batch.Select(PreparedImage.FromSample).ToArray();
                    double lr = _detector.Options.LearningRateAt(_detector.Iteration);
                    LossTerms terms;
                    try
                    {
                        terms = _detector.TrainStep(prepared);
                    }
                    catch (NonFiniteLossException e)
                    {
                        string where = checkpoint is not null ? $"the last good checkpoint is {checkpoint} (iteration {LastSavedIteration})"
                            : "no checkpoint was written yet";
                        throw new TrainingDivergedException($"training stopped: {e.Message}; {where}", e);
                    }
                    history.Add((_detector.Iteration, terms));
                    window.Enqueue((clock.ElapsedTicks, prepared.Length));
                    while (window.Count > 20) window.Dequeue();
                    double seconds = (double)(clock.ElapsedTicks - window.Peek().Ticks) / Stopwatch.Frequency;
                    int images = window.Skip(1).Sum(w => w.Images);
                    double ips = seconds > 0 && images > 0 ? images / seconds : 0;
                    var eta = ips > 0 ? TimeSpan.FromSeconds((o.Iterations - _detector.Iteration) * o.BatchSize / ips) : TimeSpan.Zero;
                    Progress?.Invoke(new TrainProgress(_detector.Iteration, o.Iterations, terms, ips, eta, lr));

                    bool last = _detector.Iteration >= o.Iterations;
                    if (_test is not null && (last || (o.EvaluateEvery > 0 && _detector.Iteration % o.EvaluateEvery == 0)))
                    {
                        var report = Evaluate(_detector, _test, o.EvaluationLimit);
                        evaluations.Add((_detector.Iteration, report));
                        Evaluated?.Invoke(_detector.Iteration, report);
                    }
                    if (last || (o.CheckpointEvery > 0 && _detector.Iteration % o.CheckpointEvery == 0))
                        checkpoint = Save() ?? checkpoint;
                    if (last) break;
                }
            }
        }
        _detector.TrainingTime = timeBefore + clock.Elapsed;
        return new TrainingResult(_detector.Iteration, false, history, evaluations, checkpoint);
    }

    private int LastSavedIteration { get; set; }

    private string? SaveCheckpoint()
    {
        if (CheckpointPath is not { } path) return null;
        _detector.Save(path);
        LastSavedIteration = _detector.Iteration;
        return path;
    }

    private static ImageNormalization Normalization(Detector d)
    {
        var m = d.Config.Input.Mean;
        var s = d.Config.Input.Std;
        return new ImageNormalization(new ChannelValues(m[0], m[1], m[2]), new ChannelValues(s[0], s[1], s[2]));
    }

    /// <summary>
    /// Detects every image of <paramref name="dataset"/> (the first <paramref name="limit"/> when positive)
    /// and scores them: COCO metrics (pycocotools semantics) and VOC AP50.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellation"/> was cancelled (checked before each batch).</exception>
    public static EvaluationReport Evaluate(Detector detector, IDetectionDataset dataset, int limit = 0, int batchSize = 2, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(detector);
        ArgumentNullException.ThrowIfNull(dataset);
        int count = limit > 0 ? Math.Min(limit, dataset.Count) : dataset.Count;
        var coco = new CocoEvaluator(dataset.ClassNames);
        var voc = new VocEvaluator(dataset.ClassNames);
        var all = new List<IReadOnlyList<DetectedObject>>(count);
        var input = detector.Config.Input;
        using var loader = new DetectionDataLoader(new Subset(dataset, count), new DataLoaderOptions
        {
            BatchSize = batchSize,
            Shuffle = false,
            Resize = new ResizeSpec(input.MinSize, input.MaxSize),
            FlipProbability = 0,
            Normalization = Normalization(detector),
            Workers = 1,
            ClipBoxes = false,
        });
        foreach (var batch in loader.Epoch(0))
        {
            using (batch)
            {
                cancellation.ThrowIfCancellationRequested();
                var prepared = batch.Select(PreparedImage.FromSample).ToArray();
                var dets = detector.Detect(prepared);
                for (int i = 0; i < batch.Count; i++)
                {
                    // ground truth back in original pixels (the loader resized it; clipping is off here)
                    var sample = batch[i];
                    var truth = sample.Objects.Select(t => t with { Box = sample.ToOriginal(t.Box) }).ToArray();
                    coco.AddImage(truth, dets[i]);
                    voc.AddImage(truth, dets[i]);
                    all.Add(dets[i]);
                }
            }
        }
        return new EvaluationReport(coco.Evaluate(), voc.Evaluate(), count, all);
    }

    private sealed class Subset(IDetectionDataset inner, int count) : IDetectionDataset
    {
        public IReadOnlyList<string> ClassNames => inner.ClassNames;

        public int Count => count;

        public DetectionSample Load(int index) => inner.Load(index);
    }
}
