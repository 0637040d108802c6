// The package consumer of .ci/packages.sh: through PackageReferences only, runs a kernel
// (RoiAlign forward and backward), trains a small detector of the shapes recipe for a few steps,
// detects with a threshold, and round-trips a checkpoint; exits non-zero on any mismatch.
using GRcn.Detection.Data;
using GRcn.Detection.Model;
using GRcn.Detection.Training;
using GRcn.Kernels;

var features = new float[1 * 8 * 10 * 12];
for (int i = 0; i < features.Length; i++) features[i] = i % 7;
using var x = Tensor.FromArray(features, 1, 8, 10, 12);
using var rois = Tensor.FromArray(new float[] { 0, 8, 8, 120, 90 }, 1, 5);
var options = new RoiAlignOptions(7, 7, SpatialScale: 1.0 / 16, SamplingRatio: 2, Aligned: true);
using var pooled = RoiAlign.Forward(x, rois, options);
using var dx = RoiAlign.Backward(pooled, rois, x.Shape, options);
if (!pooled.Shape.SequenceEqual([1, 8, 7, 7]) || !dx.Shape.SequenceEqual(x.Shape)) throw new Exception("RoiAlign shapes");

var recipe = TrainingRecipe.Shapes with { Width = 0.0625, TestSize = 64, TrainSizes = [64], MaxSize = 64, Iterations = 3 };
var train = new ShapesDataset(new ShapesOptions { Count = 8, Width = 64, Height = 64, MinObjectSize = 12, MaxObjectSize = 32 });
using var detector = recipe.CreateDetector(train.ClassNames, seed: 1);
var result = new Trainer(detector, train, test: null, recipe.CreateTrainerOptions(seed: 1)).Run();
var detections = detector.Detect(train.Load(0).Image, scoreThreshold: 0.1f);
if (detections.Any(d => d.Score < 0.1f || d.ClassName != train.ClassNames[d.Label])) throw new Exception("Detect threshold or class names");
string checkpoint = Path.Combine(Path.GetTempPath(), $"grcn-consumer-{Environment.ProcessId}.safetensors");
try
{
    detector.Save(checkpoint);
    using var loaded = Detector.Load(checkpoint);
    if (loaded.Iteration != 3) throw new Exception($"checkpoint iteration {loaded.Iteration}");
}
finally
{
    File.Delete(checkpoint);
}
Console.WriteLine($"consumer: RoiAlign {pooled.ShapeString}, {result.Iterations} training steps, {detections.Count} detections ≥ 0.1, checkpoint round trip: ok");
