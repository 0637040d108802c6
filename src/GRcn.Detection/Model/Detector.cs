// The thin model API: build a detector from a DetectorConfig on a device, run training steps
// (forward, backward, SGD) on prepared batches, detect, and save/load checkpoints (weights,
// configuration and optimiser state in one safetensors file, written atomically). Random
// choices of step t (sampling, dropout) derive from (seed, t), so a resumed run repeats an
// uninterrupted one exactly on the CPU.
using System.Globalization;
using System.Text.Json;
using GRcn.Detection.Autograd;
using GRcn.Detection.Data;
using GRcn.Detection.Training;
using GRcn.Detection.Variants;
using GRcn.Kernels;
using GRcn.Kernels.Serialization;

namespace GRcn.Detection.Model;

/// <summary>
/// An image ready for the network: normalised CHW pixels at the resized size, ground truth in resized
/// pixels, and the original size, by which detections are mapped back per axis (torchvision's
/// resize_boxes: x · (OriginalWidth / Width), y · (OriginalHeight / Height), float32).
/// </summary>
/// <param name="Pixels">3 × Height × Width floats, normalised.</param>
/// <param name="Height">Resized height.</param>
/// <param name="Width">Resized width.</param>
/// <param name="OriginalHeight">Height of the image before resizing (Height when it was not resized).</param>
/// <param name="OriginalWidth">Width of the image before resizing.</param>
/// <param name="Boxes">Ground-truth boxes, 4 floats each (x1, y1, x2, y2) in resized pixels (empty at inference).</param>
/// <param name="Labels">0-based class of each box.</param>
public sealed record PreparedImage(float[] Pixels, int Height, int Width, int OriginalHeight, int OriginalWidth, float[] Boxes, int[] Labels)
{
    /// <summary>
    /// The network input of a loaded sample (resized, flipped and normalised by the data loader).
    /// Crowd and difficult objects are left out of the training targets.
    /// </summary>
    public static PreparedImage FromSample(LoadedSample sample)
    {
        ArgumentNullException.ThrowIfNull(sample);
        var objects = sample.Objects.Where(o => !o.IsCrowd && !o.Difficult && o.Box.Width > 0 && o.Box.Height > 0).ToArray();
        var boxes = new float[4 * objects.Length];
        for (int i = 0; i < objects.Length; i++)
        {
            var b = objects[i].Box;
            (boxes[4 * i], boxes[4 * i + 1], boxes[4 * i + 2], boxes[4 * i + 3]) = (b.X1, b.Y1, b.X2, b.Y2);
        }
        return new PreparedImage(sample.Pixels.ToArray(), sample.Height, sample.Width, sample.OriginalHeight, sample.OriginalWidth, boxes, objects.Select(o => o.Label).ToArray());
    }
}

/// <summary>Training produced a loss that is NaN or infinite; the weights were not updated.</summary>
public sealed class NonFiniteLossException(int iteration, LossTerms terms)
    : Exception($"non-finite loss at iteration {iteration}: rpn objectness {terms.RpnObjectness}, rpn box {terms.RpnBox}, " +
                $"classifier {terms.Classifier}, box regression {terms.BoxRegression}; weights were left at their last finite state " +
                "(lower the learning rate or enable gradient clipping)")
{
    /// <summary>The iteration that failed.</summary>
    public int Iteration { get; } = iteration;

    /// <summary>The loss terms.</summary>
    public LossTerms Terms { get; } = terms;
}

/// <summary>A G-RCN / Faster R-CNN detector of any configured variant.</summary>
public sealed class Detector : IDisposable
{
    /// <summary>Format tag of checkpoints.</summary>
    public const string CheckpointFormat = "grcn-checkpoint/1";

    // fields on: RpnOptions.BoxWeights is a value tuple
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = false, IncludeFields = true };
    private readonly GRcnNetwork _net;
    private Optimizer? _optimizer;
    private float[] _staging = [];

    private Detector(DetectorConfig config, Device device, ulong seed, TrainingOptions options)
    {
        Config = config;
        Device = device;
        Seed = seed;
        Options = options;
        _net = new GRcnNetwork(config, device, new SplitMix64(seed));
    }

    /// <summary>Builds a detector with freshly initialised weights.</summary>
    /// <param name="config">Variant configuration (see <see cref="VariantCatalog"/>).</param>
    /// <param name="device">Device (default CPU).</param>
    /// <param name="seed">Seed of the initial weights and of every training step's random choices.</param>
    /// <param name="options">Optimiser settings (default <see cref="TrainingOptions"/>).</param>
    public static Detector Create(DetectorConfig config, Device? device = null, ulong seed = 0, TrainingOptions? options = null)
    {
        DetectorConfigCheck.Validate(config, nameof(config));
        if (options is not null) DetectorConfigCheck.Validate(options, nameof(options));
        return new Detector(config, device ?? Device.Cpu, seed, options ?? new TrainingOptions());
    }

    /// <summary>The configuration.</summary>
    public DetectorConfig Config { get; private set; }

    /// <summary>The device.</summary>
    public Device Device { get; }

    /// <summary>Seed.</summary>
    public ulong Seed { get; }

    /// <summary>Optimiser settings.</summary>
    public TrainingOptions Options { get; private set; }

    /// <summary>Training steps taken so far.</summary>
    public int Iteration { get; private set; }

    /// <summary>
    /// Wall-clock time <see cref="Training.Trainer.Run"/> has spent training this detector (its steps and the evaluations
    /// between them) from iteration <see cref="TimedFromIteration"/> on, summed over every run that continued it from a
    /// checkpoint. <see cref="Save"/> writes it as the metadata <c>training_seconds</c>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Set to a negative time.</exception>
    public TimeSpan TrainingTime
    {
        get;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.Zero);
            field = value;
        }
    }

    /// <summary>
    /// The iteration <see cref="TrainingTime"/> counts from: 0, except for a detector continued from a checkpoint written
    /// before the training time was recorded (then that checkpoint's iteration: the time before it is not known).
    /// </summary>
    public int TimedFromIteration { get; private set; }

    /// <summary>The network's parameters by name (torchvision names under <c>backbone.</c>).</summary>
    public IReadOnlyList<(string Name, Parameter Parameter)> Parameters => _net.NamedParameters();

    internal GRcnNetwork Network => _net;

    /// <summary>
    /// Detects at another scale with the same weights: images are resized to shorter side <paramref name="minSize"/>,
    /// longer side at most <paramref name="maxSize"/> (<see cref="InputSettings.MinSize"/> and <see cref="InputSettings.MaxSize"/>).
    /// Training's sizes (<see cref="InputSettings.TrainMinSizes"/>) stay as they were: an empty list is replaced by the old
    /// MinSize. <see cref="Save"/> writes the new settings.
    /// </summary>
    public void SetInputSize(int minSize, int maxSize)
    {
        if (minSize < 1) throw new ArgumentException($"minSize must be at least 1; got {minSize}", nameof(minSize));
        if (maxSize < minSize) throw new ArgumentException($"maxSize ({maxSize}) must be at least minSize ({minSize})", nameof(maxSize));
        var input = Config.Input;
        Config = Config with
        {
            Input = input with { MinSize = minSize, MaxSize = maxSize, TrainMinSizes = input.TrainingSizes() },
        };
    }

    /// <summary>Replaces the optimiser settings (e.g. a new schedule when fine-tuning); momentum (or the AdamW moments) are kept.</summary>
    public void SetOptions(TrainingOptions options)
    {
        Options = options ?? throw new ArgumentNullException(nameof(options));
        var old = _optimizer;
        _optimizer = new Optimizer(_net.NamedParameters(), options);
        // the state carries over when the update rule stays (a changed rule starts afresh)
        if (old is not null && old.Options.Optimizer == options.Optimizer)
            foreach (var (key, v) in old.State) _optimizer.SetState(key, v.Clone());
        old?.Dispose();
    }

    /// <summary>
    /// One SGD step on <paramref name="batch"/>: forward, the four Faster R-CNN losses, backward, update.
    /// </summary>
    /// <exception cref="NonFiniteLossException">The loss is not finite; nothing was updated.</exception>
    public LossTerms TrainStep(IReadOnlyList<PreparedImage> batch)
    {
        Validate(batch, nameof(batch), training: true);
        _optimizer ??= new Optimizer(_net.NamedParameters(), Options);
        var (graphSeed, sampleSeed) = StepSeeds(Iteration);
        using var g = new Graph(Device, training: true, recordGradients: true, graphSeed);
        var images = g.Constant(Pack(batch));
        var (loss, terms, _) = _net.Forward(g, images, Describe(batch), training: true, new SplitMix64(sampleSeed));
        if (!terms.IsFinite)
        {
            _net.ZeroGrad();
            throw new NonFiniteLossException(Iteration, terms);
        }
        g.Backward(loss!);
        _optimizer.Step(Options.LearningRateAt(Iteration), Iteration + 1);
        Iteration++;
        return terms;
    }

    /// <summary>The losses of <paramref name="batch"/> without updating anything (training targets and sampling; no dropout, test-time proposal counts).</summary>
    public LossTerms Losses(IReadOnlyList<PreparedImage> batch)
    {
        Validate(batch, nameof(batch), training: true);
        var (graphSeed, sampleSeed) = StepSeeds(Iteration);
        using var g = new Graph(Device, training: false, recordGradients: false, graphSeed);
        var images = g.Constant(Pack(batch));
        return _net.Forward(g, images, Describe(batch), training: true, new SplitMix64(sampleSeed)).Terms;
    }

    /// <summary>
    /// Detections for each prepared image, highest score first, boxes in original image pixels: each axis multiplied by
    /// original / resized size (<see cref="LoadedSample.ToOriginal"/>'s rule, torchvision's postprocess); each names its class.
    /// </summary>
    /// <param name="images">Prepared images (<see cref="Prepare"/>).</param>
    /// <param name="scoreThreshold">Keep detections scoring at least this, in [0, 1] (0: all the network keeps, which are
    /// those over <see cref="RoiHeadSettings.ScoreThreshold"/>).</param>
    public IReadOnlyList<DetectedObject>[] Detect(IReadOnlyList<PreparedImage> images, float scoreThreshold = 0f)
    {
        Validate(images, nameof(images), training: false);
        if (!(scoreThreshold is >= 0f and <= 1f))
            throw new ArgumentOutOfRangeException(nameof(scoreThreshold), scoreThreshold, "scoreThreshold must be in [0, 1]");
        using var g = new Graph(Device, training: false, recordGradients: false);
        var x = g.Constant(Pack(images));
        var (_, _, dets) = _net.Forward(g, x, Describe(images), training: false, new SplitMix64(0));
        if (scoreThreshold > 0f)
            foreach (var list in dets!) list.RemoveAll(d => d.Score < scoreThreshold);
        return dets!.Select(d => (IReadOnlyList<DetectedObject>)d).ToArray();
    }

    /// <summary>
    /// Detections of an RGB image, highest score first: resized (shorter side <see cref="InputSettings.MinSize"/>, longer at
    /// most <see cref="InputSettings.MaxSize"/>) and normalised as configured; boxes in the image's pixels.
    /// </summary>
    /// <param name="image">The image.</param>
    /// <param name="scoreThreshold">Keep detections scoring at least this, in [0, 1].</param>
    public IReadOnlyList<DetectedObject> Detect(RgbImage image, float scoreThreshold = 0f) => Detect([Prepare(image)], scoreThreshold)[0];

    /// <summary>The network input of an RGB image under this detector's input settings (no ground truth).</summary>
    public PreparedImage Prepare(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        var spec = new ResizeSpec(Config.Input.MinSize, Config.Input.MaxSize);
        var (w, h) = spec.OutputSize(image.Width, image.Height);
        var m = Config.Input.Mean;
        var sd = Config.Input.Std;
        var norm = new ImageNormalization(new ChannelValues(m[0], m[1], m[2]), new ChannelValues(sd[0], sd[1], sd[2]));
        var chw = new float[3 * w * h];
        new ImageResizer().ResizeNormalize(image, w, h, false, norm, chw);
        return new PreparedImage(chw, h, w, image.Height, image.Width, [], []);
    }

    /// <summary>Detections of one prepared image, highest score first, at least <paramref name="scoreThreshold"/> (in [0, 1]).</summary>
    public IReadOnlyList<DetectedObject> Detect(PreparedImage image, float scoreThreshold = 0f) => Detect([image], scoreThreshold)[0];

    private (ulong Graph, ulong Sample) StepSeeds(int iteration)
    {
        var mix = new SplitMix64(Seed ^ (0xA24BAED4963EE407UL * (ulong)(iteration + 1)));
        return (mix.NextUInt64(), mix.NextUInt64());
    }

    private static BatchImage[] Describe(IReadOnlyList<PreparedImage> batch) =>
        batch.Select(b => new BatchImage(b.Height, b.Width, b.OriginalHeight, b.OriginalWidth, b.Boxes, b.Labels)).ToArray();

    private void Validate(IReadOnlyList<PreparedImage> batch, string name, bool training)
    {
        ArgumentNullException.ThrowIfNull(batch, name);
        if (batch.Count == 0) throw new ArgumentException("the batch is empty", name);
        for (int i = 0; i < batch.Count; i++)
        {
            var b = batch[i] ?? throw new ArgumentException($"image {i} is null", name);
            if (b.Height < 1 || b.Width < 1 || b.Pixels.Length != 3L * b.Height * b.Width)
                throw new ArgumentException($"image {i}: Pixels must hold 3 × {b.Height} × {b.Width} floats; got {b.Pixels.Length}", name);
            if (b.OriginalHeight < 1 || b.OriginalWidth < 1)
                throw new ArgumentException($"image {i}: the original size must be positive; got {b.OriginalWidth} × {b.OriginalHeight}", name);
            if (b.Boxes.Length != 4 * b.Labels.Length)
                throw new ArgumentException($"image {i}: Boxes must hold 4 floats per label ({4 * b.Labels.Length}); got {b.Boxes.Length}", name);
            if (!training) continue;
            for (int j = 0; j < b.Labels.Length; j++)
            {
                if ((uint)b.Labels[j] >= (uint)Config.NumClasses)
                    throw new ArgumentException($"image {i}, box {j}: label {b.Labels[j]} is outside [0, {Config.NumClasses})", name);
                float x1 = b.Boxes[4 * j], y1 = b.Boxes[4 * j + 1], x2 = b.Boxes[4 * j + 2], y2 = b.Boxes[4 * j + 3];
                if (!float.IsFinite(x1 + y1 + x2 + y2) || x2 <= x1 || y2 <= y1)
                    throw new ArgumentException($"image {i}, box {j}: ({x1}, {y1}, {x2}, {y2}) must be finite with x2 > x1 and y2 > y1", name);
            }
        }
    }

    /// <summary>
    /// Packs images into (N, 3, H, W), H and W the largest rounded up to SizeDivisible, zero padded at
    /// the bottom/right. The host staging buffer is kept across steps.
    /// </summary>
    private Tensor Pack(IReadOnlyList<PreparedImage> batch)
    {
        int div = Math.Max(1, Config.Input.SizeDivisible);
        int h = (batch.Max(b => b.Height) + div - 1) / div * div;
        int w = (batch.Max(b => b.Width) + div - 1) / div * div;
        int need = checked(batch.Count * 3 * h * w);
        if (_staging.Length < need) _staging = new float[need];
        var host = _staging.AsSpan(0, need);
        host.Clear();
        for (int n = 0; n < batch.Count; n++)
        {
            var b = batch[n];
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < b.Height; y++)
                    b.Pixels.AsSpan((c * b.Height + y) * b.Width, b.Width).CopyTo(host.Slice(((n * 3 + c) * h + y) * w, b.Width));
        }
        // host → device: the packed images, N·3·H·W floats
        var t = Tensor.Empty(Device, DataType.Float32, batch.Count, 3, h, w);
        t.CopyFrom<float>(host);
        return t;
    }

    /// <summary>
    /// Writes weights, configuration and optimiser state to <paramref name="path"/> (one
    /// safetensors file; temp file + rename, so a crash never leaves a half-written checkpoint).
    /// </summary>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var (name, p) in _net.NamedParameters()) tensors.Add(new("model." + name, p.Value));
        if (_optimizer is not null)
            foreach (var (key, v) in _optimizer.State) tensors.Add(new("optimizer." + key, v));
        var meta = new Dictionary<string, string>
        {
            ["format"] = CheckpointFormat,
            ["config"] = JsonSerializer.Serialize(Config, Json),
            ["training"] = JsonSerializer.Serialize(Options, Json),
            ["iteration"] = Iteration.ToString(CultureInfo.InvariantCulture),
            ["seed"] = Seed.ToString(CultureInfo.InvariantCulture),
            ["training_seconds"] = TrainingTime.TotalSeconds.ToString("R", CultureInfo.InvariantCulture),
            ["timed_from_iteration"] = TimedFromIteration.ToString(CultureInfo.InvariantCulture),
        };
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        SafeTensorsWriter.Write(path, tensors, meta);
    }

    /// <summary>
    /// Loads a checkpoint written by <see cref="Save"/>: the same network, weights, optimiser state and iteration.
    /// Everything <see cref="Create"/> validates is validated here too; every model tensor must be F32 and finite,
    /// and the optimiser state must match the parameters (names, shapes, the update rule's entries for every
    /// trainable parameter once training has begun).
    /// </summary>
    /// <exception cref="InvalidDataException">The file is not a G-RCN checkpoint or does not match its configuration; the message names the file and the field or tensor.</exception>
    /// <exception cref="IOException">The file cannot be read or is not a valid safetensors file (<see cref="SafeTensorsFormatException"/>).</exception>
    public static Detector Load(string path, Device? device = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var file = SafeTensorsFile.Read(path);
        string Meta(string key) => file.Metadata.TryGetValue(key, out var v)
            ? v : throw new InvalidDataException($"{path}: not a G-RCN checkpoint (metadata '{key}' is missing)");
        if (Meta("format") != CheckpointFormat)
            throw new InvalidDataException($"{path}: checkpoint format '{Meta("format")}' is not {CheckpointFormat}");
        DetectorConfig config;
        TrainingOptions options;
        try
        {
            config = JsonSerializer.Deserialize<DetectorConfig>(Meta("config"), Json) ?? throw new InvalidDataException($"{path}: metadata 'config' is null");
            options = JsonSerializer.Deserialize<TrainingOptions>(Meta("training"), Json) ?? throw new InvalidDataException($"{path}: metadata 'training' is null");
            DetectorConfigCheck.Validate(config, "config");
            DetectorConfigCheck.Validate(options, "training");
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or ArgumentException or InvalidOperationException)
        {
            // ArgumentException's " (Parameter 'config')" tail says nothing to the reader of a file
            string message = e is ArgumentException { ParamName: { } name } ? e.Message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal) : e.Message;
            throw new InvalidDataException($"{path}: invalid configuration in the checkpoint metadata: {message}", e);
        }
        if (!ulong.TryParse(Meta("seed"), NumberStyles.None, CultureInfo.InvariantCulture, out ulong seed))
            throw new InvalidDataException($"{path}: metadata 'seed' must be an integer in [0, {ulong.MaxValue}]; got '{Meta("seed")}'");
        if (!int.TryParse(Meta("iteration"), NumberStyles.None, CultureInfo.InvariantCulture, out int iteration))
            throw new InvalidDataException($"{path}: metadata 'iteration' must be an integer in [0, {int.MaxValue}]; got '{Meta("iteration")}'");
        // optional: a checkpoint written before the training time was recorded has neither field, and its time counts
        // from its own iteration on
        var trainingTime = TimeSpan.Zero;
        int timedFrom = iteration;
        if (file.Metadata.TryGetValue("training_seconds", out var secondsText))
        {
            if (!double.TryParse(secondsText, NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds)
                || !double.IsFinite(seconds) || seconds < 0 || seconds >= TimeSpan.MaxValue.TotalSeconds)
                throw new InvalidDataException($"{path}: metadata 'training_seconds' must be a finite number of seconds ≥ 0; got '{secondsText}'");
            trainingTime = TimeSpan.FromSeconds(seconds);
            timedFrom = 0;
            if (file.Metadata.TryGetValue("timed_from_iteration", out var fromText)
                && (!int.TryParse(fromText, NumberStyles.None, CultureInfo.InvariantCulture, out timedFrom) || timedFrom > iteration))
                throw new InvalidDataException($"{path}: metadata 'timed_from_iteration' must be an integer in [0, {iteration}] (the checkpoint's iteration); got '{fromText}'");
        }
        Detector d;
        try
        {
            d = new Detector(config, device ?? Device.Cpu, seed, options) { Iteration = iteration, TrainingTime = trainingTime, TimedFromIteration = timedFrom };
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{path}: the checkpoint's configuration cannot be built: {e.Message}", e);
        }
        try
        {
            var parameters = d._net.NamedParameters();
            var names = new HashSet<string>();
            foreach (var (name, p) in parameters)
            {
                string key = "model." + name;
                names.Add(key);
                using var t = LoadChecked(file, path, key, p.Value.Shape, d.Device);
                p.Value.CopyFrom(t);
            }
            foreach (var info in file.Tensors)
                if (!names.Contains(info.Name) && !info.Name.StartsWith("optimizer.", StringComparison.Ordinal))
                    throw new InvalidDataException($"{path}: unexpected tensor '{info.Name}' for variant {config.Variant} on {config.Backbone}");
            LoadOptimizerState(d, file, path, parameters);
            Nn.StateVersion.Bump();
            return d;
        }
        catch
        {
            d.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The optimiser entries of a checkpoint: each must be <c>optimizer.RULE.NAME</c> for the options' update rule
    /// (velocity for SGD with momentum, exp_avg and exp_avg_sq for AdamW) and a trainable parameter NAME, F32 of its
    /// shape and finite; after the first step every trainable parameter must have all its entries (a partial state
    /// would resume inexactly).
    /// </summary>
    private static void LoadOptimizerState(Detector d, SafeTensorsFile file, string path, IReadOnlyList<(string Name, Parameter Parameter)> parameters)
    {
        var options = d.Options;
        string[] rules = options.Optimizer == OptimizerKind.AdamW ? ["exp_avg", "exp_avg_sq"] : options.Momentum != 0 ? ["velocity"] : [];
        var trainable = parameters.Where(p => p.Parameter.Trainable).ToDictionary(p => p.Name, p => p.Parameter);
        var expected = new Dictionary<string, Parameter>(StringComparer.Ordinal);
        foreach (var rule in rules)
            foreach (var (name, p) in trainable) expected["optimizer." + rule + "." + name] = p;
        var present = file.Tensors.Where(t => t.Name.StartsWith("optimizer.", StringComparison.Ordinal)).ToList();
        foreach (var info in present)
            if (!expected.ContainsKey(info.Name))
                throw new InvalidDataException($"{path}: optimiser tensor '{info.Name}' matches no trainable parameter of {options.Optimizer} " +
                                               $"(expected optimizer.{(rules.Length == 0 ? "<none: SGD without momentum keeps no state>" : string.Join("|", rules))}.PARAMETER)");
        // no state at all is a fresh start of the rule (a checkpoint saved after SetOptions changed it); part of one is damage
        if (d.Iteration > 0 && present.Count > 0 && present.Count != expected.Count)
        {
            string missing = expected.Keys.First(k => !file.Contains(k));
            throw new InvalidDataException($"{path}: optimiser tensor '{missing}' is missing ({present.Count} of {expected.Count} present); the resume would not be exact");
        }
        foreach (var info in present)
        {
            d._optimizer ??= new Optimizer(parameters, options);
            d._optimizer.SetState(info.Name["optimizer.".Length..], LoadChecked(file, path, info.Name, expected[info.Name].Value.Shape, d.Device));
        }
    }

    /// <summary>Tensor <paramref name="key"/> of a checkpoint: present, F32, of <paramref name="shape"/>, every value finite.</summary>
    private static Tensor LoadChecked(SafeTensorsFile file, string path, string key, ReadOnlySpan<int> shape, Device device)
    {
        if (!file.Contains(key)) throw new InvalidDataException($"{path}: tensor '{key}' is missing");
        var info = file.Info(key);
        if (info.DType != "F32") throw new InvalidDataException($"{path}: tensor '{key}' has dtype {info.DType}; checkpoints hold F32");
        if (!info.Shape.AsSpan().SequenceEqual(shape))
            throw new InvalidDataException($"{path}: tensor '{key}' has shape {info.ShapeString}, the network expects {Tensor.FormatShape(shape)}");
        var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(file.RawBytes(key));
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i]))
                throw new InvalidDataException($"{path}: tensor '{key}' holds a non-finite value ({values[i]}) at flat index {i}");
        return file.Load(key, device);
    }

    /// <summary>
    /// Loads a torchvision <c>FasterRCNN</c> state dict (safetensors, torchvision's key names) into this
    /// detector: a VGG16 trunk (<c>backbone.N.*</c> = <c>vgg16().features[:30]</c>) with TwoMLPHead, or a
    /// ResNet C4 trunk with layer4 as the box head; RPNHead and FastRCNNPredictor in both
    /// (docs/torchvision-weights.md gives every key). Every parameter must be found and no entry may be
    /// left over (num_batches_tracked aside); otherwise nothing is loaded. The detector's
    /// configuration (classes, width, pooler, anchors, input sizes) must be the one the weights were
    /// trained with: only shapes can be checked.
    /// </summary>
    /// <exception cref="ArgumentException">The variant is a layout torchvision's FasterRCNN cannot express (split, context, other heads).</exception>
    /// <exception cref="Nn.StateDictException">A key is missing or left over, or a shape differs.</exception>
    public Nn.StateDictLoadResult LoadTorchvision(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        TorchvisionDetectorWeights.CheckLayout(Config);
        var backbone = Config.Backbone;
        return Nn.StateDict.LoadRenamed(_net, SafeTensorsFile.Read(path), key => TorchvisionDetectorWeights.Rename(key, backbone));
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _optimizer?.Dispose();
        _net.Dispose();
    }
}
