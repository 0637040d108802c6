// A complete training setup as one value: the detector variant and its sizes, the optimiser and
// its schedule, the loop's iterations and batch, and the initialisation of a from-scratch run.
// TrainingRecipe.Shapes is the tuned setting that `grcn train` runs on the built-in synthetic
// shapes (the CLI builds its detector, options and loop from a recipe too), so a library user
// gets the tool's result with the same few calls. The He initialisation of the RoI heads keeps
// the exact draw order of the tool (System.Random seeded from the detector seed, Box–Muller
// pairs) so both give the same weights for a seed.
using GRcn.Detection.Data;
using GRcn.Detection.Model;
using GRcn.Detection.Variants;
using GRcn.Kernels;

namespace GRcn.Detection.Training;

/// <summary>How the learning rate decays after the warm-up.</summary>
public enum LearningRateSchedule
{
    /// <summary>×0.1 at 80 % of the iterations (the paper's 150k of 180k on VOC).</summary>
    Step,

    /// <summary>A half-cosine from the base rate to 0 at the last iteration.</summary>
    Cosine,
}

/// <summary>
/// Everything a training run needs besides the data: build the detector with <see cref="CreateDetector"/> and the loop
/// settings with <see cref="CreateTrainerOptions"/>. <see cref="Shapes"/> is what <c>grcn train</c> uses on the synthetic shapes.
/// </summary>
public sealed record TrainingRecipe
{
    /// <summary>Variant name (<see cref="VariantCatalog"/>), e.g. "g-rcn" or "g-rcn+roi-align-v2".</summary>
    public string Variant { get; init; } = "g-rcn";

    /// <summary>Backbone.</summary>
    public BackboneKind Backbone { get; init; } = BackboneKind.Vgg16;

    /// <summary>Backbone channel width multiplier (1: the paper's network).</summary>
    public double Width { get; init; } = 1.0;

    /// <summary>VGG16: group norm with this many groups after every convolution (0: none).</summary>
    public int GroupNormGroups { get; init; }

    /// <summary>Backbone stages kept frozen (2 with pretrained weights, as py-faster-rcnn and torchvision do; 0 from scratch).</summary>
    public int FrozenStages { get; init; }

    /// <summary>Shorter image side at evaluation and detection.</summary>
    public int TestSize { get; init; } = 600;

    /// <summary>Training's shorter image sides, one drawn per batch (empty: <see cref="TestSize"/>).</summary>
    public int[] TrainSizes { get; init; } = [];

    /// <summary>Longer image side at most.</summary>
    public int MaxSize { get; init; } = 1000;

    /// <summary>Anchor sizes (√area, input pixels).</summary>
    public float[] AnchorSizes { get; init; } = [128, 256, 512];

    /// <summary>
    /// Counts for small images with a few objects: 1000/300 proposals before/after NMS in training and 300/100 at test,
    /// 32 RoIs per image half of them foreground, a 256-wide fc head without dropout, and a 7×7 context map (a 128-pixel
    /// image gives an 8×8 map at stride 16; a larger one would only repeat cells). False: Faster R-CNN's counts.
    /// </summary>
    public bool SmallImageCounts { get; init; }

    /// <summary>Side of the context map of the context-attention variants (null: 7 with <see cref="SmallImageCounts"/>, else the variant's own).</summary>
    public int? ContextSize { get; init; }

    /// <summary>Update rule.</summary>
    public OptimizerKind Optimizer { get; init; } = OptimizerKind.Sgd;

    /// <summary>Base learning rate, reached after a linear warm-up from a tenth of it.</summary>
    public double LearningRate { get; init; } = 0.001;

    /// <summary>Weight decay (decoupled for AdamW).</summary>
    public double WeightDecay { get; init; } = 5e-4;

    /// <summary>Decay after the warm-up.</summary>
    public LearningRateSchedule Schedule { get; init; } = LearningRateSchedule.Step;

    /// <summary>Clip the global gradient norm to this (null: no clipping).</summary>
    public double? ClipGradientNorm { get; init; }

    /// <summary>Training iterations (the schedule is laid out over them).</summary>
    public int Iterations { get; init; } = 180000;

    /// <summary>Images per iteration.</summary>
    public int BatchSize { get; init; } = 1;

    /// <summary>
    /// Redraw the RoI heads' fully connected weights with He (Kaiming) normal initialisation, σ = √(2 / fan_in), instead
    /// of PyTorch's nn.Linear default (uniform, √6 times smaller in σ), which suits heads on a pretrained backbone but
    /// shrinks a from-scratch network's signal at every layer; on the synthetic shapes it fits about half as fast again.
    /// </summary>
    public bool HeInitRoiHeads { get; init; }

    /// <summary>
    /// The tuned setting for the built-in synthetic shapes (<see cref="ShapesDataset"/>, 128×128 images, objects 12–64
    /// pixels): G-RCN with aligned RoIAlign on an eighth-width VGG16 with 32-group norm after every convolution, trained
    /// from scratch (He-initialised fc head) at the images' own 128 pixels and evaluated upscaled to 160, anchors 16–128,
    /// <see cref="SmallImageCounts"/>, AdamW at lr 0.002 (weight decay 1e-4) with a cosine decay, 10000 iterations of 2
    /// images. A new instance on every call.
    /// </summary>
    public static TrainingRecipe Shapes => new()
    {
        Variant = "g-rcn+roi-align-v2",
        Width = 0.125,
        GroupNormGroups = 32,
        TestSize = 160,
        TrainSizes = [128],
        MaxSize = 160 * 5 / 3,
        AnchorSizes = [16, 32, 64, 128],
        SmallImageCounts = true,
        Optimizer = OptimizerKind.AdamW,
        LearningRate = 0.002,
        WeightDecay = 1e-4,
        Schedule = LearningRateSchedule.Cosine,
        Iterations = 10000,
        BatchSize = 2,
        HeInitRoiHeads = true,
    };

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid property.</summary>
    public void Validate()
    {
        if (Iterations < 1) throw new ArgumentException($"Iterations must be at least 1; got {Iterations}", nameof(Iterations));
        if (BatchSize < 1) throw new ArgumentException($"BatchSize must be at least 1; got {BatchSize}", nameof(BatchSize));
        if (!(LearningRate > 0) || !double.IsFinite(LearningRate)) throw new ArgumentException($"LearningRate must be positive; got {LearningRate}", nameof(LearningRate));
        if (!(WeightDecay >= 0) || !double.IsFinite(WeightDecay)) throw new ArgumentException($"WeightDecay must be ≥ 0; got {WeightDecay}", nameof(WeightDecay));
        if (TestSize < 1) throw new ArgumentException($"TestSize must be at least 1; got {TestSize}", nameof(TestSize));
        if (TrainSizes is null || TrainSizes.Any(t => t < 1)) throw new ArgumentException("TrainSizes must be positive", nameof(TrainSizes));
        if (MaxSize < TestSize || TrainSizes.Any(t => t > MaxSize))
            throw new ArgumentException($"MaxSize ({MaxSize}) must be at least TestSize ({TestSize}) and every TrainSizes value", nameof(MaxSize));
        if (AnchorSizes is not { Length: > 0 } || AnchorSizes.Any(a => !(a > 0) || !float.IsFinite(a))) throw new ArgumentException("AnchorSizes needs positive sizes", nameof(AnchorSizes));
        if (GroupNormGroups < 0) throw new ArgumentException($"GroupNormGroups must be ≥ 0; got {GroupNormGroups}", nameof(GroupNormGroups));
        if (FrozenStages < 0) throw new ArgumentException($"FrozenStages must be ≥ 0; got {FrozenStages}", nameof(FrozenStages));
        if (ClipGradientNorm is { } clip && !(clip > 0)) throw new ArgumentException($"ClipGradientNorm must be positive; got {clip}", nameof(ClipGradientNorm));
    }

    /// <summary>The detector configuration for <paramref name="classNames"/>.</summary>
    /// <exception cref="ArgumentException">An invalid property, an unknown variant or no classes.</exception>
    public DetectorConfig CreateConfig(IReadOnlyList<string> classNames)
    {
        Validate();
        var c = VariantCatalog.Create(Variant, Backbone, classNames, Width);
        c = c with
        {
            Input = c.Input with { MinSize = TestSize, MaxSize = MaxSize, TrainMinSizes = [.. TrainSizes] },
            Rpn = c.Rpn with { AnchorSizes = [.. AnchorSizes] },
            FrozenStages = FrozenStages,
            GroupNormGroups = GroupNormGroups,
        };
        if (SmallImageCounts)
        {
            c = c with
            {
                Rpn = c.Rpn with { PreNmsTopNTrain = 1000, PostNmsTopNTrain = 300, PreNmsTopNTest = 300, PostNmsTopNTest = 100 },
                RoiHeads = c.RoiHeads with { BatchSizePerImage = 32, PositiveFraction = 0.5f, FcDim = 256, Dropout = 0f },
                ContextSize = 7,
            };
        }
        if (ContextSize is int side) c = c with { ContextSize = side };
        return c;
    }

    /// <summary>
    /// The optimiser and schedule: linear warm-up from lr/10 over a tenth of the iterations (at most 200), then
    /// <see cref="Schedule"/>; SGD momentum 0.9.
    /// </summary>
    public TrainingOptions CreateTrainingOptions()
    {
        Validate();
        return new TrainingOptions
        {
            Optimizer = Optimizer,
            LearningRate = LearningRate,
            Momentum = 0.9,
            WeightDecay = WeightDecay,
            WarmupIterations = Math.Min(200, Math.Max(1, Iterations / 10)),
            WarmupFactor = 0.1,
            Steps = [Math.Max(1, (int)(0.8 * Iterations))],
            CosineIterations = Schedule == LearningRateSchedule.Cosine ? Iterations : 0,
            Gamma = 0.1,
            ClipGradientNorm = ClipGradientNorm,
        };
    }

    /// <summary>
    /// A freshly initialised detector of this recipe for <paramref name="classNames"/> (with <see cref="HeInitRoiHeads"/>
    /// applied), with the recipe's optimiser settings.
    /// </summary>
    /// <param name="classNames">Class names, in label order (e.g. the training set's <see cref="IDetectionDataset.ClassNames"/>).</param>
    /// <param name="device">Device (default CPU).</param>
    /// <param name="seed">Seed of the weights and of every step's random choices.</param>
    public Detector CreateDetector(IReadOnlyList<string> classNames, Device? device = null, ulong seed = 0)
    {
        var detector = Detector.Create(CreateConfig(classNames), device, seed, CreateTrainingOptions());
        if (HeInitRoiHeads) HeNormalRoiHeads(detector, seed);
        return detector;
    }

    /// <summary>
    /// The loop settings: <see cref="Iterations"/>, <see cref="BatchSize"/> and the seed of the data order and flips
    /// (<c>grcn train --seed N</c> gives the detector and the loop the same seed).
    /// </summary>
    public TrainerOptions CreateTrainerOptions(ulong seed = 0) => new() { Iterations = Iterations, BatchSize = BatchSize, Seed = seed };

    /// <summary>
    /// Redraws every 2-D <c>roi_head*.weight</c> (the fc layers of the RoI heads) of <paramref name="detector"/> from a
    /// normal distribution with σ = √(2 / fan_in) (<see cref="HeInitRoiHeads"/>); returns how many tensors.
    /// </summary>
    public static int HeNormalRoiHeads(Detector detector, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(detector);
        var rng = new Random(unchecked((int)(seed * 0x9E3779B1UL) ^ 0x5EED));
        int count = 0;
        foreach (var (name, p) in detector.Parameters)
        {
            if (!name.StartsWith("roi_head", StringComparison.Ordinal) || !name.EndsWith(".weight", StringComparison.Ordinal) || p.Value.Shape.Length != 2)
                continue;
            int outF = p.Value.Shape[0], fanIn = p.Value.Shape[1];
            var w = new float[outF * fanIn];
            double sigma = Math.Sqrt(2.0 / fanIn);
            // Box–Muller pairs
            for (int i = 0; i < w.Length; i += 2)
            {
                double r = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())), t = 2 * Math.PI * rng.NextDouble();
                w[i] = (float)(sigma * r * Math.Cos(t));
                if (i + 1 < w.Length) w[i + 1] = (float)(sigma * r * Math.Sin(t));
            }
            p.Load(w);
            count++;
        }
        return count;
    }
}
