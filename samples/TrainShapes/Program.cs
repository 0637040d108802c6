// Sample: train a small G-RCN on the built-in synthetic shapes through the public API
// (ShapesDataset, VariantCatalog, Detector, Trainer) and print its AP50 on the test split.
// The settings are grcn train's defaults (under ten CPU minutes on two cores).
//
//   dotnet run --project samples/TrainShapes -c Release [-- ITERATIONS [CHECKPOINT]]
using System.Diagnostics;
using GRcn.Detection.Data;
using GRcn.Detection.Model;
using GRcn.Detection.Training;
using GRcn.Detection.Variants;

int iterations = args.Length > 0 ? int.Parse(args[0]) : 10000;
string checkpoint = args.Length > 1 ? args[1] : "shapes-checkpoint.safetensors";

// 128×128 images of rectangles, ellipses, triangles, pluses and rings (12–64 pixels).
var train = new ShapesDataset(new ShapesOptions { Count = 4000, Split = ShapesSplit.Train });
var test = new ShapesDataset(new ShapesOptions { Count = 500, Split = ShapesSplit.Test });

// G-RCN with aligned RoIAlign on an eighth-width VGG16 with group norm after every convolution, sized for small images: anchors for 12–64 pixel objects,
// fewer proposals and RoIs than the paper's 600-pixel setting, a narrow fc head, and a
// context map as large as the 8×8 feature map. Training sees the images at their 128 pixels;
// detection upscales them to 160, where small objects cover more cells of the stride-16 map.
var config = VariantCatalog.Create("g-rcn+roi-align-v2", BackboneKind.Vgg16, train.ClassNames, width: 0.125);
config = config with
{
    Input = config.Input with { MinSize = 160, MaxSize = 266, TrainMinSizes = [128] },
    Rpn = config.Rpn with
    {
        AnchorSizes = [16, 32, 64, 128],
        PreNmsTopNTrain = 1000, PostNmsTopNTrain = 300, PreNmsTopNTest = 300, PostNmsTopNTest = 100,
    },
    RoiHeads = config.RoiHeads with { BatchSizePerImage = 32, PositiveFraction = 0.5f, FcDim = 256, Dropout = 0f },
    ContextSize = 7,
    GroupNormGroups = 32,
};

// AdamW, warm-up from lr/10, then a half-cosine decay to 0 at the last iteration.
var options = new TrainingOptions
{
    Optimizer = OptimizerKind.AdamW,
    LearningRate = 0.002,
    WeightDecay = 1e-4,
    WarmupIterations = Math.Min(200, Math.Max(1, iterations / 10)),
    WarmupFactor = 0.1,
    CosineIterations = iterations,
};

using var detector = Detector.Create(config, seed: 0, options: options);

// From scratch the fc head trains faster with He initialisation (σ = √(2 / fan_in)) than with
// PyTorch's nn.Linear default that the engine uses.
var random = new Random(0);
foreach (var (name, parameter) in detector.Parameters)
{
    if (!name.StartsWith("roi_head", StringComparison.Ordinal) || parameter.Value.Shape.Length != 2) continue;
    int fanIn = parameter.Value.Shape[1];
    var w = new float[parameter.Value.Shape[0] * fanIn];
    for (int i = 0; i < w.Length; i++)
        w[i] = (float)(Math.Sqrt(2.0 / fanIn) * Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
    parameter.Load(w);
}

var trainer = new Trainer(detector, train, test: null, new TrainerOptions { Iterations = iterations, BatchSize = 2, CheckpointEvery = 0 });
var clock = Stopwatch.StartNew();
trainer.Progress += p =>
{
    if (p.Iteration % 200 == 0 || p.Iteration == p.Total)
        Console.WriteLine($"iteration {p.Iteration}/{p.Total}  loss {p.Losses.Total:0.000}  {p.ImagesPerSecond:0.0} images/s");
};
trainer.Run();
Console.WriteLine($"trained in {clock.Elapsed:m\\:ss}; evaluating {test.Count} test images");

var report = Trainer.Evaluate(detector, test);
Console.WriteLine($"AP50 {report.Coco.Summary.AP50:0.000}  AP {report.Coco.Summary.AP:0.000}  VOC AP50 {report.Voc.MeanAp:0.000}");

detector.Save(checkpoint);
Console.WriteLine($"saved {checkpoint} (try: dotnet run --project samples/DetectImage -- {checkpoint})");
