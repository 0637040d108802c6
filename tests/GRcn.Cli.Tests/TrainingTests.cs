// Pieces of the train path: torchvision backbone weights reach the backbone and the loc
// branch's copy (and mismatches are named), and the from-scratch He initialisation of the fc
// head draws weights of the intended spread.
using GRcn.Cli.Commands;
using GRcn.Cli.Training;
using GRcn.Detection.Data;
using GRcn.Detection.Model;
using GRcn.Detection.Training;
using GRcn.Detection.Variants;
using GRcn.Kernels;
using GRcn.Kernels.Serialization;

namespace GRcn.Cli.Tests;

public class TrainingTests
{
    private static Detector Make(ulong seed, double width = 0.0625) =>
        Detector.Create(VariantCatalog.Create("g-rcn", BackboneKind.Vgg16, ShapesDataset.ShapeClasses, width), seed: seed);

    private static float[] Values(Detector d, string name) => d.Parameters.Single(p => p.Name == name).Parameter.Value.ToArray<float>();

    /// <summary>A torchvision-named state dict (features.N.*) holding <paramref name="d"/>'s trunk, plus a classifier entry to be ignored.</summary>
    private static string WriteStateDict(Detector d, string dir)
    {
        string path = Path.Combine(dir, "vgg16.safetensors");
        var tensors = d.Parameters.Where(p => p.Name.StartsWith("backbone.", StringComparison.Ordinal))
            .Select(p => new KeyValuePair<string, Tensor>(p.Name["backbone.".Length..], p.Parameter.Value)).ToList();
        using var extra = Tensor.FromArray(new float[] { 1, 2, 3, 4 }, 2, 2);
        tensors.Add(new("classifier.0.weight", extra));
        SafeTensorsWriter.Write(path, tensors);
        return path;
    }

    [Fact]
    public void TorchvisionWeightsFillTheBackboneAndTheLocBranch()
    {
        using var tmp = new TempDir();
        using var source = Make(1);
        using var target = Make(2);
        string path = WriteStateDict(source, tmp.Path);
        Assert.NotEqual(Values(source, "backbone.features.0.weight"), Values(target, "backbone.features.0.weight"));
        int n = BackboneWeights.Load(target, path);
        Assert.Equal(source.Parameters.Count(p => p.Name.StartsWith("backbone", StringComparison.Ordinal)), n);
        Assert.Equal(Values(source, "backbone.features.0.weight"), Values(target, "backbone.features.0.weight"));
        Assert.Equal(Values(source, "backbone.features.28.bias"), Values(target, "backbone.features.28.bias"));
        // the loc branch's conv5 copy starts from the same pretrained conv5
        Assert.Equal(Values(source, "backbone.features.24.weight"), Values(target, "backbone_loc.features.24.weight"));
        // heads are not touched
        Assert.NotEqual(Values(source, "roi_head.fc6.weight"), Values(target, "roi_head.fc6.weight"));
    }

    [Fact]
    public void WeightsOfAnotherWidthAreRefusedWithTheReason()
    {
        using var tmp = new TempDir();
        using var source = Make(1, width: 0.125);
        using var target = Make(2);
        string path = WriteStateDict(source, tmp.Path);
        var before = Values(target, "backbone.features.0.weight");
        var e = Assert.Throws<InvalidDataException>(() => BackboneWeights.Load(target, path));
        Assert.Contains("--width 1", e.Message);
        Assert.Contains(path, e.Message);
        Assert.Equal(before, Values(target, "backbone.features.0.weight"));   // nothing loaded
    }

    [Fact]
    public void WeightsWithANonFiniteValueAreRefusedBeforeAnyIsLoaded()
    {
        using var tmp = new TempDir();
        using var source = Make(1);
        using var target = Make(2);
        var conv5 = source.Parameters.Single(p => p.Name == "backbone.features.28.weight").Parameter;
        var poisoned = conv5.Value.ToArray<float>();
        poisoned[17] = float.NaN;
        conv5.Load(poisoned);
        string path = WriteStateDict(source, tmp.Path);
        var before = Values(target, "backbone.features.0.weight");
        var e = Assert.Throws<InvalidDataException>(() => BackboneWeights.Load(target, path));
        Assert.Contains($"{path}: tensor 'features.28.weight' holds a non-finite value (NaN) at flat index 17", e.Message);
        Assert.Equal(before, Values(target, "backbone.features.0.weight"));   // the first layers were not loaded either
    }

    [Fact]
    public void TheDefaultShapesRunIsTheLibrarysShapesRecipe()
    {
        var json = new System.Text.Json.JsonSerializerOptions { IncludeFields = true };
        var cli = TrainSettings.DefaultsFor(DataSource.Parse("shapes"));
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(TrainingRecipe.Shapes, json), System.Text.Json.JsonSerializer.Serialize(cli.ToRecipe(), json));
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(TrainingRecipe.Shapes.CreateConfig(ShapesDataset.ShapeClasses), json),
            System.Text.Json.JsonSerializer.Serialize(cli.BuildConfig(ShapesDataset.ShapeClasses), json));
    }

    [Fact]
    public void HeInitialisationDrawsTheFcHeadWithSigmaRootTwoOverFanIn()
    {
        const double relativeTolerance = 0.03;   // ~ 200k draws: the sample σ is within 1 % of σ with overwhelming probability
        using var d = Make(3);
        Assert.Equal(2, TrainingRecipe.HeNormalRoiHeads(d, 3));
        var w = Values(d, "roi_head.fc6.weight");
        int fanIn = d.Parameters.Single(p => p.Name == "roi_head.fc6.weight").Parameter.Value.Shape[1];
        double mean = w.Average(v => (double)v);
        double sigma = Math.Sqrt(w.Average(v => ((double)v - mean) * ((double)v - mean)));
        Assert.Equal(Math.Sqrt(2.0 / fanIn), sigma, Math.Sqrt(2.0 / fanIn) * relativeTolerance);
        Assert.True(Math.Abs(mean) < 3 * sigma / Math.Sqrt(w.Length), $"mean {mean}");
    }

    [Fact]
    public void PretrainedRunsFreezeTheFirstStagesAndScratchRunsNone()
    {
        var scratch = TrainSettings.DefaultsFor(DataSource.Parse("shapes")).BuildConfig(ShapesDataset.ShapeClasses);
        var pretrained = (TrainSettings.DefaultsFor(DataSource.Parse("voc:/data/VOC2007")) with { Weights = "vgg16.safetensors" }).BuildConfig(["a"]);
        Assert.Equal(0, scratch.FrozenStages);
        Assert.Equal(2, pretrained.FrozenStages);
        Assert.Equal(7, scratch.ContextSize);
        Assert.Equal(14, pretrained.ContextSize);
        Assert.Equal([128f, 256f, 512f], pretrained.Rpn.AnchorSizes);
        Assert.Null(new TrainSettings { Weights = "w", Optimizer = "sgd" }.BuildTrainingOptions().ClipGradientNorm);
        Assert.Equal(1.0, new TrainSettings { Optimizer = "sgd" }.BuildTrainingOptions().ClipGradientNorm);
        Assert.Null(new TrainSettings().BuildTrainingOptions().ClipGradientNorm); // AdamW

        // shapes: group norm, AdamW and a cosine decay to 0; VOC and COCO: the paper's SGD with a step
        Assert.Equal(32, scratch.GroupNormGroups);
        Assert.Equal(0, pretrained.GroupNormGroups);
        var shapes = TrainSettings.DefaultsFor(DataSource.Parse("shapes")).BuildTrainingOptions();
        Assert.Equal(OptimizerKind.AdamW, shapes.Optimizer);
        Assert.Equal(0.0, shapes.LearningRateAt(10000), 12);
        var voc = TrainSettings.DefaultsFor(DataSource.Parse("voc:/data/VOC2007")).BuildTrainingOptions();
        Assert.Equal(OptimizerKind.Sgd, voc.Optimizer);
        Assert.Equal([144000], voc.Steps);
        Assert.Equal(0, voc.CosineIterations);
        Assert.Equal("--group-norm", Assert.Throws<ArgumentException>(() => new TrainSettings { GroupNorm = 8, Weights = "w" }.Validate()).ParamName);
        Assert.Equal("--optimizer", Assert.Throws<ArgumentException>(() => new TrainSettings { Optimizer = "adam" }.Validate()).ParamName);
    }

    [Fact]
    public void ShapesTrainAtOneSizeAndTestAtAnother()
    {
        // shapes: trained at 128, evaluated at 160 (docs/experiments.md); VOC: one size for both
        var shapes = TrainSettings.DefaultsFor(DataSource.Parse("shapes")).BuildConfig(ShapesDataset.ShapeClasses);
        Assert.Equal((160, 266), (shapes.Input.MinSize, shapes.Input.MaxSize));
        Assert.Equal([128], shapes.Input.TrainMinSizes);
        var voc = TrainSettings.DefaultsFor(DataSource.Parse("voc:/data/VOC2007")).BuildConfig(["a"]);
        Assert.Equal((600, 1000), (voc.Input.MinSize, voc.Input.MaxSize));
        Assert.Empty(voc.Input.TrainMinSizes);
        Assert.Equal("--train-sizes", Assert.Throws<ArgumentException>(() => new TrainSettings { TrainSizes = [128, 16] }.Validate()).ParamName);
        Assert.Equal("--train-sizes", Assert.Throws<ArgumentException>(() => new TrainSettings { TrainSizes = [300] }.Validate()).ParamName);
    }

    [Theory]
    [InlineData("", 160, new[] { 128 }, 266)]
    [InlineData("--size 96", 96, new int[0], 160)]
    [InlineData("--train-sizes 128 160", 160, new[] { 128, 160 }, 266)]
    [InlineData("--size 128 --train-sizes 96 192", 128, new[] { 96, 192 }, 320)]
    public void SizeOptionsResolve(string args, int size, int[] trainSizes, int maxSize)
    {
        var options = new TrainOptions();
        var command = new System.CommandLine.Command("train");
        options.AddTo(command);
        var s = options.Resolve(command.Parse(args), null, 0, "out", false);
        Assert.Equal((size, maxSize), (s.Size, s.MaxSize));
        Assert.Equal(trainSizes, s.TrainSizes);
    }
}
