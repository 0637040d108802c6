// The metrics grcn prints and writes: the paper's columns (COCO AP, AP50, AP70, AP75, APs,
// APm, APl) plus VOC AP50, AP at each COCO IoU threshold (mean over classes and recall
// thresholds, pycocotools' averaging) for AP-against-IoU plots, an aligned text table, and
// metrics.json. −1 (pycocotools' "no ground truth in this range") prints as "-" and is written
// as null.
using System.Globalization;
using System.Text;
using System.Text.Json;
using GRcn.Detection.Evaluation;
using GRcn.Detection.Training;

namespace GRcn.Cli.Reporting;

/// <summary>One evaluation's headline metrics (fractions in [0, 1], −1 where undefined).</summary>
internal sealed record MetricsSummary(double AP, double AP50, double AP70, double AP75, double APs, double APm, double APl, double VocAP50)
{
    /// <summary>Column names, in <see cref="Values"/> order.</summary>
    public static readonly string[] Columns = ["AP", "AP50", "AP70", "AP75", "APs", "APm", "APl", "VOC AP50"];

    /// <summary>The metrics in <see cref="Columns"/> order.</summary>
    public double[] Values => [AP, AP50, AP70, AP75, APs, APm, APl, VocAP50];

    /// <summary>From a COCO result and (optionally) a VOC result.</summary>
    public static MetricsSummary From(CocoEvaluationResult coco, VocEvaluationResult? voc)
    {
        var s = coco.Summary;
        return new MetricsSummary(s.AP, s.AP50, s.AP70, s.AP75, s.APSmall, s.APMedium, s.APLarge, voc?.MeanAp ?? -1);
    }

    /// <summary>From a detector evaluation.</summary>
    public static MetricsSummary From(EvaluationReport report) => From(report.Coco, report.Voc);
}

internal static class Metrics
{
    /// <summary>
    /// AP at each of the 10 COCO IoU thresholds (area all, 100 detections): the mean of the
    /// precision over recall thresholds and classes, entries of −1 skipped; −1 when none.
    /// </summary>
    public static double[] ApByIou(CocoEvaluationResult coco)
    {
        int t = CocoParameters.IouThresholds.Length, r = CocoParameters.RecallThresholds.Length, k = coco.PerClass.Count;
        var ap = new double[t];
        for (int i = 0; i < t; i++)
        {
            double sum = 0;
            long n = 0;
            for (int j = 0; j < r; j++)
                for (int c = 0; c < k; c++)
                {
                    double p = coco.GetPrecision(i, j, c, 0, 2);
                    if (p > -1) { sum += p; n++; }
                }
            ap[i] = n == 0 ? -1 : sum / n;
        }
        return ap;
    }

    /// <summary>A cell: 3 decimals, "-" for −1.</summary>
    public static string Cell(double v) => v < 0 ? "-" : v.ToString("0.000", CultureInfo.InvariantCulture);

    /// <summary>An aligned table: header row, rule, one row per entry; first column left-aligned.</summary>
    public static string Table(IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows)
    {
        var all = rows.ToList();
        var width = header.Select(h => h.Length).ToArray();
        foreach (var r in all)
            for (int c = 0; c < width.Length; c++) width[c] = Math.Max(width[c], r[c].Length);
        var sb = new StringBuilder();
        void Row(IReadOnlyList<string> cells)
        {
            for (int c = 0; c < cells.Count; c++)
            {
                if (c > 0) sb.Append("  ");
                sb.Append(c == 0 ? cells[c].PadRight(width[c]) : cells[c].PadLeft(width[c]));
            }
            sb.Append('\n');
        }
        Row(header);
        sb.Append('-', width.Sum() + 2 * (width.Length - 1)).Append('\n');
        foreach (var r in all) Row(r);
        return sb.ToString();
    }

    /// <summary>The headline table: one row per named summary.</summary>
    public static string SummaryTable(IEnumerable<(string Name, MetricsSummary Metrics)> rows) =>
        Table(["", .. MetricsSummary.Columns], rows.Select(r => (IReadOnlyList<string>)[r.Name, .. r.Metrics.Values.Select(Cell)]));

    /// <summary>Per-class COCO AP / AP50 / AP75 and VOC AP50.</summary>
    public static string PerClassTable(CocoEvaluationResult coco, VocEvaluationResult? voc) =>
        Table(["class", "gt", "dets", "AP", "AP50", "AP75", "VOC AP50"], coco.PerClass.Select(c => (IReadOnlyList<string>)
        [
            c.Name, c.GroundTruthCount.ToString(CultureInfo.InvariantCulture), c.DetectionCount.ToString(CultureInfo.InvariantCulture),
            Cell(c.AP), Cell(c.AP50), Cell(c.AP75), Cell(voc is null ? -1 : voc.PerClass[c.Label].Ap),
        ]));

    /// <summary>Writes metrics.json: the summary, AP by IoU, per-class results, the run's description and any extra fields.</summary>
    public static void WriteJson(string path, MetricsSummary summary, CocoEvaluationResult coco, VocEvaluationResult? voc,
        IReadOnlyDictionary<string, object?> run)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        using var stream = File.Create(path);
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        foreach (var (key, value) in run)
        {
            w.WritePropertyName(key);
            JsonSerializer.Serialize(w, value);
        }
        w.WriteStartObject("metrics");
        Number(w, "AP", summary.AP);
        Number(w, "AP50", summary.AP50);
        Number(w, "AP70", summary.AP70);
        Number(w, "AP75", summary.AP75);
        Number(w, "APs", summary.APs);
        Number(w, "APm", summary.APm);
        Number(w, "APl", summary.APl);
        Number(w, "VOC_AP50", summary.VocAP50);
        var s = coco.Summary;
        Number(w, "AR1", s.AR1);
        Number(w, "AR10", s.AR10);
        Number(w, "AR100", s.AR100);
        w.WriteEndObject();
        w.WriteStartArray("ap_by_iou");
        var ap = ApByIou(coco);
        for (int i = 0; i < ap.Length; i++)
        {
            w.WriteStartObject();
            w.WriteNumber("iou", Math.Round(CocoParameters.IouThresholds[i], 2));
            Number(w, "AP", ap[i]);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("per_class");
        foreach (var c in coco.PerClass)
        {
            w.WriteStartObject();
            w.WriteString("name", c.Name);
            w.WriteNumber("ground_truth", c.GroundTruthCount);
            w.WriteNumber("detections", c.DetectionCount);
            Number(w, "AP", c.AP);
            Number(w, "AP50", c.AP50);
            Number(w, "AP70", c.AP70);
            Number(w, "AP75", c.AP75);
            Number(w, "VOC_AP50", voc is null ? -1 : voc.PerClass[c.Label].Ap);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNumber("images", coco.ImageCount);
        w.WriteEndObject();
    }

    /// <summary>
    /// Reads back a metrics.json of <see cref="WriteJson"/>: the summary, AP by IoU and the whole document (for the run's
    /// description). A file that is not one is an <see cref="InvalidDataException"/> naming it.
    /// </summary>
    public static (MetricsSummary Summary, double[] ApByIou, JsonElement Document) ReadJson(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = doc.RootElement.Clone();
            var m = root.GetProperty("metrics");
            double Get(JsonElement e, string name) => e.GetProperty(name) is { ValueKind: JsonValueKind.Number } v ? v.GetDouble() : -1;
            var summary = new MetricsSummary(Get(m, "AP"), Get(m, "AP50"), Get(m, "AP70"), Get(m, "AP75"), Get(m, "APs"), Get(m, "APm"), Get(m, "APl"), Get(m, "VOC_AP50"));
            var ap = root.GetProperty("ap_by_iou").EnumerateArray().Select(e => Get(e, "AP")).ToArray();
            if (ap.Length != CocoParameters.IouThresholds.Length) throw new InvalidDataException($"ap_by_iou has {ap.Length} entries, not {CocoParameters.IouThresholds.Length}");
            return (summary, ap, root);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or InvalidDataException)
        {
            throw new InvalidDataException($"{path}: not a grcn metrics.json ({e.Message})", e);
        }
    }

    /// <summary>A metric rounded to 6 decimals, or null where undefined (negative or not finite).</summary>
    internal static void Number(Utf8JsonWriter w, string name, double v)
    {
        if (v < 0 || !double.IsFinite(v)) w.WriteNull(name);
        else w.WriteNumber(name, Math.Round(v, 6));
    }
}
