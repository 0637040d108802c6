// A small detector must learn a handful of synthetic images (rectangles and discs drawn in
// code) until it detects them all: COCO AP50 ≥ 0.95 on those images.
using GRcn.Detection.Data;
using GRcn.Detection.Evaluation;
using GRcn.Detection.Model;
using GRcn.Detection.Training;

namespace GRcn.Detection.Tests.Model;

public sealed class OverfitTests
{
    /// <summary>The AP50 a detector must reach on the images it trained on.</summary>
    private const double RequiredAp50 = 0.95;

    [Theory]
    [InlineData("g-rcn")]
    [InlineData("faster-rcnn")]
    public void SmallDetectorOverfitsAHandfulOfImages(string variant)
    {
        var config = DetectorTests.Small(variant, width: 0.125);
        using var det = Detector.Create(config, seed: 2, options: new TrainingOptions { LearningRate = 0.01, WeightDecay = 1e-4, WarmupIterations = 20 });
        var images = TinyData.Batch(0, 4);
        double ap50 = 0;
        for (int round = 0; round < 24 && ap50 < RequiredAp50; round++)
        {
            for (int i = 0; i < 25; i++) det.TrainStep(i % 2 == 0 ? images[..2] : images[2..]);
            ap50 = Ap50(det, images);
        }
        Assert.True(ap50 >= RequiredAp50, $"{variant}: AP50 {ap50:F3} after {det.Iteration} steps");
    }

    private static double Ap50(Detector det, PreparedImage[] images)
    {
        var eval = new CocoEvaluator(TinyData.Classes);
        var dets = det.Detect(images);
        for (int i = 0; i < images.Length; i++)
        {
            var b = images[i].Boxes;
            var truth = images[i].Labels.Select((l, j) => new ObjectAnnotation(new Box(b[4 * j], b[4 * j + 1], b[4 * j + 2], b[4 * j + 3]), l)).ToArray();
            eval.AddImage(truth, dets[i]);
        }
        return eval.Evaluate().Summary.AP50;
    }
}
