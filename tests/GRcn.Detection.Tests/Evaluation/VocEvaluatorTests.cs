using GRcn.Detection.Data;
using GRcn.Detection.Evaluation;

namespace GRcn.Detection.Tests.Evaluation;

/// <summary>VocEvaluator: hand-derived cases (values worked out in the comments) and the voc_eval.py oracle.</summary>
public class VocEvaluatorTests
{
    /// <summary>Hand values are short rationals; only rounding of the final sums separates them.</summary>
    private const double HandTolerance = 1e-12;

    /// <summary>Same double operations as the numpy oracle, different summation order in voc_ap's np.sum.</summary>
    private const double OracleTolerance = 1e-12;

    private static ObjectAnnotation Gt(float x1, float y1, float x2, float y2, int label = 0, bool difficult = false) =>
        new(new Box(x1, y1, x2, y2), label, difficult);

    private static DetectedObject Dt(float x1, float y1, float x2, float y2, float score, int label = 0) =>
        new(new Box(x1, y1, x2, y2), score, label);

    private static VocEvaluator One(VocEvaluatorOptions? o, ObjectAnnotation[] gt, params DetectedObject[] dt)
    {
        var ev = new VocEvaluator(["a"], o);
        ev.AddImage(gt, dt);
        return ev;
    }

    [Fact]
    public void PerfectDetectionIsApOne()
    {
        // One 10×10 (with +1) object, one identical detection: rec = [1], prec = [1] → AP 1 on both metrics.
        var r = One(null, [Gt(0, 0, 9, 9)], Dt(0, 0, 9, 9, 0.9f)).Evaluate();
        Assert.Equal(1.0, r.PerClass[0].Ap, HandTolerance);
        Assert.Equal(1.0, r.PerClass[0].Ap11Point, HandTolerance);
        Assert.Equal(1.0, r.MeanAp, HandTolerance);
    }

    [Fact]
    public void TpFpTpGivesAreaAndElevenPointValues()
    {
        // Two objects; TP (0.9), FP (0.8), TP (0.7): rec = [.5, .5, 1], prec = [1, .5, 2/3].
        // Area: envelope [1, 1, 2/3, 2/3]; recall steps 0→.5 (×1) and .5→1 (×2/3) → 0.5 + 1/3 = 5/6.
        // 11-point: t = 0 … 0.5 (6 points) max prec 1; t = 0.6 … 1.0 (5 points) 2/3 → (6 + 10/3) / 11 = 28/33.
        var r = One(null, [Gt(0, 0, 9, 9), Gt(50, 50, 59, 59)],
            Dt(0, 0, 9, 9, 0.9f), Dt(100, 100, 109, 109, 0.8f), Dt(50, 50, 59, 59, 0.7f)).Evaluate();
        Assert.Equal(5.0 / 6.0, r.PerClass[0].Ap, HandTolerance);
        Assert.Equal(28.0 / 33.0, r.PerClass[0].Ap11Point, HandTolerance);
        Assert.Equal(2, r.PerClass[0].TruePositives);
        Assert.Equal(1, r.PerClass[0].FalsePositives);
    }

    [Fact]
    public void ElevenPointDiffersFromAreaWhenRecallStopsShort()
    {
        // Three objects, one TP: rec = [1/3], prec = [1]. Area: 1/3 · 1 = 1/3.
        // 11-point: t ∈ {0, .1, .2, .30000000000000004} have rec ≥ t → 4 / 11.
        var r = One(null, [Gt(0, 0, 9, 9), Gt(50, 50, 59, 59), Gt(80, 80, 89, 89)], Dt(0, 0, 9, 9, 0.9f)).Evaluate();
        Assert.Equal(1.0 / 3.0, r.PerClass[0].Ap, HandTolerance);
        Assert.Equal(4.0 / 11.0, r.PerClass[0].Ap11Point, HandTolerance);
    }

    [Fact]
    public void ElevenPointUsesArangeThresholds()
    {
        // Ten objects, three found first: rec = [.1, .2, .3]. 3 · 0.1 = 0.30000000000000004 > 0.3, so the
        // t = 0.3 point sees no recall ≥ t: 11-point AP = 3/11 (t = 0, .1, .2), not 4/11.
        var gt = Enumerable.Range(0, 10).Select(i => Gt(i * 20, 0, i * 20 + 9, 9)).ToArray();
        var dt = Enumerable.Range(0, 3).Select(i => Dt(i * 20, 0, i * 20 + 9, 9, 0.9f - i * 0.1f)).ToArray();
        var r = One(null, gt, dt).Evaluate();
        Assert.Equal(3.0 / 11.0, r.PerClass[0].Ap11Point, HandTolerance);
        Assert.Equal(0.3, r.PerClass[0].Ap, HandTolerance);    // 3 steps of 0.1 at precision 1
    }

    [Fact]
    public void DifficultObjectsAreNeitherCountedNorPenalised()
    {
        // A difficult object and a normal one. The best-scoring detection (and a duplicate of it) sits on the
        // difficult object: both ignored. The third hits the normal object: TP. npos = 1 → rec = [1], prec = [1].
        var gt = new[] { Gt(0, 0, 9, 9, difficult: true), Gt(50, 50, 59, 59) };
        var r = One(null, gt, Dt(0, 0, 9, 9, 0.95f), Dt(0, 0, 9, 9, 0.9f), Dt(50, 50, 59, 59, 0.8f)).Evaluate();
        var c = r.PerClass[0];
        Assert.Equal(1.0, c.Ap, HandTolerance);
        Assert.Equal(1, c.GroundTruthCount);
        Assert.Equal(1, c.DifficultCount);
        Assert.Equal(1, c.TruePositives);
        Assert.Equal(0, c.FalsePositives);

        // The same data with the object not difficult: the duplicate becomes an FP and npos = 2:
        // TP, FP, TP → 5/6 as in TpFpTpGivesAreaAndElevenPointValues.
        var plain = One(null, [Gt(0, 0, 9, 9), Gt(50, 50, 59, 59)], Dt(0, 0, 9, 9, 0.95f), Dt(0, 0, 9, 9, 0.9f), Dt(50, 50, 59, 59, 0.8f)).Evaluate();
        Assert.Equal(5.0 / 6.0, plain.PerClass[0].Ap, HandTolerance);
    }

    [Fact]
    public void BestOverlapOnDifficultHidesASecondCandidate()
    {
        // voc_eval.py looks only at the best-overlap object: a detection overlapping a difficult object more
        // than a free normal one is ignored, not matched to the normal one. The normal object stays missed.
        // IoU (+1): det [0,0,9,9] vs difficult [0,0,9,9] = 1; vs normal [2,0,11,9] = 80/120 = 2/3 > 0.5.
        var gt = new[] { Gt(0, 0, 9, 9, difficult: true), Gt(2, 0, 11, 9) };
        var r = One(null, gt, Dt(0, 0, 9, 9, 0.9f)).Evaluate();
        Assert.Equal(0.0, r.PerClass[0].Ap, HandTolerance);
        Assert.Equal(0, r.PerClass[0].TruePositives);
        Assert.Equal(0, r.PerClass[0].FalsePositives);
    }

    [Fact]
    public void DuplicateDetectionIsFalsePositive()
    {
        // One object, two detections on it: TP then FP. rec = [1, 1], prec = [1, .5] → AP 1 (both metrics),
        // but the duplicate is counted as an FP.
        var r = One(null, [Gt(0, 0, 9, 9)], Dt(0, 0, 9, 9, 0.9f), Dt(0, 0, 9, 9, 0.8f)).Evaluate();
        Assert.Equal(1.0, r.PerClass[0].Ap, HandTolerance);
        Assert.Equal(1, r.PerClass[0].FalsePositives);

        // Reversed ranking does not matter for identical boxes; a disjoint FP ranked first halves precision:
        // rec = [0, 1], prec = [0, .5] → AP .5 both ways.
        var r2 = One(null, [Gt(0, 0, 9, 9)], Dt(100, 100, 109, 109, 0.9f), Dt(0, 0, 9, 9, 0.8f)).Evaluate();
        Assert.Equal(0.5, r2.PerClass[0].Ap, HandTolerance);
        Assert.Equal(0.5, r2.PerClass[0].Ap11Point, HandTolerance);
    }

    [Fact]
    public void ThresholdIsStrictByDefaultAndInclusiveOnRequest()
    {
        // +1 convention: object [0,0,9,9] is 10×10 = 100 px; detection [0,0,4,9] is 5×10 = 50 px inside it:
        // IoU = 50 / 100 = 0.5 exactly. voc_eval.py: 0.5 > 0.5 is false → FP → AP 0. MATLAB devkit (≥) → TP.
        var gt = new[] { Gt(0, 0, 9, 9) };
        var dt = Dt(0, 0, 4, 9, 0.9f);
        Assert.Equal(0.0, One(null, gt, dt).Evaluate().PerClass[0].Ap, HandTolerance);
        Assert.Equal(1.0, One(new VocEvaluatorOptions(InclusiveThreshold: true), gt, dt).Evaluate().PerClass[0].Ap, HandTolerance);
    }

    [Fact]
    public void PlusOnePixelConventionChangesOverlap()
    {
        // Boxes [0,0,1,1] and [1,1,2,2] touch at a corner. Continuous: IoU 0. +1 (pixels 0..1 and 1..2):
        // intersection 1×1 = 1, union 4 + 4 − 1 = 7 → 1/7. At threshold 0.1 only the +1 reading matches.
        var gt = new[] { Gt(0, 0, 1, 1) };
        var dt = Dt(1, 1, 2, 2, 0.9f);
        Assert.Equal(1.0, One(new VocEvaluatorOptions(IouThreshold: 0.1), gt, dt).Evaluate().PerClass[0].Ap, HandTolerance);
        Assert.Equal(0.0, One(new VocEvaluatorOptions(IouThreshold: 0.1, PlusOnePixel: false), gt, dt).Evaluate().PerClass[0].Ap, HandTolerance);
    }

    [Fact]
    public void Ap70NeedsTighterBoxes()
    {
        // Object 10×10 (+1); detection [0,0,5,9] covers 6×10 = 60 → IoU 0.6: TP at 0.5, FP at 0.7.
        var ev = One(null, [Gt(0, 0, 9, 9)], Dt(0, 0, 5, 9, 0.9f));
        Assert.Equal(1.0, ev.Evaluate().MeanAp, HandTolerance);
        var r70 = ev.Evaluate(0.7);
        Assert.Equal(0.0, r70.MeanAp, HandTolerance);
        Assert.Equal(0.7, r70.Options.IouThreshold);
    }

    [Fact]
    public void ClassesWithoutPositivesAreMinusOneAndLeftOutOfTheMean()
    {
        // Class a: AP 1. Class b: detections only (no objects) → −1. Class c: one missed object → AP 0.
        // Mean over a and c: 0.5.
        var ev = new VocEvaluator(["a", "b", "c"]);
        ev.AddImage([Gt(0, 0, 9, 9, 0), Gt(50, 50, 59, 59, 2)], [Dt(0, 0, 9, 9, 0.9f, 0), Dt(0, 0, 9, 9, 0.8f, 1)]);
        ev.AddImage([], [Dt(5, 5, 20, 20, 0.7f, 1)]);
        var r = ev.Evaluate();
        Assert.Equal(-1.0, r.PerClass[1].Ap);
        Assert.Equal(0.0, r.PerClass[2].Ap, HandTolerance);
        Assert.Equal(0.5, r.MeanAp, HandTolerance);
        Assert.Equal(0.5, r.MeanAp11Point, HandTolerance);
        Assert.Equal(2, ev.ImageCount);
        var table = r.ToTable();
        Assert.Contains("mean", table);
        Assert.Contains("0.500", table);
    }

    [Fact]
    public void DetectionsOnOtherImagesDoNotMatch()
    {
        // The object is in image 0, the perfect box is reported for image 1: FP; AP 0.
        var ev = new VocEvaluator(["a"]);
        ev.AddImage([Gt(0, 0, 9, 9)], []);
        ev.AddImage([], [Dt(0, 0, 9, 9, 0.9f)]);
        Assert.Equal(0.0, ev.Evaluate().PerClass[0].Ap, HandTolerance);
    }

    [Fact]
    public void InvalidArgumentsNameTheParameter()
    {
        var ev = new VocEvaluator(["a"]);
        Assert.Equal("groundTruth", Assert.Throws<ArgumentException>(() => ev.AddImage([Gt(0, 0, 1, 1, label: 1)], [])).ParamName);
        Assert.Equal("detections", Assert.Throws<ArgumentException>(() => ev.AddImage([], [Dt(0, 0, 1, 1, float.NaN)])).ParamName);
        Assert.Equal("options", Assert.Throws<ArgumentException>(() => new VocEvaluator(["a"], new VocEvaluatorOptions(IouThreshold: 1.5))).ParamName);
        Assert.Equal("classNames", Assert.Throws<ArgumentException>(() => new VocEvaluator([])).ParamName);
    }

    [Theory]
    [MemberData(nameof(OracleFixture.VocNames), MemberType = typeof(OracleFixture))]
    public void MatchesVocEvalOracle(string name)
    {
        // The oracle reads iscrowd as difficult, as VocEvaluator does with IsCrowd.
        var c = OracleFixture.Case(name);
        var (names, images) = OracleFixture.InMemory(c);
        var ev = new VocEvaluator(names);
        foreach (var (gt, dt) in images) ev.AddImage(gt, dt);
        foreach (var thr in new[] { 0.5, 0.7 })
        {
            var expected = c.GetProperty("voc").GetProperty(thr.ToString("0.0", System.Globalization.CultureInfo.InvariantCulture)).EnumerateArray().ToArray();
            var r = ev.Evaluate(thr);
            for (int k = 0; k < expected.Length; k++)
            {
                double area = expected[k].GetProperty("ap_area").GetDouble(), p11 = expected[k].GetProperty("ap_11").GetDouble();
                Assert.True(Math.Abs(area - r.PerClass[k].Ap) <= OracleTolerance, $"{name} @{thr}: class {k} AP {r.PerClass[k].Ap}, oracle {area}");
                Assert.True(Math.Abs(p11 - r.PerClass[k].Ap11Point) <= OracleTolerance, $"{name} @{thr}: class {k} AP11 {r.PerClass[k].Ap11Point}, oracle {p11}");
            }
        }
    }
}
