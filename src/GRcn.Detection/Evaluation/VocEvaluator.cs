// Pascal VOC detection AP per class and its mean, as py-faster-rcnn's voc_eval.py computes it
// (the Python port of the VOC devkit used by Faster R-CNN and its descendants):
// * per class, all detections of all images sorted by descending score (stable: ties keep the
//   order they were added — voc_eval.py uses numpy's unstable quicksort there);
// * each detection takes the ground truth of its image with the highest IoU (first on ties),
//   whether difficult or already taken; above the threshold it is ignored if that object is
//   difficult, a TP if the object is still free (the object is then taken), an FP if taken
//   (duplicate); at or below the threshold, or with no object of its class, an FP;
// * the comparison is strict (IoU > threshold, voc_eval.py's `ovmax > ovthresh`); the MATLAB
//   devkit's VOCevaldet uses ≥ — VocEvaluatorOptions.InclusiveThreshold selects that;
// * IoU uses VOC's inclusive pixel convention by default: width = x2 − x1 + 1 (boxes are
//   inclusive pixel index ranges, as the devkit's XML boxes are); PlusOnePixel = false measures
//   continuous boxes (width = x2 − x1) instead;
// * recall = tp / npos (npos = non-difficult objects), precision = tp / max(tp + fp, 2^−52);
//   AP "area" = VOC2010+ all-points area under the monotone envelope, AP "11-point" = VOC2007's
//   mean of the max precision at recall ≥ 0, 0.1, …, 1 (np.arange(0, 1.1, 0.1) values).
// Objects flagged IsCrowd are treated like difficult ones. A class with no non-difficult object
// gets AP −1 (voc_eval.py would divide by zero) and is left out of the mean.
//
// Parallelism: Evaluate() runs classes in parallel (Parallel.For), each class independently.
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using GRcn.Detection.Data;

namespace GRcn.Detection.Evaluation;

/// <summary>VOC evaluation settings.</summary>
/// <param name="IouThreshold">IoU a detection must exceed (0.5 for VOC AP50; 0.7 for the G-RCN paper's AP70).</param>
/// <param name="PlusOnePixel">VOC's inclusive pixel convention in IoU (w = x2 − x1 + 1), as the official code; false for continuous boxes.</param>
/// <param name="InclusiveThreshold">Match at IoU ≥ threshold (MATLAB devkit) instead of &gt; (voc_eval.py).</param>
public sealed record VocEvaluatorOptions(double IouThreshold = 0.5, bool PlusOnePixel = true, bool InclusiveThreshold = false);

/// <summary>One class's VOC result: AP under the all-points (VOC2010+) and 11-point (VOC2007) metrics, −1 without positives.</summary>
public sealed record VocClassResult(int Label, string Name, int GroundTruthCount, int DifficultCount, int DetectionCount,
    int TruePositives, int FalsePositives, double Ap, double Ap11Point);

/// <summary>Result of <see cref="VocEvaluator.Evaluate()"/>.</summary>
public sealed record VocEvaluationResult(VocEvaluatorOptions Options, double MeanAp, double MeanAp11Point, IReadOnlyList<VocClassResult> PerClass)
{
    /// <summary>A plain-text table: one row per class, then the means.</summary>
    public string ToTable()
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture,
            $"VOC AP @ IoU {(Options.InclusiveThreshold ? "≥" : ">")} {Options.IouThreshold:0.00}{(Options.PlusOnePixel ? " (+1 pixel widths)" : "")}\n");
        var rows = new List<string[]>(PerClass.Count + 1);
        foreach (var c in PerClass)
            rows.Add([c.Name, c.GroundTruthCount.ToString(CultureInfo.InvariantCulture), c.DifficultCount.ToString(CultureInfo.InvariantCulture),
                c.DetectionCount.ToString(CultureInfo.InvariantCulture), c.TruePositives.ToString(CultureInfo.InvariantCulture),
                MetricsTable.Cell(c.Ap), MetricsTable.Cell(c.Ap11Point)]);
        rows.Add(["mean", "", "", "", "", MetricsTable.Cell(MeanAp), MetricsTable.Cell(MeanAp11Point)]);
        MetricsTable.Render(sb, ["class", "gt", "difficult", "dets", "tp", "AP", "AP 11-pt"], rows);
        return sb.ToString();
    }

    /// <inheritdoc/>
    public override string ToString() => ToTable();
}

/// <summary>
/// Collects ground truth and detections image by image and computes Pascal VOC AP. Not
/// thread-safe while adding; evaluate as often as needed, at any threshold.
/// </summary>
public sealed class VocEvaluator
{
    private readonly string[] _names;
    private readonly VocEvaluatorOptions _options;
    // Per class: objects and detections of all images, each tagged with its image index.
    private readonly List<(Box Box, bool Difficult, int Image)>[] _gt;
    private readonly List<(Box Box, float Score, int Image)>[] _dt;
    private int _images;

    /// <summary>An evaluator for <paramref name="classNames"/>.Count classes (labels 0..K−1).</summary>
    public VocEvaluator(IReadOnlyList<string> classNames, VocEvaluatorOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(classNames);
        if (classNames.Count == 0) throw new ArgumentException("expected at least one class name", nameof(classNames));
        _options = options ?? new VocEvaluatorOptions();
        CheckOptions(_options, nameof(options));
        _names = [.. classNames];
        _gt = new List<(Box, bool, int)>[_names.Length];
        _dt = new List<(Box, float, int)>[_names.Length];
        for (int k = 0; k < _names.Length; k++) { _gt[k] = []; _dt[k] = []; }
    }

    /// <summary>Number of images added.</summary>
    public int ImageCount => _images;

    /// <summary>The options <see cref="Evaluate()"/> uses.</summary>
    public VocEvaluatorOptions Options => _options;

    private static void CheckOptions(VocEvaluatorOptions o, string param)
    {
        if (!(o.IouThreshold >= 0 && o.IouThreshold <= 1))
            throw new ArgumentException($"IouThreshold = {o.IouThreshold}, expected a value in [0, 1]", param);
    }

    /// <summary>Adds one image's ground truth (difficult and crowd objects are ignored) and detections.</summary>
    public void AddImage(IReadOnlyList<ObjectAnnotation> groundTruth, IReadOnlyList<DetectedObject> detections)
    {
        EvaluationInput.Validate(groundTruth, detections, _names.Length);
        foreach (var o in groundTruth) _gt[o.Label].Add((o.Box, o.Difficult || o.IsCrowd, _images));
        foreach (var d in detections) _dt[d.Label].Add((d.Box, d.Score, _images));
        _images++;
    }

    /// <summary>AP per class and mean with the evaluator's options.</summary>
    public VocEvaluationResult Evaluate() => Evaluate(_options);

    /// <summary>AP per class and mean at another IoU threshold (e.g. 0.7 for AP70), other options unchanged.</summary>
    public VocEvaluationResult Evaluate(double iouThreshold) => Evaluate(_options with { IouThreshold = iouThreshold });

    /// <summary>AP per class and mean with <paramref name="options"/>.</summary>
    public VocEvaluationResult Evaluate(VocEvaluatorOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        CheckOptions(options, nameof(options));
        var perClass = new VocClassResult[_names.Length];
        Parallel.For(0, _names.Length, k => perClass[k] = EvaluateClass(k, options));
        double sum = 0, sum11 = 0;
        int n = 0;
        foreach (var c in perClass)
            if (c.Ap >= 0) { sum += c.Ap; sum11 += c.Ap11Point; n++; }
        return new VocEvaluationResult(options, n > 0 ? sum / n : -1, n > 0 ? sum11 / n : -1, perClass);
    }

    private VocClassResult EvaluateClass(int k, VocEvaluatorOptions options)
    {
        var gts = CollectionsMarshal.AsSpan(_gt[k]);
        var dts = CollectionsMarshal.AsSpan(_dt[k]);
        // Objects grouped by image: start[i] .. start[i + 1] index byImage (class_recs[image]).
        var start = new int[_images + 1];
        foreach (var g in gts) start[g.Image + 1]++;
        for (int i = 0; i < _images; i++) start[i + 1] += start[i];
        var byImage = new int[gts.Length];
        var fill = (int[])start.Clone();
        int npos = 0, difficult = 0;
        for (int j = 0; j < gts.Length; j++)
        {
            byImage[fill[gts[j].Image]++] = j;
            if (gts[j].Difficult) difficult++;
            else npos++;
        }

        var order = new int[dts.Length];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        var scores = new float[dts.Length];
        for (int i = 0; i < scores.Length; i++) scores[i] = dts[i].Score;
        order.AsSpan().Sort(new DescendingScore(scores));

        var taken = new bool[gts.Length];
        var tp = new double[dts.Length];
        var fp = new double[dts.Length];
        double plus = options.PlusOnePixel ? 1.0 : 0.0;
        int tpCount = 0, fpCount = 0;
        for (int d = 0; d < order.Length; d++)
        {
            var det = dts[order[d]];
            var bb = det.Box;
            double ovmax = double.NegativeInfinity;
            int jmax = -1;
            for (int p = start[det.Image]; p < start[det.Image + 1]; p++)
            {
                var g = gts[byImage[p]].Box;
                double iw = Math.Max(Math.Min((double)g.X2, bb.X2) - Math.Max((double)g.X1, bb.X1) + plus, 0.0);
                double ih = Math.Max(Math.Min((double)g.Y2, bb.Y2) - Math.Max((double)g.Y1, bb.Y1) + plus, 0.0);
                double inters = iw * ih;
                double uni = ((double)bb.X2 - bb.X1 + plus) * ((double)bb.Y2 - bb.Y1 + plus)
                             + ((double)g.X2 - g.X1 + plus) * ((double)g.Y2 - g.Y1 + plus) - inters;
                double ov = inters / uni;
                // np.max / np.argmax: the first maximum; a NaN overlap (0/0 for empty boxes) wins, as in numpy.
                if (jmax < 0 || ov > ovmax || (double.IsNaN(ov) && !double.IsNaN(ovmax)))
                {
                    ovmax = ov;
                    jmax = p;
                }
            }
            bool above = options.InclusiveThreshold ? ovmax >= options.IouThreshold : ovmax > options.IouThreshold;
            if (above)
            {
                int j = byImage[jmax];
                if (!gts[j].Difficult)
                {
                    if (!taken[j]) { tp[d] = 1; taken[j] = true; tpCount++; }
                    else { fp[d] = 1; fpCount++; }
                }
            }
            else
            {
                fp[d] = 1;
                fpCount++;
            }
        }

        if (npos == 0)
            return new VocClassResult(k, _names[k], 0, difficult, dts.Length, tpCount, fpCount, -1, -1);
        // cumulative sums → recall and precision
        var rec = new double[order.Length];
        var prec = new double[order.Length];
        double ctp = 0, cfp = 0;
        for (int i = 0; i < order.Length; i++)
        {
            ctp += tp[i];
            cfp += fp[i];
            rec[i] = ctp / npos;
            prec[i] = ctp / Math.Max(ctp + cfp, Eps);
        }
        return new VocClassResult(k, _names[k], npos, difficult, dts.Length, tpCount, fpCount,
            AreaAp(rec, prec), ElevenPointAp(rec, prec));
    }

    /// <summary>np.finfo(np.float64).eps.</summary>
    private const double Eps = 2.220446049250313e-16;

    /// <summary>voc_ap(use_07_metric=False): area under the monotone precision envelope, summed where recall changes.</summary>
    internal static double AreaAp(ReadOnlySpan<double> rec, ReadOnlySpan<double> prec)
    {
        int n = rec.Length;
        // mrec = [0, rec, 1], mpre = [0, prec, 0]
        var mrec = new double[n + 2];
        var mpre = new double[n + 2];
        rec.CopyTo(mrec.AsSpan(1));
        prec.CopyTo(mpre.AsSpan(1));
        mrec[n + 1] = 1;
        for (int i = n + 1; i > 0; i--) mpre[i - 1] = Math.Max(mpre[i - 1], mpre[i]);
        double ap = 0;
        for (int i = 0; i <= n; i++)
            if (mrec[i + 1] != mrec[i]) ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1];
        return ap;
    }

    /// <summary>voc_ap(use_07_metric=True): Σ over t in np.arange(0, 1.1, 0.1) (t = i·0.1) of max(prec[rec ≥ t]) / 11.</summary>
    internal static double ElevenPointAp(ReadOnlySpan<double> rec, ReadOnlySpan<double> prec)
    {
        double ap = 0;
        for (int i = 0; i <= 10; i++)
        {
            double t = i * 0.1;
            double p = 0;
            bool any = false;
            for (int j = 0; j < rec.Length; j++)
                if (rec[j] >= t && (!any || prec[j] > p)) { p = prec[j]; any = true; }
            ap += p / 11.0;
        }
        return ap;
    }

    /// <summary>Descending score, ties by ascending index (a stable sort on −score).</summary>
    private readonly struct DescendingScore(float[] scores) : IComparer<int>
    {
        public int Compare(int x, int y)
        {
            int c = scores[y].CompareTo(scores[x]);
            return c != 0 ? c : x.CompareTo(y);
        }
    }
}
