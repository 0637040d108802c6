// The options grcn train and grcn compare share, and their resolution into TrainSettings:
// every option left out takes the default of the chosen data (TrainSettings.DefaultsFor).
using System.CommandLine;
using GRcn.Cli.Training;
using GRcn.Detection.Variants;

namespace GRcn.Cli.Commands;

internal sealed class TrainOptions
{
    public readonly Option<string> Data = new("--data") { Description = DataSource.Help, DefaultValueFactory = _ => "shapes" };
    public readonly Option<string> Backbone = new("--backbone") { Description = "vgg16, resnet50 or resnet101", DefaultValueFactory = _ => "vgg16" };
    public readonly Option<double?> Width = new("--width") { Description = "Backbone channel width multiplier (default: 0.125 on shapes, 1 otherwise; pretrained --weights need 1)" };
    public readonly Option<int?> GroupNorm = new("--group-norm") { Description = "VGG16: group norm with G groups after every convolution, 0 for none (default: 32 when training from scratch, 0 with --weights)" };
    public readonly Option<string?> Weights = new("--weights") { Description = "torchvision weights (safetensors state dict) to start from: a backbone, or a whole FasterRCNN of the faster-rcnn layouts (docs/torchvision-weights.md); default: from scratch" };
    public readonly Option<int?> Iterations = new("--iters") { Description = "Training iterations (default: 10000 on shapes, 180000 on VOC, 320000 on COCO)" };
    public readonly Option<int?> Batch = new("--batch") { Description = "Images per iteration (default: 2 on shapes, 1 otherwise)" };
    public readonly Option<double?> LearningRate = new("--lr") { Description = "Base learning rate, reached after a linear warm-up from lr/10 (default: 0.002 on shapes, 0.001 otherwise)" };
    public readonly Option<string?> Optimizer = new("--optimizer") { Description = "sgd (momentum 0.9, the paper's) or adamw (default: adamw on shapes, sgd otherwise)" };
    public readonly Option<string?> Schedule = new("--schedule") { Description = "Learning-rate decay after the warm-up: step (×0.1 at 80 % of the iterations) or cosine (half-cosine to 0 at the end; default: cosine on shapes, step otherwise)" };
    public readonly Option<int?> Size = new("--size") { Description = "Shorter image side after resizing at evaluation, and in training unless --train-sizes is given; the longer side is at most 5/3 of the largest shorter side (default: 160 on shapes, 240 on shapes-large, 600 otherwise)" };
    public readonly Option<int[]?> TrainSizes = new("--train-sizes") { Description = "Training's shorter image sides, one drawn per batch (several: multi-scale training; default: 128 on shapes, 240 on shapes-large, --size otherwise)", AllowMultipleArgumentsPerToken = true };
    public readonly Option<float[]?> Anchors = new("--anchors") { Description = "Anchor sizes in input pixels (default: 16 32 64 128 on shapes, 16 … 256 on shapes-large, 128 256 512 on VOC, 32 … 512 on COCO)", AllowMultipleArgumentsPerToken = true };
    public readonly Option<string> Device = DeviceOption.Create();
    public readonly Option<int?> Threads = new("--threads") { Description = "CPU threads (default: all logical cores)" };
    public readonly Option<int?> TrainImages = new("--train-images") { Description = "Synthetic training images (default 4000)" };
    public readonly Option<int?> TestImages = new("--test-images") { Description = "Synthetic test images (default 500)" };
    public readonly Option<int?> EvalEvery = new("--eval-every") { Description = "Evaluate every N iterations on --eval-limit test images (0: only the final evaluation on the whole test set; default 2000 on shapes)" };
    public readonly Option<int?> EvalLimit = new("--eval-limit") { Description = "Test images of the periodic evaluations (default 100)" };
    public readonly Option<int?> CheckpointEvery = new("--checkpoint-every") { Description = "Write OUT/checkpoint.safetensors every N iterations (0: only at the end; default 1000 on shapes)" };
    public readonly Option<int?> LogEvery = new("--log-every") { Description = "When the output is not a terminal: print a progress line every N iterations (default 100)" };

    /// <summary>Adds the shared options to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { Data, Backbone, Width, GroupNorm, Weights, Iterations, Batch, LearningRate, Optimizer, Schedule, Size, TrainSizes, Anchors, Device, Threads,
                     TrainImages, TestImages, EvalEvery, EvalLimit, CheckpointEvery, LogEvery })
            command.Options.Add(o);
    }

    /// <summary>The settings of one run of <paramref name="variant"/> (null: the data's default) with seed <paramref name="seed"/> into <paramref name="outDir"/>.</summary>
    /// <exception cref="ArgumentException">An option's value is invalid.</exception>
    public TrainSettings Resolve(ParseResult p, string? variant, ulong seed, string outDir, bool resume)
    {
        var data = DataSource.Parse(p.GetValue(Data)!);
        var d = TrainSettings.DefaultsFor(data);
        int? sizeGiven = p.GetValue(Size);
        int[]? trainGiven = p.GetValue(TrainSizes) is { Length: > 0 } ts ? ts : null;
        int size = sizeGiven ?? d.Size;
        // --train-sizes as given; with only --size, training uses that size too
        int[] trainSizes = trainGiven ?? (sizeGiven is null ? d.TrainSizes : []);
        var s = d with
        {
            Variant = variant ?? d.Variant,
            Backbone = VariantCatalog.ParseBackbone(p.GetValue(Backbone)!),
            Width = p.GetValue(Width) ?? d.Width,
            Weights = p.GetValue(Weights),
            GroupNorm = p.GetValue(GroupNorm),
            Iterations = p.GetValue(Iterations) ?? d.Iterations,
            BatchSize = p.GetValue(Batch) ?? d.BatchSize,
            LearningRate = p.GetValue(LearningRate) ?? d.LearningRate,
            Schedule = p.GetValue(Schedule) ?? d.Schedule,
            Optimizer = p.GetValue(Optimizer) ?? d.Optimizer,
            Size = size,
            TrainSizes = trainSizes,
            MaxSize = sizeGiven is null && trainGiven is null ? d.MaxSize : TrainSettings.LongerSideFor(trainSizes.Append(size).Max()),
            Anchors = p.GetValue(Anchors) is { Length: > 0 } a ? a : d.Anchors,
            Device = p.GetValue(Device)!,
            Seed = seed,
            OutputDirectory = outDir,
            Resume = resume,
            Threads = p.GetValue(Threads),
            TrainImages = p.GetValue(TrainImages) ?? d.TrainImages,
            TestImages = p.GetValue(TestImages) ?? d.TestImages,
            EvaluateEvery = p.GetValue(EvalEvery) ?? d.EvaluateEvery,
            EvaluationLimit = p.GetValue(EvalLimit) ?? d.EvaluationLimit,
            CheckpointEvery = p.GetValue(CheckpointEvery) ?? d.CheckpointEvery,
            LogEvery = p.GetValue(LogEvery) ?? d.LogEvery,
        };
        // the device is opened here, before any data: one that cannot be used is an invalid option (exit code 2)
        _ = DeviceOption.Open(s.Device);
        if (s.Weights is not null && !File.Exists(s.Weights)) throw new ArgumentException($"--weights: {s.Weights} does not exist", "--weights");
        // the variant name is checked here, before any data is opened
        _ = VariantCatalog.Create(s.Variant, s.Backbone, ["x"], s.Width);
        s.Validate();
        return s;
    }

    /// <summary>A folder name for a variant ("conv(2,2,2)/loc" → "conv_2_2_2_loc").</summary>
    public static string Slug(string variant)
    {
        var chars = variant.Select(ch => char.IsAsciiLetterOrDigit(ch) || ch is '-' or '+' ? ch : '_').ToArray();
        return new string(chars).Trim('_').Replace("__", "_", StringComparison.Ordinal);
    }
}
