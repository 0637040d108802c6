using GRcn.Detection.Data;
using GRcn.Detection.Evaluation;

namespace GRcn.Detection.Tests.Evaluation;

/// <summary>
/// CocoEvaluator on cases small enough to work out by hand (the derivation is in each comment);
/// none of them depends on the oracle fixture.
/// </summary>
public class CocoEvaluatorTests
{
    /// <summary>Hand values are short rationals; only the rounding of the final means separates them.</summary>
    private const double HandTolerance = 1e-12;

    private static ObjectAnnotation Gt(float x, float y, float w, float h, int label = 0, bool crowd = false) =>
        new(new Box(x, y, x + w, y + h), label, IsCrowd: crowd);

    private static DetectedObject Dt(float x, float y, float w, float h, float score, int label = 0) =>
        new(new Box(x, y, x + w, y + h), score, label);

    private static CocoSummary Single(ObjectAnnotation[] gt, params DetectedObject[] dt)
    {
        var ev = new CocoEvaluator(["a"]);
        ev.AddImage(gt, dt);
        return ev.Evaluate().Summary;
    }

    [Fact]
    public void OnePerfectDetectionIsOneEverywhereItsAreaAllows()
    {
        // A 100×100 object (area 10000 ≥ 96², "large") and an identical detection: IoU 1 at every threshold,
        // rc = [1], pr = [1] → precision 1 at all 101 recall thresholds → AP = AR = 1. Small / medium have no
        // ground truth → −1.
        var s = Single([Gt(10, 10, 100, 100)], Dt(10, 10, 100, 100, 0.9f));
        foreach (var v in new[] { s.AP, s.AP50, s.AP75, s.AP70, s.APLarge, s.AR1, s.AR10, s.AR100, s.ARLarge })
            Assert.Equal(1.0, v, HandTolerance);
        foreach (var v in new[] { s.APSmall, s.APMedium, s.ARSmall, s.ARMedium })
            Assert.Equal(-1.0, v);
    }

    [Fact]
    public void TruePositiveThenFalsePositiveKeepsApOne()
    {
        // Sorted: TP (0.9), FP (0.8). tp = [1, 1], fp = [0, 1] → rc = [1, 1], pr = [1, 1/2]; every recall
        // threshold finds index 0 → precision 1 → AP 1. AR100 = 1; AR1 = 1 (the TP is first).
        var s = Single([Gt(0, 0, 50, 50)], Dt(0, 0, 50, 50, 0.9f), Dt(200, 200, 50, 50, 0.8f));
        Assert.Equal(1.0, s.AP, HandTolerance);
        Assert.Equal(1.0, s.AR1, HandTolerance);
    }

    [Fact]
    public void FalsePositiveThenTruePositiveHalvesPrecision()
    {
        // Sorted: FP (0.9), TP (0.8). rc = [0, 1], pr = [0, 1/2] → made monotone: [1/2, 1/2] → every recall
        // threshold reads 1/2 → AP 0.5. AR1 keeps only the FP → 0; AR10 = 1.
        var s = Single([Gt(0, 0, 50, 50)], Dt(200, 200, 50, 50, 0.9f), Dt(0, 0, 50, 50, 0.8f));
        Assert.Equal(0.5, s.AP, HandTolerance);
        Assert.Equal(0.0, s.AR1, HandTolerance);
        Assert.Equal(1.0, s.AR10, HandTolerance);
        Assert.Equal(1.0, s.AR100, HandTolerance);
    }

    [Fact]
    public void HalfRecallReachesFiftyOneOfTheRecallThresholds()
    {
        // Two objects, one found: rc = [1/2], pr = [1]. Recall thresholds 0, .01, …, .50 (51 of them; 50·0.01
        // rounds to exactly 0.5) find index 0 → 1; the other 50 fall past the end → 0. AP = 51/101, AR = 1/2.
        var s = Single([Gt(0, 0, 50, 50), Gt(100, 0, 50, 50)], Dt(0, 0, 50, 50, 0.9f));
        Assert.Equal(51.0 / 101.0, s.AP, HandTolerance);
        Assert.Equal(0.5, s.AR100, HandTolerance);
    }

    [Fact]
    public void IouSixTenthsMatchesThreeOfTenThresholds()
    {
        // Object [0,0,10,10], detection [0,0,6,10]: IoU = 60/100 = 0.6 exactly; it matches at 0.50, 0.55 and
        // 0.60 (a match needs IoU ≥ threshold) → AP = 3/10, AP50 = 1, AP70 = AP75 = 0; AR100 = 3/10.
        var s = Single([Gt(0, 0, 10, 10)], Dt(0, 0, 6, 10, 0.9f));
        Assert.Equal(0.3, s.AP, HandTolerance);
        Assert.Equal(1.0, s.AP50, HandTolerance);
        Assert.Equal(0.0, s.AP70, HandTolerance);
        Assert.Equal(0.0, s.AP75, HandTolerance);
        Assert.Equal(0.3, s.AR100, HandTolerance);
    }

    [Fact]
    public void CrowdRegionAbsorbsDetectionsWithoutCounting()
    {
        // A crowd region [0,0,100,100], a regular object far away, and, ranked first, two detections inside
        // the crowd: crowd IoU = intersection / detection area = 1 → both ignored. The TP comes third:
        // counted dets are just the TP → rc = [1], pr = [1] → AP 1 (a non-crowd single-use reading would
        // make the second one an FP and give 1/2).
        var s = Single([Gt(0, 0, 100, 100, crowd: true), Gt(300, 300, 20, 20)],
            Dt(10, 10, 20, 20, 0.95f), Dt(50, 50, 20, 20, 0.9f), Dt(300, 300, 20, 20, 0.8f));
        Assert.Equal(1.0, s.AP, HandTolerance);

        // Only a crowd region: no non-ignored ground truth anywhere → every metric −1.
        var none = Single([Gt(0, 0, 100, 100, crowd: true)], Dt(10, 10, 20, 20, 0.9f));
        Assert.All(none.ToPycocotoolsStats(), v => Assert.Equal(-1.0, v));
        Assert.Equal(-1.0, none.AP70);
    }

    [Fact]
    public void AreaRangesSplitObjectsBySize()
    {
        // A 10×10 object (area 100, small) found exactly, a 50×50 one (2500, medium) missed.
        // small: AP 1; medium: recall 0 → AP 0; large: no GT → −1. all: rc = [1/2] → 51/101 (see above).
        // For "medium" the small object is ignored (area 100 < 32²) and sorted last; the detection, with IoU 0
        // to the medium object, matches that ignored object and is ignored too: medium has no FP, only the miss.
        var s = Single([Gt(0, 0, 10, 10), Gt(100, 100, 50, 50)], Dt(0, 0, 10, 10, 0.9f));
        Assert.Equal(1.0, s.APSmall, HandTolerance);
        Assert.Equal(0.0, s.APMedium, HandTolerance);
        Assert.Equal(-1.0, s.APLarge);
        Assert.Equal(51.0 / 101.0, s.AP, HandTolerance);
        Assert.Equal(1.0, s.ARSmall, HandTolerance);
        Assert.Equal(0.0, s.ARMedium, HandTolerance);
    }

    [Fact]
    public void MeanRunsOverClassesWithGroundTruthOnly()
    {
        // Class 0: TP first → AP 1. Class 1: FP then TP → AP 1/2. Class 2: detections but no GT → −1,
        // left out. Mean AP = (1 + 1/2) / 2 = 3/4.
        var ev = new CocoEvaluator(["a", "b", "c"]);
        ev.AddImage([Gt(0, 0, 50, 50, 0), Gt(100, 100, 50, 50, 1)],
            [Dt(0, 0, 50, 50, 0.9f, 0), Dt(300, 300, 50, 50, 0.9f, 1), Dt(100, 100, 50, 50, 0.8f, 1), Dt(0, 0, 5, 5, 0.5f, 2)]);
        var r = ev.Evaluate();
        Assert.Equal(0.75, r.Summary.AP, HandTolerance);
        Assert.Equal(1.0, r.PerClass[0].AP, HandTolerance);
        Assert.Equal(0.5, r.PerClass[1].AP, HandTolerance);
        Assert.Equal(-1.0, r.PerClass[2].AP);
        Assert.Equal(1, r.PerClass[2].DetectionCount);
        Assert.Equal(0, r.PerClass[2].GroundTruthCount);
    }

    [Fact]
    public void OnlyTheHundredBestDetectionsPerImageCount()
    {
        // 100 disjoint FPs scored above the single TP: the TP is the 101st of its image and is cut →
        // recall 0, AP 0. With 99 FPs the TP is 100th: rc reaches 1 at index 99 with precision 1/100 → AP 0.01.
        ObjectAnnotation[] gt = [Gt(0, 0, 20, 20)];
        DetectedObject[] Dets(int fps) =>
            [.. Enumerable.Range(0, fps).Select(i => Dt(1000 + 30 * i, 1000, 20, 20, 0.9f)), Dt(0, 0, 20, 20, 0.1f)];
        Assert.Equal(0.0, Single(gt, Dets(100)).AR100, HandTolerance);
        Assert.Equal(0.0, Single(gt, Dets(100)).AP, HandTolerance);
        Assert.Equal(1.0, Single(gt, Dets(99)).AR100, HandTolerance);
        Assert.Equal(0.01, Single(gt, Dets(99)).AP, HandTolerance);
    }

    [Fact]
    public void DuplicateDetectionsAreFalsePositivesButTiesKeepInsertionOrder()
    {
        // Two objects; image order: a FP then a TP, both at score 0.5, then the second TP at 0.4.
        // Stable sort keeps FP before TP: tp = [0, 1, 2], fp = [1, 1, 1] → pr = [0, 1/2, 2/3], rc = [0, 1/2, 1]
        // → monotone pr = [2/3, 2/3, 2/3] → AP 2/3. Swapping the tied pair: pr = [1, 1/2, 2/3] → monotone
        // [1, 2/3, 2/3]; thresholds 0 … .50 read 1 (51 of them), .51 … 1 read 2/3 → (51 + 50·2/3)/101.
        ObjectAnnotation[] gt = [Gt(0, 0, 20, 20), Gt(100, 0, 20, 20)];
        var fp = Dt(500, 500, 20, 20, 0.5f);
        var tp1 = Dt(0, 0, 20, 20, 0.5f);
        var tp2 = Dt(100, 0, 20, 20, 0.4f);
        Assert.Equal(2.0 / 3.0, Single(gt, fp, tp1, tp2).AP50, HandTolerance);
        Assert.Equal((51 + 50 * 2.0 / 3.0) / 101, Single(gt, tp1, fp, tp2).AP50, HandTolerance);
        // A duplicate of a found object is an FP: TP, dup (FP), TP → same as the swapped case.
        Assert.Equal((51 + 50 * 2.0 / 3.0) / 101, Single(gt, tp1, Dt(0, 0, 20, 20, 0.45f), tp2).AP50, HandTolerance);
    }

    [Fact]
    public void ImagesWithNothingChangeNothing()
    {
        // Empty images between two perfect ones leave AP at 1; an image with only an FP ranked first halves it.
        var ev = new CocoEvaluator(["a"]);
        ev.AddImage([Gt(0, 0, 50, 50)], [Dt(0, 0, 50, 50, 0.8f)]);
        ev.AddImage([], []);
        ev.AddImage([Gt(0, 0, 50, 50)], [Dt(0, 0, 50, 50, 0.7f)]);
        Assert.Equal(1.0, ev.Evaluate().Summary.AP, HandTolerance);
        ev.AddImage([], [Dt(0, 0, 50, 50, 0.9f)]);
        // Sorted: FP (0.9), TP, TP → pr = [0, 1/2, 2/3] → monotone 2/3 everywhere.
        Assert.Equal(2.0 / 3.0, ev.Evaluate().Summary.AP, HandTolerance);
        Assert.Equal(4, ev.ImageCount);
    }

    [Fact]
    public void NoImagesGiveMinusOne()
    {
        var r = new CocoEvaluator(["a"]).Evaluate();
        Assert.All(r.Summary.ToPycocotoolsStats(), v => Assert.Equal(-1.0, v));
        Assert.Equal(-1.0, r.PerClass[0].AP);
    }

    [Fact]
    public void DifficultIsIgnoredUnlessAskedToActAsCrowd()
    {
        // A difficult object and no detection: as a plain object it is missed (AP 0); as a crowd region it is
        // ignored and nothing is left to evaluate (−1).
        ObjectAnnotation[] gt = [new(new Box(0, 0, 50, 50), 0, Difficult: true)];
        var plain = new CocoEvaluator(["a"]);
        plain.AddImage(gt, []);
        Assert.Equal(0.0, plain.Evaluate().Summary.AP, HandTolerance);
        var asCrowd = new CocoEvaluator(["a"], difficultAsCrowd: true);
        asCrowd.AddImage(gt, []);
        Assert.Equal(-1.0, asCrowd.Evaluate().Summary.AP);
    }

    [Fact]
    public void AccessorsAndTableReportTheArrays()
    {
        var ev = new CocoEvaluator(["person"]);
        ev.AddImage([Gt(0, 0, 10, 10)], [Dt(0, 0, 6, 10, 0.9f)]);
        var r = ev.Evaluate();
        // IoU 0.6: matched at thresholds 0..2 (0.50, 0.55, 0.60), not from 0.65 on.
        Assert.Equal(1.0, r.GetPrecision(2, 100, 0, 0, 2), HandTolerance);   // 1 / (1 + 2^−52)
        Assert.Equal(0.0, r.GetPrecision(3, 0, 0, 0, 2));
        Assert.Equal(1.0, r.GetRecall(2, 0, 1, 0));
        Assert.Equal(-1.0, r.GetRecall(0, 0, 3, 2));   // no large object
        Assert.Throws<ArgumentOutOfRangeException>(() => r.GetPrecision(10, 0, 0, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => r.GetRecall(0, 1, 0, 0));
        string table = r.ToTable();
        Assert.Contains("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.300", table);
        Assert.Contains("Average Precision  (AP) @[ IoU=0.70      | area=   all | maxDets=100 ] = 0.000", table);
        Assert.Contains("Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = -1.000", table);
        Assert.Contains("person", table);
    }

    [Fact]
    public void InvalidArgumentsNameTheParameter()
    {
        var ev = new CocoEvaluator(["a", "b"]);
        Assert.Equal("groundTruth", Assert.Throws<ArgumentException>(() => ev.AddImage([Gt(0, 0, 1, 1, label: 2)], [])).ParamName);
        Assert.Equal("detections", Assert.Throws<ArgumentException>(() => ev.AddImage([], [Dt(0, 0, 1, 1, 0.5f, label: -1)])).ParamName);
        Assert.Equal("detections", Assert.Throws<ArgumentException>(() => ev.AddImage([], [Dt(0, 0, 1, 1, float.PositiveInfinity)])).ParamName);
        Assert.Equal("groundTruth", Assert.Throws<ArgumentException>(() => ev.AddImage([new ObjectAnnotation(new Box(float.NaN, 0, 1, 1), 0)], [])).ParamName);
        Assert.Equal("classNames", Assert.Throws<ArgumentException>(() => new CocoEvaluator([])).ParamName);
        Assert.Equal(0, ev.ImageCount);   // rejected images are not added
    }
}
