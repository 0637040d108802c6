// Everything one grcn train run needs, resolved from the command line: the data, the detector
// variant and its input/anchor/proposal settings, the optimiser schedule and the loop's
// output. The defaults depend on the data: the synthetic shapes set gets a small, fast
// setting (the 128-pixel images trained at their own size and evaluated upscaled to 160, an
// eighth-width VGG16 with group norm trained from scratch by AdamW on a cosine schedule, small
// anchors and proposal counts) sized to finish in under ten minutes on two CPU cores; the
// COCO-like shapes-large set the same recipe on its 320×240 images at their own size, with
// anchors up to 256 and the paper's 14×14 context map; VOC and
// COCO get the paper's input size, SGD schedule and Faster R-CNN's counts.
using GRcn.Detection.Training;
using GRcn.Detection.Variants;

namespace GRcn.Cli.Training;

/// <summary>A resolved grcn train run.</summary>
internal sealed record TrainSettings
{
    /// <summary>Training and evaluation data.</summary>
    public DataSource Data { get; init; } = new(DataKind.Shapes, null);

    /// <summary>
    /// Variant name (VariantCatalog). On the synthetic shapes the default is G-RCN with aligned RoIAlign: half the
    /// objects there are 12–32 pixels, under two cells of the stride-16 classification map, where RoIPool's rounding
    /// gives a part of an object and the whole object the same pooled cells, and unaligned RoIAlign samples half a cell
    /// (8 pixels) off the box (docs/experiments.md).
    /// </summary>
    public string Variant { get; init; } = "g-rcn";

    /// <summary>Backbone.</summary>
    public BackboneKind Backbone { get; init; } = BackboneKind.Vgg16;

    /// <summary>Backbone width multiplier.</summary>
    public double Width { get; init; } = 0.125;

    /// <summary>VGG16 group-norm groups, or null for the default: 32 from scratch, none with <see cref="Weights"/> (torchvision's VGG16 has no normalisation).</summary>
    public int? GroupNorm { get; init; }

    /// <summary>The group-norm groups this run uses (0: none).</summary>
    public int GroupNormGroups => Backbone != BackboneKind.Vgg16 ? 0 : GroupNorm ?? (Weights is null ? 32 : 0);

    /// <summary>torchvision backbone weights (safetensors), or null to train from scratch.</summary>
    public string? Weights { get; init; }

    /// <summary>Total training iterations.</summary>
    public int Iterations { get; init; } = 10000;

    /// <summary>Images per step.</summary>
    public int BatchSize { get; init; } = 2;

    /// <summary>Base learning rate.</summary>
    public double LearningRate { get; init; } = 0.002;

    /// <summary>Update rule: "sgd" (momentum 0.9) or "adamw".</summary>
    public string Optimizer { get; init; } = "adamw";

    /// <summary>Learning-rate decay: "step" (×0.1 at 80 %) or "cosine" (half-cosine to 0 at the last iteration).</summary>
    public string Schedule { get; init; } = "cosine";

    /// <summary>Shorter image side after resizing, at evaluation and detection (and in training unless <see cref="TrainSizes"/> is set).</summary>
    public int Size { get; init; } = 128;

    /// <summary>Training's shorter sides, one drawn per batch; empty: <see cref="Size"/>.</summary>
    public int[] TrainSizes { get; init; } = [];

    /// <summary>Longer image side at most.</summary>
    public int MaxSize { get; init; } = 213;

    /// <summary>Anchor sizes (√area, input pixels).</summary>
    public float[] Anchors { get; init; } = [16, 32, 64, 128];

    /// <summary>Device name (cpu, cuda, cuda:N, emulator).</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>Seed of the weights, sampling and data order.</summary>
    public ulong Seed { get; init; }

    /// <summary>Output folder.</summary>
    public string OutputDirectory { get; init; } = Path.Combine("runs", "latest");

    /// <summary>Continue from OUT/checkpoint.safetensors.</summary>
    public bool Resume { get; init; }

    /// <summary>Start afresh even when OUT holds a checkpoint (it is replaced at the first checkpoint of this run).</summary>
    public bool Overwrite { get; init; }

    /// <summary>The options given on the command line (not defaulted), by name ("--variant"); --resume checks them against the checkpoint.</summary>
    public IReadOnlySet<string> Given { get; init; } = new HashSet<string>();

    /// <summary>Evaluate every this many iterations on <see cref="EvaluationLimit"/> test images (0: only the final evaluation).</summary>
    public int EvaluateEvery { get; init; } = 2000;

    /// <summary>Test images of the periodic evaluations (the final one uses the whole test set).</summary>
    public int EvaluationLimit { get; init; } = 100;

    /// <summary>Checkpoint every this many iterations (0: only at the end).</summary>
    public int CheckpointEvery { get; init; } = 1000;

    /// <summary>CPU threads (null: all cores).</summary>
    public int? Threads { get; init; }

    /// <summary>Synthetic training images.</summary>
    public int TrainImages { get; init; } = 4000;

    /// <summary>Synthetic test images.</summary>
    public int TestImages { get; init; } = 500;

    /// <summary>Print a plain progress line every this many iterations (non-interactive output).</summary>
    public int LogEvery { get; init; } = 100;

    /// <summary>Test images drawn in detections.png.</summary>
    public int GridImages { get; init; } = 16;

    /// <summary>Detections drawn at or above this score.</summary>
    public float DrawThreshold { get; init; } = 0.5f;

    /// <summary>Largest --size and --train-sizes value: the longer side (5/3 of it) then stays within the detector's limit.</summary>
    public const int MaxSide = 2048;

    /// <summary>Largest --batch.</summary>
    public const int MaxBatch = 64;

    /// <summary>Largest --train-images and --test-images (synthetic images are drawn on demand, but their list is kept).</summary>
    public const int MaxSyntheticImages = 10_000_000;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid option.</summary>
    public void Validate()
    {
        if (Iterations < 1) throw new ArgumentException($"--iters must be at least 1; got {Iterations}", "--iters");
        if (BatchSize is < 1 or > MaxBatch) throw new ArgumentException($"--batch must be in [1, {MaxBatch}]; got {BatchSize}", "--batch");
        if (!(LearningRate > 0 && LearningRate <= 1e6)) throw new ArgumentException($"--lr must be in (0, 1000000]; got {LearningRate}", "--lr");
        if (!(Width > 0 && Width <= 4)) throw new ArgumentException($"--width must be in (0, 4]; got {Width}", "--width");
        if (Size is < 32 or > MaxSide) throw new ArgumentException($"--size must be in [32, {MaxSide}]; got {Size}", "--size");
        if (TrainSizes.Any(t => t is < 32 or > MaxSide))
            throw new ArgumentException($"--train-sizes must each be in [32, {MaxSide}]; got {string.Join(' ', TrainSizes)}", "--train-sizes");
        if (TrainSizes.Length > 64) throw new ArgumentException($"--train-sizes takes at most 64 sizes; got {TrainSizes.Length}", "--train-sizes");
        if (MaxSize < Size) throw new ArgumentException($"the longer side limit ({MaxSize}) must be at least --size ({Size})", "--size");
        if (TrainSizes.Any(t => t > MaxSize))
            throw new ArgumentException($"the longer side limit ({MaxSize}) must be at least every --train-sizes value ({string.Join(' ', TrainSizes)})", "--train-sizes");
        if (Anchors.Length is 0 or > 64 || Anchors.Any(a => !(a > 0 && a <= 4 * MaxSide)))
            throw new ArgumentException($"--anchors needs 1 to 64 sizes in (0, {4 * MaxSide}]; got {string.Join(' ', Anchors)}", "--anchors");
        if (EvaluateEvery < 0) throw new ArgumentException($"--eval-every must be ≥ 0; got {EvaluateEvery}", "--eval-every");
        if (CheckpointEvery < 0) throw new ArgumentException($"--checkpoint-every must be ≥ 0; got {CheckpointEvery}", "--checkpoint-every");
        if (EvaluationLimit < 0) throw new ArgumentException($"--eval-limit must be ≥ 0; got {EvaluationLimit}", "--eval-limit");
        if (LogEvery < 1) throw new ArgumentException($"--log-every must be at least 1; got {LogEvery}", "--log-every");
        if (GroupNorm is < 0 or > 512) throw new ArgumentException($"--group-norm must be in [0, 512]; got {GroupNorm}", "--group-norm");
        if (GroupNorm is > 0 && Backbone != BackboneKind.Vgg16)
            throw new ArgumentException($"--group-norm applies to vgg16 only; {Backbone} has batch norm", "--group-norm");
        if (GroupNorm is > 0 && Weights is not null)
            throw new ArgumentException("--group-norm cannot start from --weights: torchvision's VGG16 has no normalisation layers to load", "--group-norm");
        if (Optimizer is not ("sgd" or "adamw")) throw new ArgumentException($"--optimizer must be sgd or adamw; got '{Optimizer}'", "--optimizer");
        if (Schedule is not ("step" or "cosine")) throw new ArgumentException($"--schedule must be step or cosine; got '{Schedule}'", "--schedule");
        Commands.DeviceOption.CheckThreads(Threads);
        if (TrainImages < BatchSize) throw new ArgumentException($"--train-images ({TrainImages}) must be at least --batch ({BatchSize})", "--train-images");
        if (TrainImages > MaxSyntheticImages) throw new ArgumentException($"--train-images must be at most {MaxSyntheticImages}; got {TrainImages}", "--train-images");
        if (TestImages is < 1 or > MaxSyntheticImages) throw new ArgumentException($"--test-images must be in [1, {MaxSyntheticImages}]; got {TestImages}", "--test-images");
        if (string.IsNullOrWhiteSpace(OutputDirectory)) throw new ArgumentException("--out must name a folder", "--out");
    }

    /// <summary>
    /// The library recipe of this run (<see cref="TrainingRecipe"/>): with pretrained weights conv1–conv2 (VGG16) or
    /// conv1 + layer1 (ResNet) stay frozen, as py-faster-rcnn and torchvision do, and the heads keep their default
    /// initialisation; from scratch everything trains, the fc head is He-initialised, and SGD clips the gradient norm to
    /// 1 (the update length stays fixed while its direction follows the gradient, which on the synthetic shapes trained
    /// faster and steadier than plain SGD at any learning rate tried, 0.005–0.08; AdamW normalises each element's step
    /// itself). The synthetic shapes get <see cref="TrainingRecipe.SmallImageCounts"/> and weight decay 1e-4.
    /// </summary>
    public TrainingRecipe ToRecipe() => new()
    {
        Variant = Variant,
        Backbone = Backbone,
        Width = Width,
        GroupNormGroups = GroupNormGroups,
        FrozenStages = Weights is null ? 0 : 2,
        TestSize = Size,
        TrainSizes = [.. TrainSizes],
        MaxSize = MaxSize,
        AnchorSizes = [.. Anchors],
        // both synthetic sets have few objects per image; shapes-large's 240×320 inputs give a 15×20
        // map at stride 16, so it keeps the paper's 14×14 context map where shapes gets 7×7
        SmallImageCounts = Data.IsShapes,
        ContextSize = Data.Kind == DataKind.ShapesLarge ? 14 : null,
        Optimizer = Optimizer == "adamw" ? OptimizerKind.AdamW : OptimizerKind.Sgd,
        LearningRate = LearningRate,
        WeightDecay = Data.IsShapes ? TrainingRecipe.Shapes.WeightDecay : 5e-4,
        Schedule = Schedule == "cosine" ? LearningRateSchedule.Cosine : LearningRateSchedule.Step,
        ClipGradientNorm = Weights is null && Optimizer == "sgd" ? 1 : null,
        Iterations = Iterations,
        BatchSize = BatchSize,
        HeInitRoiHeads = Weights is null,
    };

    /// <summary>The detector configuration of this run for the given classes.</summary>
    public DetectorConfig BuildConfig(IReadOnlyList<string> classNames) => ToRecipe().CreateConfig(classNames);

    /// <summary>The optimiser and schedule (<see cref="TrainingRecipe.CreateTrainingOptions"/>).</summary>
    public TrainingOptions BuildTrainingOptions() => ToRecipe().CreateTrainingOptions();

    /// <summary>The longer-side cap that goes with a shorter side of <paramref name="size"/> when only that is given: 5/3 of it.</summary>
    public static int LongerSideFor(int size) => (int)Math.Min(int.MaxValue, size * 5L / 3);

    /// <summary>The settings of <paramref name="recipe"/> on <paramref name="data"/> (the loop's own options at their defaults).</summary>
    public static TrainSettings FromRecipe(DataSource data, TrainingRecipe recipe) => new()
    {
        Data = data,
        Variant = recipe.Variant,
        Backbone = recipe.Backbone,
        Width = recipe.Width,
        // 32 groups is what a from-scratch VGG16 gets when --group-norm is left out
        GroupNorm = recipe.GroupNormGroups == 32 ? null : recipe.GroupNormGroups,
        Iterations = recipe.Iterations,
        BatchSize = recipe.BatchSize,
        LearningRate = recipe.LearningRate,
        Optimizer = recipe.Optimizer == OptimizerKind.AdamW ? "adamw" : "sgd",
        Schedule = recipe.Schedule == LearningRateSchedule.Cosine ? "cosine" : "step",
        Size = recipe.TestSize,
        TrainSizes = [.. recipe.TrainSizes],
        MaxSize = recipe.MaxSize,
        Anchors = [.. recipe.AnchorSizes],
    };

    /// <summary>Defaults for <paramref name="data"/>; options given on the command line override them.</summary>
    public static TrainSettings DefaultsFor(DataSource data) => data.Kind switch
    {
        DataKind.Shapes => FromRecipe(data, TrainingRecipe.Shapes),
        // the 320×240 images at their own size (COCO's area thresholds then hold in the pixels the detector sees)
        DataKind.ShapesLarge => FromRecipe(data, TrainingRecipe.Shapes) with
        {
            Size = 240, TrainSizes = [240], MaxSize = LongerSideFor(240), Anchors = [16, 32, 64, 128, 256],
        },
        _ => new TrainSettings
        {
            Data = data,
            Width = 1.0,
            Iterations = data.Kind == DataKind.Coco ? 320000 : 180000,
            BatchSize = 1,
            LearningRate = 0.001,
            Optimizer = "sgd",
            Schedule = "step",
            Size = 600,
            MaxSize = 1000,
            Anchors = data.Kind == DataKind.Coco ? [32, 64, 128, 256, 512] : [128, 256, 512],
            EvaluateEvery = 10000,
            EvaluationLimit = 500,
            CheckpointEvery = 2000,
            LogEvery = 100,
        },
    };
}
