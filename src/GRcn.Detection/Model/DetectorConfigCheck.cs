// The one validation of a DetectorConfig (and of TrainingOptions), shared by Detector.Create (ArgumentException) and
// Detector.Load (InvalidDataException naming the checkpoint): every reference is present, every
// enum value is defined, and every count, size and threshold lies in a range the network can be
// built and run with (bounds far above any paper setting but below sizes that exhaust memory or
// overflow 32-bit index arithmetic).
using GRcn.Detection.Training;
using GRcn.Detection.Variants;

namespace GRcn.Detection.Model;

internal static class DetectorConfigCheck
{
    /// <summary>Largest shorter image side (MinSize and every training size).</summary>
    public const int MaxImageSide = 4096;

    /// <summary>Largest longer image side.</summary>
    public const int MaxLongerSide = 8192;

    /// <summary>Largest backbone width multiplier.</summary>
    public const double MaxWidth = 4;

    /// <summary>Throws <see cref="ArgumentException"/> (parameter <paramref name="name"/>) naming the first invalid field of <paramref name="c"/>.</summary>
    public static void Validate(DetectorConfig c, string name)
    {
        ArgumentNullException.ThrowIfNull(c, name);
        void Fail(string message) => throw new ArgumentException($"config.{message}", name);
        void Range(string field, double value, double lo, double hi)
        {
            if (!(value >= lo && value <= hi)) Fail($"{field} must be in [{lo}, {hi}]; got {value}");
        }
        void Enum<T>(string field, T value) where T : struct, System.Enum
        {
            if (!System.Enum.IsDefined(value)) Fail($"{field} has no value {Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture)}");
        }

        if (string.IsNullOrEmpty(c.Variant)) Fail("Variant must be named");
        if (c.ClassNames is null || c.ClassNames.Length < 1) Fail("ClassNames must name at least one class");
        if (c.ClassNames!.Length > 100_000) Fail($"ClassNames has {c.ClassNames.Length} classes, more than 100000");
        if (c.ClassNames.Any(n => n is null)) Fail("ClassNames must not hold null");
        Enum("Backbone", c.Backbone);
        Enum("ClsPool4", c.ClsPool4);
        Enum("LocPool4", c.LocPool4);
        Enum("ResNetLayout", c.ResNetLayout);
        Enum("Head", c.Head);
        Enum("Pooler", c.Pooler);
        if (!(c.Width > 0 && c.Width <= MaxWidth)) Fail($"Width must be in (0, {MaxWidth}]; got {c.Width}");
        Range("ResNetSplitBlocks", c.ResNetSplitBlocks, 0, 64);
        Range("ContextSize", c.ContextSize, 1, 256);
        Range("ContextHeads", c.ContextHeads, 1, 64);
        Range("HarmonicIouGamma", c.HarmonicIouGamma, 0, 100);
        Range("GroupNormGroups", c.GroupNormGroups, 0, 4096);
        if (c.GroupNormGroups > 0 && c.Backbone != BackboneKind.Vgg16)
            Fail($"GroupNormGroups applies to the VGG16 backbone only (ResNets have batch norm); got {c.Backbone}");
        Range("FrozenStages", c.FrozenStages, 0, 5);

        var input = c.Input;
        if (input is null) Fail("Input must be set");
        Range("Input.MinSize", input!.MinSize, 1, MaxImageSide);
        Range("Input.MaxSize", input.MaxSize, input.MinSize, MaxLongerSide);
        if (input.TrainMinSizes is null) Fail("Input.TrainMinSizes must be a list (empty: MinSize)");
        foreach (int s in input.TrainMinSizes!) Range("Input.TrainMinSizes", s, 1, Math.Min(MaxImageSide, input.MaxSize));
        if (input.Mean is not { Length: 3 } || input.Mean.Any(v => !float.IsFinite(v))) Fail("Input.Mean must be 3 finite values");
        if (input.Std is not { Length: 3 } || input.Std.Any(v => !(v > 0 && float.IsFinite(v)))) Fail("Input.Std must be 3 positive finite values");
        Range("Input.SizeDivisible", input.SizeDivisible, 1, 1024);

        var rpn = c.Rpn;
        if (rpn is null) Fail("Rpn must be set");
        if (rpn!.AnchorSizes is null || rpn.AnchorSizes.Count is < 1 or > 64 || rpn.AnchorSizes.Any(a => !(a > 0 && a <= 1e5f)))
            Fail("Rpn.AnchorSizes must be 1 to 64 sizes in (0, 100000]");
        if (rpn.AspectRatios is null || rpn.AspectRatios.Count is < 1 or > 64 || rpn.AspectRatios.Any(a => !(a > 0 && a <= 1e3f)))
            Fail("Rpn.AspectRatios must be 1 to 64 ratios in (0, 1000]");
        Range("Rpn.PreNmsTopNTrain", rpn.PreNmsTopNTrain, 1, 1_000_000);
        Range("Rpn.PreNmsTopNTest", rpn.PreNmsTopNTest, 1, 1_000_000);
        Range("Rpn.PostNmsTopNTrain", rpn.PostNmsTopNTrain, 1, 1_000_000);
        Range("Rpn.PostNmsTopNTest", rpn.PostNmsTopNTest, 1, 1_000_000);
        Range("Rpn.NmsThreshold", rpn.NmsThreshold, 0, 1);
        Range("Rpn.FgIouThreshold", rpn.FgIouThreshold, 0, 1);
        Range("Rpn.BgIouThreshold", rpn.BgIouThreshold, 0, 1);
        Range("Rpn.BatchSizePerImage", rpn.BatchSizePerImage, 1, 1_000_000);
        Range("Rpn.PositiveFraction", rpn.PositiveFraction, 0, 1);
        Range("Rpn.MinSize", rpn.MinSize, 0, 1e5);
        var (wx, wy, ww, wh) = rpn.BoxWeights;
        foreach (double w in new[] { wx, wy, ww, wh }) Range("Rpn.BoxWeights", w, 1e-6, 1e6);
        Range("Rpn.SmoothL1Beta", rpn.SmoothL1Beta, 0, 1e6);
        Range("Rpn.ScoreThreshold", rpn.ScoreThreshold, 0, 1);

        var roi = c.RoiHeads;
        if (roi is null) Fail("RoiHeads must be set");
        Range("RoiHeads.BatchSizePerImage", roi!.BatchSizePerImage, 1, 1_000_000);
        Range("RoiHeads.PositiveFraction", roi.PositiveFraction, 0, 1);
        Range("RoiHeads.FgIouThreshold", roi.FgIouThreshold, 0, 1);
        Range("RoiHeads.BgIouHigh", roi.BgIouHigh, 0, 1);
        Range("RoiHeads.BgIouLow", roi.BgIouLow, 0, roi.BgIouHigh);
        if (roi.BoxWeights is not { Length: 4 } || roi.BoxWeights.Any(w => !(w >= 1e-6f && w <= 1e6f)))
            Fail("RoiHeads.BoxWeights must be 4 values in [1e-6, 1e6]");
        Range("RoiHeads.SmoothL1Beta", roi.SmoothL1Beta, 0, 1e6);
        Range("RoiHeads.ScoreThreshold", roi.ScoreThreshold, 0, 1);
        Range("RoiHeads.NmsThreshold", roi.NmsThreshold, 0, 1);
        Range("RoiHeads.DetectionsPerImage", roi.DetectionsPerImage, 1, 100_000);
        Range("RoiHeads.PoolSize", roi.PoolSize, 1, 64);
        Range("RoiHeads.FcDim", roi.FcDim, 1, 16384);
        if (!(roi.Dropout >= 0 && roi.Dropout < 1)) Fail($"RoiHeads.Dropout must be in [0, 1); got {roi.Dropout}");
    }

    /// <summary>Throws <see cref="ArgumentException"/> (parameter <paramref name="name"/>) naming the first invalid field of <paramref name="o"/>.</summary>
    public static void Validate(TrainingOptions o, string name)
    {
        ArgumentNullException.ThrowIfNull(o, name);
        void Range(string field, double value, double lo, double hi)
        {
            if (!(value >= lo && value <= hi)) throw new ArgumentException($"options.{field} must be in [{lo}, {hi}]; got {value}", name);
        }

        if (!System.Enum.IsDefined(o.Optimizer)) throw new ArgumentException($"options.Optimizer has no value {(int)o.Optimizer}", name);
        Range("LearningRate", o.LearningRate, 0, 1e6);
        Range("Momentum", o.Momentum, 0, 1);
        Range("Beta1", o.Beta1, 0, 1);
        Range("Beta2", o.Beta2, 0, 1);
        Range("Epsilon", o.Epsilon, 0, 1);
        Range("WeightDecay", o.WeightDecay, 0, 1e6);
        Range("WarmupIterations", o.WarmupIterations, 0, int.MaxValue);
        Range("WarmupFactor", o.WarmupFactor, 0, 1e6);
        if (o.Steps is null) throw new ArgumentException("options.Steps must be a list (empty: no steps)", name);
        foreach (int s in o.Steps) Range("Steps", s, 0, int.MaxValue);
        Range("Gamma", o.Gamma, 0, 1e6);
        Range("CosineIterations", o.CosineIterations, 0, int.MaxValue);
        if (o.ClipGradientNorm is double clip) Range("ClipGradientNorm", clip, double.Epsilon, 1e30);
    }
}
