// The outcome of a COCO bbox evaluation: pycocotools' accumulated precision [T, R, K, A, M] and
// recall [T, K, A, M] arrays (row-major), the summary metrics of summarize() plus AP70, and
// per-class AP / AP50 / AP70 / AP75 / AR100 (the per-category means detectron-style tools print).
// Every mean runs over the entries > −1 only and is −1 when there are none, as in pycocotools.
using System.Globalization;
using System.Text;

namespace GRcn.Detection.Evaluation;

/// <summary>
/// pycocotools' summary (its <c>stats</c> array, in the same order) plus AP70: AP at IoU 0.70,
/// area all, 100 detections. −1 where no ground truth exists for the setting.
/// </summary>
public sealed record CocoSummary(
    double AP, double AP50, double AP75, double APSmall, double APMedium, double APLarge,
    double AR1, double AR10, double AR100, double ARSmall, double ARMedium, double ARLarge,
    double AP70)
{
    /// <summary>The 12 values of pycocotools' <c>COCOeval.stats</c>, in its order (AP70 excluded).</summary>
    public double[] ToPycocotoolsStats() =>
        [AP, AP50, AP75, APSmall, APMedium, APLarge, AR1, AR10, AR100, ARSmall, ARMedium, ARLarge];
}

/// <summary>
/// One class's metrics at area all, 100 detections: AP (IoU .50:.95), AP at .50/.70/.75 and AR100;
/// −1 when the class has no non-crowd ground truth. <see cref="GroundTruthCount"/> counts non-crowd
/// objects, <see cref="DetectionCount"/> every detection given (before the 100-per-image cap).
/// </summary>
public sealed record CocoClassResult(
    int Label, long CategoryId, string Name, int GroundTruthCount, int DetectionCount,
    double AP, double AP50, double AP70, double AP75, double AR100);

/// <summary>Result of <see cref="CocoEvaluator.Evaluate()"/>.</summary>
public sealed class CocoEvaluationResult
{
    private readonly double[] _precision;
    private readonly double[] _recall;
    private readonly int _k;

    internal CocoEvaluationResult(string[] names, long[] categoryIds, int[] gtCounts, int[] dtCounts,
        double[] precision, double[] recall, int imageCount, int droppedDetections)
    {
        _precision = precision;
        _recall = recall;
        _k = names.Length;
        ImageCount = imageCount;
        DroppedDetections = droppedDetections;
        int t50 = CocoParameters.Iou50, t70 = CocoParameters.Iou70, t75 = CocoParameters.Iou75;
        Summary = new CocoSummary(
            AP: MeanPrecision(null, 0, 2), AP50: MeanPrecision(t50, 0, 2), AP75: MeanPrecision(t75, 0, 2),
            APSmall: MeanPrecision(null, 1, 2), APMedium: MeanPrecision(null, 2, 2), APLarge: MeanPrecision(null, 3, 2),
            AR1: MeanRecall(0, 0), AR10: MeanRecall(0, 1), AR100: MeanRecall(0, 2),
            ARSmall: MeanRecall(1, 2), ARMedium: MeanRecall(2, 2), ARLarge: MeanRecall(3, 2),
            AP70: MeanPrecision(t70, 0, 2));
        var perClass = new CocoClassResult[_k];
        for (int k = 0; k < _k; k++)
            perClass[k] = new CocoClassResult(k, categoryIds[k], names[k], gtCounts[k], dtCounts[k],
                MeanPrecision(null, 0, 2, k), MeanPrecision(t50, 0, 2, k), MeanPrecision(t70, 0, 2, k),
                MeanPrecision(t75, 0, 2, k), MeanRecall(0, 2, k));
        PerClass = perClass;
    }

    /// <summary>The summary metrics.</summary>
    public CocoSummary Summary { get; }

    /// <summary>Per-class metrics, by label.</summary>
    public IReadOnlyList<CocoClassResult> PerClass { get; }

    /// <summary>Number of images evaluated.</summary>
    public int ImageCount { get; }

    /// <summary>
    /// Results whose category id the ground truth does not list (COCO JSON path only): pycocotools
    /// drops them without a word; they are counted here.
    /// </summary>
    public int DroppedDetections { get; }

    /// <summary>
    /// Accumulated precision at IoU threshold <paramref name="iouIndex"/> (into
    /// <see cref="CocoParameters.IouThresholds"/>), recall threshold <paramref name="recallIndex"/>,
    /// class <paramref name="label"/>, area range <paramref name="areaIndex"/>, detection cap
    /// <paramref name="maxDetsIndex"/>; −1 without ground truth.
    /// </summary>
    public double GetPrecision(int iouIndex, int recallIndex, int label, int areaIndex, int maxDetsIndex)
    {
        int T = CocoParameters.IouThresholds.Length, R = CocoParameters.RecallThresholds.Length;
        int A = CocoParameters.AreaRanges.Length, M = CocoParameters.MaxDetections.Length;
        CheckIndex(iouIndex, T, nameof(iouIndex));
        CheckIndex(recallIndex, R, nameof(recallIndex));
        CheckIndex(label, _k, nameof(label));
        CheckIndex(areaIndex, A, nameof(areaIndex));
        CheckIndex(maxDetsIndex, M, nameof(maxDetsIndex));
        return _precision[(((iouIndex * R + recallIndex) * _k + label) * A + areaIndex) * M + maxDetsIndex];
    }

    /// <summary>Accumulated recall (the final recall of the sorted detections); −1 without ground truth.</summary>
    public double GetRecall(int iouIndex, int label, int areaIndex, int maxDetsIndex)
    {
        int T = CocoParameters.IouThresholds.Length, A = CocoParameters.AreaRanges.Length, M = CocoParameters.MaxDetections.Length;
        CheckIndex(iouIndex, T, nameof(iouIndex));
        CheckIndex(label, _k, nameof(label));
        CheckIndex(areaIndex, A, nameof(areaIndex));
        CheckIndex(maxDetsIndex, M, nameof(maxDetsIndex));
        return _recall[((iouIndex * _k + label) * A + areaIndex) * M + maxDetsIndex];
    }

    private static void CheckIndex(int i, int n, string name)
    {
        if ((uint)i >= (uint)n) throw new ArgumentOutOfRangeException(name, i, $"expected 0..{n - 1}");
    }

    /// <summary>_summarize(ap=1): mean of precision[t?, :, k?, a, m] over entries &gt; −1, else −1.</summary>
    private double MeanPrecision(int? iou, int a, int m, int? label = null)
    {
        int T = CocoParameters.IouThresholds.Length, R = CocoParameters.RecallThresholds.Length;
        int A = CocoParameters.AreaRanges.Length, M = CocoParameters.MaxDetections.Length;
        double sum = 0;
        long n = 0;
        for (int t = iou ?? 0; t < (iou is null ? T : iou.Value + 1); t++)
            for (int r = 0; r < R; r++)
                for (int k = label ?? 0; k < (label is null ? _k : label.Value + 1); k++)
                {
                    double v = _precision[(((t * R + r) * _k + k) * A + a) * M + m];
                    if (v > -1) { sum += v; n++; }
                }
        return n == 0 ? -1 : sum / n;
    }

    /// <summary>_summarize(ap=0) over all IoU thresholds: mean of recall[:, k?, a, m] over entries &gt; −1, else −1.</summary>
    private double MeanRecall(int a, int m, int? label = null)
    {
        int T = CocoParameters.IouThresholds.Length, A = CocoParameters.AreaRanges.Length, M = CocoParameters.MaxDetections.Length;
        double sum = 0;
        long n = 0;
        for (int t = 0; t < T; t++)
            for (int k = label ?? 0; k < (label is null ? _k : label.Value + 1); k++)
            {
                double v = _recall[((t * _k + k) * A + a) * M + m];
                if (v > -1) { sum += v; n++; }
            }
        return n == 0 ? -1 : sum / n;
    }

    /// <summary>
    /// pycocotools' summary lines (plus AP70), then a per-class table. Values print with 3
    /// decimals; −1 prints as -1.000 in the summary and as "-" in the table, as "no ground truth".
    /// </summary>
    public string ToTable()
    {
        var s = Summary;
        var sb = new StringBuilder();
        void Line(string kind, string iou, string area, int maxDets, double v) =>
            sb.Append(CultureInfo.InvariantCulture,
                $" {(kind == "AP" ? "Average Precision" : "Average Recall"),-18} ({kind}) @[ IoU={iou,-9} | area={area,6} | maxDets={maxDets,3} ] = {v:0.000}\n");
        Line("AP", "0.50:0.95", "all", 100, s.AP);
        Line("AP", "0.50", "all", 100, s.AP50);
        Line("AP", "0.75", "all", 100, s.AP75);
        Line("AP", "0.50:0.95", "small", 100, s.APSmall);
        Line("AP", "0.50:0.95", "medium", 100, s.APMedium);
        Line("AP", "0.50:0.95", "large", 100, s.APLarge);
        Line("AR", "0.50:0.95", "all", 1, s.AR1);
        Line("AR", "0.50:0.95", "all", 10, s.AR10);
        Line("AR", "0.50:0.95", "all", 100, s.AR100);
        Line("AR", "0.50:0.95", "small", 100, s.ARSmall);
        Line("AR", "0.50:0.95", "medium", 100, s.ARMedium);
        Line("AR", "0.50:0.95", "large", 100, s.ARLarge);
        Line("AP", "0.70", "all", 100, s.AP70);
        sb.Append('\n');
        var rows = new List<string[]>(PerClass.Count);
        foreach (var c in PerClass)
            rows.Add([c.Name, c.CategoryId.ToString(CultureInfo.InvariantCulture), c.GroundTruthCount.ToString(CultureInfo.InvariantCulture),
                c.DetectionCount.ToString(CultureInfo.InvariantCulture), MetricsTable.Cell(c.AP), MetricsTable.Cell(c.AP50),
                MetricsTable.Cell(c.AP70), MetricsTable.Cell(c.AP75), MetricsTable.Cell(c.AR100)]);
        MetricsTable.Render(sb, ["class", "id", "gt", "dets", "AP", "AP50", "AP70", "AP75", "AR100"], rows);
        return sb.ToString();
    }

    /// <inheritdoc/>
    public override string ToString() => ToTable();
}
